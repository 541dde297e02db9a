"""How many directions a representation uses: RankMe and the top principal components' share.

Two probe rows that need no labels, for a bank of pooled features ``Z`` (``[N, D]``):

- :func:`rankme`, the effective rank of Garrido et al. 2023 ("RankMe: Assessing the downstream
  performance of pretrained self-supervised representations by their rank", eq. 1)::

      p_k = sigma_k(Z) / ||sigma(Z)||_1 + eps,      RankMe(Z) = exp(-sum_k p_k log p_k)

  over the ``min(N, D)`` singular values ``sigma_k`` of ``Z`` as it is (the paper does not centre
  ``Z``; ``center=True`` is an option). It lies in ``[1, min(N, D)]``: 1 for a rank-one bank,
  ``min(N, D)`` for one whose singular values are all equal.
- :func:`top_pc_variance_share`, the share of the (centred) variance in the ``k`` largest principal
  components: ``sum_{i<=k} sigma_i^2 / sum_i sigma_i^2`` of ``Z - mean(Z)``. A representation that
  puts 99 % of its variance in five directions is one a raw-cosine kNN or a short-trained head sees
  as those five directions.

Both are computed in float64 on the host's copy of the features (an SVD of ``[N, D]``; a bank of
512 x 1024 takes milliseconds).
"""
from typing import Dict

import torch

__all__ = ['rankme', 'top_pc_variance_share', 'representation_rank_stats']


def _singular_values(features: torch.Tensor, center: bool) -> torch.Tensor:
    """Singular values of ``features`` (``[N, D]``, centred first if asked), float64, descending."""
    if features.dim() != 2:
        raise ValueError(f'features must be [N, D], got shape {tuple(features.shape)}')
    z = features.detach().to('cpu', torch.float64)
    if center:
        z = z - z.mean(0, keepdim=True)
    return torch.linalg.svdvals(z)


def rankme(features: torch.Tensor, eps: float = 1e-7, center: bool = False) -> float:
    """RankMe, the entropy-based effective rank of a feature bank (Garrido et al. 2023, eq. 1).

    Args:
        features (Tensor): ``[N, D]`` pooled features, one row per image.
        eps (float): The paper's ``eps`` added to each normalised singular value. Defaults to 1e-7.
        center (bool): Subtract the bank's mean first (the paper does not). Defaults to False.

    Returns:
        float: ``exp(-sum p_k log p_k)``, in ``[1, min(N, D)]`` (up to ``eps``).
    """
    sigma = _singular_values(features, center)
    total = sigma.sum()
    if total <= 0:
        return 1.0
    p = sigma / total + eps
    return float(torch.exp(-(p * p.log()).sum()))


def top_pc_variance_share(features: torch.Tensor, k: int = 5) -> float:
    """Share of the centred variance in the ``k`` largest principal components.

    Args:
        features (Tensor): ``[N, D]`` pooled features.
        k (int): Number of components. Defaults to 5.

    Returns:
        float: In ``[0, 1]``; 1.0 when the bank has at most ``k`` directions (or no variance).
    """
    var = _singular_values(features, center=True).pow(2)
    total = var.sum()
    if total <= 0:
        return 1.0
    return float(var[:k].sum() / total)


def representation_rank_stats(features: torch.Tensor, k: int = 5) -> Dict[str, float]:
    """The probe rows of a bank: ``rankme`` and ``top{k}_share`` (see the two functions)."""
    return {'rankme': rankme(features), f'top{k}_share': top_pc_variance_share(features, k)}
