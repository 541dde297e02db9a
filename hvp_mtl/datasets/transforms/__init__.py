"""Data transforms of the pre-training pipeline (registered in mmpretrain TRANSFORMS)."""
from .multi_view_with_mask import MultiViewWithMask
from .reduced_scale_decode import LoadImageBytes, UndecodableImageError

__all__ = ['MultiViewWithMask', 'LoadImageBytes', 'UndecodableImageError']
