"""Samplers that resume mid-epoch in O(1) (mmpretrain's ``DATA_SAMPLERS``)."""
from .resumable_samplers import ResumableDefaultSampler, ResumableInfiniteSampler, epoch_order

__all__ = ['ResumableDefaultSampler', 'ResumableInfiniteSampler', 'epoch_order']
