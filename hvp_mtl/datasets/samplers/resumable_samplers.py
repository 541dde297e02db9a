"""Samplers that can start in the middle of an epoch in O(1).

Both samplers define one *global* index order per epoch (a permutation seeded
with ``seed + epoch``, identical on every rank) and give rank ``r`` the
positions ``r, r + W, r + 2W, ...`` of it (``W`` = world size), exactly as
mmengine's :class:`~mmengine.dataset.DefaultSampler`. A resumed run calls
:meth:`set_resume_position` with the number of samples of the epoch that all
ranks together have already trained on; the next iterator then starts there,
by slicing, without producing (or loading) the skipped samples. Because the
position is global, a run may even resume with a different number of GPUs and
still see every sample of the epoch once.

The position is one-shot: it applies to the next ``iter(sampler)`` only; the
following epochs start at 0. :class:`ResumableEpochBasedTrainLoop` and
:class:`ResumableIterBasedTrainLoop` set it from ``checkpoint['resume_state']``.

Memory: the epoch's order is one int32 tensor (int64 past 2**31 samples),
~70 MB for ML-Images' 17.6M samples, never a Python list (~0.6-1.2 GB per
rank); the padding of ``round_up`` is taken modulo the dataset size and the
rank's positions are handed out in blocks of :data:`BLOCK` indices.
"""
from typing import Iterator, Optional, Sized

import numpy as np
import torch
from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmpretrain.registry import DATA_SAMPLERS

__all__ = ['ResumableDefaultSampler', 'ResumableInfiniteSampler',
           'epoch_order']

BLOCK = 65536  # indices converted to Python ints at a time


def epoch_order(size: int, seed: int, epoch: int,
                shuffle: bool) -> np.ndarray:
    """The global index order of an epoch as a compact int array.

    Equal to ``torch.randperm(size, generator=seeded(seed + epoch))`` (the
    order of mmengine's ``DefaultSampler``), or ``arange`` without shuffle.

    Args:
        size (int): Dataset length.
        seed (int): Sampler seed.
        epoch (int): Epoch number.
        shuffle (bool): Permute or not.

    Returns:
        np.ndarray: int32 [size] (int64 if ``size >= 2**31``).
    """
    dtype = torch.int32 if size < 2**31 else torch.int64
    if not shuffle:
        return torch.arange(size, dtype=dtype).numpy()
    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    return torch.randperm(size, generator=generator, dtype=dtype).numpy()


def _positions(order: np.ndarray, start: int, stop: int,
               step: int) -> Iterator[int]:
    """``order[p % len(order)]`` for ``p`` in ``range(start, stop, step)``,
    as Python ints, :data:`BLOCK` at a time."""
    size = len(order)
    for first in range(start, stop, step * BLOCK):
        positions = np.arange(first, min(first + step * BLOCK, stop), step)
        yield from order[positions % size].tolist()


@DATA_SAMPLERS.register_module()
class ResumableDefaultSampler(DefaultSampler):
    """:class:`~mmengine.dataset.DefaultSampler` that resumes mid-epoch.

    Same arguments and same index order as ``DefaultSampler`` (so a run that
    never resumes is unchanged); ``__len__`` stays the full per-rank epoch
    length, so ``len(dataloader)`` and the loop's ``max_iters`` do not change
    when a partial epoch is resumed.
    """

    def __init__(self,
                 dataset: Sized,
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 round_up: bool = True) -> None:
        super().__init__(dataset, shuffle=shuffle, seed=seed, round_up=round_up)
        self._start = 0

    def set_resume_position(self, epoch: int, consumed: int) -> None:
        """Start the next iterator of ``epoch`` after ``consumed`` samples.

        Args:
            epoch (int): the epoch to resume (also passed to ``set_epoch``).
            consumed (int): samples of that epoch already trained on, summed
                over all ranks (``batches * batch_size * world_size``).
        """
        if consumed < 0:
            raise ValueError(f'consumed must be >= 0, got {consumed}')
        self.set_epoch(epoch)
        self._start = min(int(consumed), self.total_size)

    def __iter__(self) -> Iterator[int]:
        order = epoch_order(len(self.dataset), self.seed, self.epoch,
                            self.shuffle)
        # round_up pads by repeating the order; otherwise total_size is
        # len(dataset) and no position wraps
        start, self._start = self._start, 0
        return _positions(order, start + self.rank, self.total_size,
                          self.world_size)


@DATA_SAMPLERS.register_module()
class ResumableInfiniteSampler(InfiniteSampler):
    """Endless sampler for iteration-based loops that resumes in O(1).

    The endless stream is the concatenation of per-epoch permutations seeded
    with ``seed + epoch`` (mmengine's ``InfiniteSampler`` draws them from one
    generator, which can only be advanced by replaying it). Position ``p`` of
    the stream is permutation ``p // len(dataset)``, entry ``p % len(dataset)``.
    """

    def __init__(self,
                 dataset: Sized,
                 shuffle: bool = True,
                 seed: Optional[int] = None) -> None:
        super().__init__(dataset, shuffle=shuffle, seed=seed)
        self._start = 0
        self.indices = None  # built lazily by __iter__

    def set_resume_position(self, epoch: int, consumed: int) -> None:
        """Start the next iterator after ``consumed`` samples of the stream.

        Args:
            epoch (int): unused (the stream position already encodes it);
                kept for the common sampler interface.
            consumed (int): samples already trained on, summed over ranks,
                counted from the start of training.
        """
        if consumed < 0:
            raise ValueError(f'consumed must be >= 0, got {consumed}')
        self._start = int(consumed)

    def _stream(self, start: int) -> Iterator[int]:
        position = start + self.rank
        while True:
            epoch = position // self.size
            order = epoch_order(self.size, self.seed, epoch, self.shuffle)
            # this rank's positions inside permutation ``epoch``
            end = (epoch + 1) * self.size
            yield from _positions(order, position - epoch * self.size,
                                  end - epoch * self.size, self.world_size)
            del order
            position += -(-(end - position) // self.world_size) * \
                self.world_size

    def __iter__(self) -> Iterator[int]:
        start, self._start = self._start, 0
        return self._stream(start)

