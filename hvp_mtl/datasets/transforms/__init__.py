"""Data transforms of the pre-training pipeline (registered in mmpretrain TRANSFORMS)."""
from .multi_view_with_mask import MultiViewWithMask

__all__ = ['MultiViewWithMask']
