"""Batch norms on batch statistics inside a block (MCL's momentum encoder)."""
from contextlib import contextmanager

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ['batch_statistics']


@contextmanager
def batch_statistics(module: nn.Module):
    """Run ``module``'s batch norms on batch statistics (train mode) inside.

    The official momentum encoder runs in train mode; ``MomentumTeacher``
    stays in eval mode otherwise. The running statistics are left untouched
    (``track_running_stats`` is off inside), so the teacher's buffers change
    only in its EMA update.
    """
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm)]
    tracked = [norm.track_running_stats for norm in norms]
    for norm in norms:
        norm.training, norm.track_running_stats = True, False
    try:
        yield
    finally:
        for norm, track in zip(norms, tracked):
            norm.training, norm.track_running_stats = False, track
