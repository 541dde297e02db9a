"""How much of a representation is image colour: R² of its features from colour statistics.

The evidence study (docs/RESULTS.md, "The evidence protocol") names the task and the phase of
pre-training that move the pooled features onto colour. Its measure, for a bank of pooled
features ``Z`` (``[N, D]``) and the images they come from (``[N, 3, H, W]``):

- :func:`image_colour_statistics`: six numbers per image, the mean and the standard deviation of
  each channel over its pixels (``[N, 6]``, pixel values in ``[0, 1]``). Channel order does not
  matter: the regressions below are invariant to a permutation of their inputs.
- :func:`colour_explained_share`: an ordinary least-squares regression (with intercept) of the
  features on those statistics, in float64, and its coefficient of determination

      R²(Y) = 1 - ||Y - X_1 B||_F² / ||Y - mean(Y)||_F²,      X_1 = [1, colour stats]

  for ``Y`` = the scores of the ``k`` largest principal components of ``Z`` (``top{k}_r2``: how
  much of the directions that hold most of the variance is colour) and for ``Y = Z`` itself
  (``total_r2``: the share of the whole centred feature variance that colour explains linearly).
  Both are in-sample: with 7 regressors and hundreds of images the optimism of an in-sample R²
  is about ``7 / N`` (``chance_r2`` reports it), far below the values the study compares.
"""
from typing import Dict

import torch

__all__ = ['COLOUR_STATISTICS', 'image_colour_statistics', 'r_squared', 'colour_explained_share']

#: the columns of :func:`image_colour_statistics`
COLOUR_STATISTICS = ('mean_c0', 'mean_c1', 'mean_c2', 'std_c0', 'std_c1', 'std_c2')


def image_colour_statistics(images: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and standard deviation of each image: ``[N, C, H, W] -> [N, 2C]``.

    Args:
        images (Tensor): Images, uint8 (``0..255``) or float already in ``[0, 1]``.

    Returns:
        Tensor: float64 ``[N, 2C]``: the ``C`` channel means, then the ``C`` standard deviations
        (population, over ``H x W``), in ``[0, 1]`` units.
    """
    if images.dim() != 4:
        raise ValueError(f'images must be [N, C, H, W], got shape {tuple(images.shape)}')
    x = images.detach().to('cpu', torch.float64)
    if images.dtype == torch.uint8:
        x = x / 255.0
    flat = x.flatten(2)
    return torch.cat([flat.mean(2), flat.std(2, unbiased=False)], dim=1)


def r_squared(targets: torch.Tensor, regressors: torch.Tensor) -> float:
    """Coefficient of determination of the least-squares fit ``targets ~ [1, regressors]``.

    Args:
        targets (Tensor): ``[N, M]`` (or ``[N]``) responses.
        regressors (Tensor): ``[N, P]`` explanatory variables (an intercept is added).

    Returns:
        float: ``1 - SS_res / SS_tot`` summed over the ``M`` columns (variance-weighted), in
        ``[0, 1]``; 0.0 when the targets have no variance.
    """
    y = targets.detach().to('cpu', torch.float64)
    y = y[:, None] if y.dim() == 1 else y
    x = regressors.detach().to('cpu', torch.float64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f'{x.shape[0]} rows of regressors for {y.shape[0]} rows of targets')
    design = torch.cat([torch.ones(len(x), 1, dtype=torch.float64), x], dim=1)
    coef = torch.linalg.lstsq(design, y, driver='gelsd').solution
    residual = y - design @ coef
    total = (y - y.mean(0)).pow(2).sum()
    if total <= 0:
        return 0.0
    return float((1 - residual.pow(2).sum() / total).clamp(0, 1))


def colour_explained_share(features: torch.Tensor, colour: torch.Tensor,
                           k: int = 2) -> Dict[str, float]:
    """How much of ``features`` is linear in the images' colour statistics.

    Args:
        features (Tensor): ``[N, D]`` pooled features, one row per image.
        colour (Tensor): ``[N, P]`` colour statistics of the same images
            (:func:`image_colour_statistics`).
        k (int): Number of principal components for ``top{k}_r2``. Defaults to 2.

    Returns:
        dict: ``top{k}_r2`` (the ``k`` largest principal components' scores),
        ``total_r2`` (all of the centred features) and ``chance_r2`` (``P / (N - 1)``, the
        expected in-sample R² of features independent of colour).
    """
    z = features.detach().to('cpu', torch.float64)
    if z.dim() != 2:
        raise ValueError(f'features must be [N, D], got shape {tuple(z.shape)}')
    centred = z - z.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    scores = centred @ vh[:k].T  # [N, k] principal-component scores
    return {f'top{k}_r2': r_squared(scores, colour), 'total_r2': r_squared(centred, colour),
            'chance_r2': colour.shape[1] / max(1, z.shape[0] - 1)}
