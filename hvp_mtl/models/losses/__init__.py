"""Losses of HVP-MTL (arXiv 2310.07510), one equation per file."""
from .masked_reconstruction_loss import MaskedReconstructionLoss
from .multi_level_contrastive_loss import MultiLevelContrastiveLoss
from .sinkhorn import truncated_share, truncated_sinkhorn
from .swapped_prediction_loss import SwappedPredictionLoss
from .symmetric_kl_distillation_loss import SymmetricKLDistillationLoss
from .weighted_asymmetric_loss import WeightedAsymmetricLoss

__all__ = [
    'MaskedReconstructionLoss', 'MultiLevelContrastiveLoss', 'SwappedPredictionLoss',
    'SymmetricKLDistillationLoss', 'WeightedAsymmetricLoss',
    'truncated_share', 'truncated_sinkhorn'
]
