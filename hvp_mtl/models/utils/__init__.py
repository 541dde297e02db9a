"""Helpers shared by the heads and the algorithms: MCL's montage pyramid and the
batch-statistics context of its momentum encoder."""
from .batch_statistics import batch_statistics
from .montage import (
                      build_montage,
                      check_levels,
                      downsample,
                      level_batch_sizes,
                      level_embeddings,
                      montage_pyramid,
)

__all__ = ['batch_statistics', 'build_montage', 'check_levels', 'downsample',
           'level_batch_sizes', 'level_embeddings', 'montage_pyramid']
