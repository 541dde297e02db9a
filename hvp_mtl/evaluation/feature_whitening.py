"""Feature spaces for the kNN probe: raw, centred, or PCA-whitened, all fitted on the bank only.

A cosine kNN on raw pooled features measures the few directions that hold most of the variance
(image colour, on the demo world: docs/RESULTS.md); centring removes the shared mean direction;
PCA-whitening gives every principal direction of the bank unit variance, so the kNN sees the whole
representation. The transform is fitted on the training bank and applied unchanged to the queries
(never fitted on val). After it, rows are L2-normalised for the cosine kNN of
:mod:`.knn_classifier`.

Whitening (``mode='whitened'``): with the bank's mean ``mu`` and the eigen-decomposition of its
covariance ``C = U diag(lambda) U^T`` (``[D, D]``, divided by ``N``), ``x -> (x - mu) U
diag(1 / sqrt(lambda + eps))``, keeping the components whose eigenvalue exceeds ``rel_eps`` times
the largest (a bank of N < D images has at most N - 1 non-zero ones).
"""
from typing import Tuple

import torch
import torch.nn.functional as F

__all__ = ['FEATURE_SPACES', 'fit_feature_space', 'apply_feature_space', 'knn_feature_spaces']

#: the kNN probe's feature spaces, in the order they are reported
FEATURE_SPACES = ('raw', 'centred', 'whitened')


def fit_feature_space(bank: torch.Tensor, mode: str = 'whitened', eps: float = 1e-6,
                      rel_eps: float = 1e-6) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fit ``mode`` on the bank: returns ``(mean [D], projection [D, D'])``, float64.

    Args:
        bank (Tensor): ``[N, D]`` training features.
        mode (str): ``'raw'`` (identity), ``'centred'`` or ``'whitened'``.
        eps (float): Added to each eigenvalue before the inverse square root. Defaults to 1e-6.
        rel_eps (float): Components with eigenvalue at most ``rel_eps * lambda_max`` are dropped
            (whitened only). Defaults to 1e-6.

    Returns:
        tuple[Tensor, Tensor]: ``mean`` (zeros for raw) and ``projection`` (identity unless
        whitened).
    """
    if mode not in FEATURE_SPACES:
        raise ValueError(f'unknown feature space {mode!r}; one of {FEATURE_SPACES}')
    x = bank.detach().to('cpu', torch.float64)
    dim = x.shape[1]
    if mode == 'raw':
        return torch.zeros(dim, dtype=torch.float64), torch.eye(dim, dtype=torch.float64)
    mean = x.mean(0)
    if mode == 'centred':
        return mean, torch.eye(dim, dtype=torch.float64)
    centred = x - mean
    cov = centred.T @ centred / x.shape[0]
    eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
    keep = eigvals > rel_eps * eigvals.max().clamp_min(0)
    eigvals, eigvecs = eigvals[keep], eigvecs[:, keep]
    return mean, eigvecs / (eigvals + eps).sqrt()


def apply_feature_space(features: torch.Tensor, mean: torch.Tensor,
                        projection: torch.Tensor) -> torch.Tensor:
    """``normalize((features - mean) @ projection)``: ``[M, D] -> [M, D']``, float64, unit rows."""
    x = features.detach().to('cpu', torch.float64)
    return F.normalize((x - mean) @ projection, dim=1)


def knn_feature_spaces(bank: torch.Tensor, queries: torch.Tensor, mode: str, **kwargs):
    """Fit ``mode`` on ``bank`` and return ``(bank', queries')`` in that space, unit rows."""
    mean, projection = fit_feature_space(bank, mode, **kwargs)
    return (apply_feature_space(bank, mean, projection),
            apply_feature_space(queries, mean, projection))
