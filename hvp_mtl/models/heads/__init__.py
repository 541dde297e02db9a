"""Task heads of HVP-MTL, one per task (``task_loss``, models/protocols.py):
multi-label decoder, SwAV clustering, SimMIM decoder, momentum distillation,
montage contrast (MCL's parts)."""
from .label_decoder_layer import LabelDecoderLayer, SDPAttention
from .mcl_cell_head import MCLCellHead, MCLPredictors
from .mim_linear_decoder_head import MIMLinearDecoderHead
from .momentum_distillation_head import MomentumDistillationHead
from .montage_contrastive_head import MontageContrastiveHead
from .multilabel_decoder_head import MultiLabelDecoderHead
from .swav_clustering_head import SwAVClusteringHead

__all__ = [
    'LabelDecoderLayer', 'MCLCellHead', 'MCLPredictors', 'MIMLinearDecoderHead',
    'MomentumDistillationHead',
    'MontageContrastiveHead',
    'MultiLabelDecoderHead',
    'SDPAttention', 'SwAVClusteringHead'
]
