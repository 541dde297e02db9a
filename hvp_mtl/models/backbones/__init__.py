"""Masked backbones (SimMIM mask token) built on mmpretrain's Swin and ViT."""
from .masked_swin import MaskedSwinTransformer
from .masked_vit import MaskedViT
from .sdpa_window_msa import SDPAWindowMSA

__all__ = ['MaskedSwinTransformer', 'MaskedViT', 'SDPAWindowMSA']
