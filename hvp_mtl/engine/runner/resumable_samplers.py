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
"""
from typing import Iterator, Optional, Sized

import torch
from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmpretrain.registry import DATA_SAMPLERS

__all__ = ['ResumableDefaultSampler', 'ResumableInfiniteSampler']


def _permutation(size: int, seed: int, epoch: int, shuffle: bool) -> list:
    if not shuffle:
        return list(range(size))
    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    return torch.randperm(size, generator=generator).tolist()


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
        indices = _permutation(len(self.dataset), self.seed, self.epoch,
                               self.shuffle)
        if self.round_up:
            repeats = self.total_size // len(indices) + 1
            indices = (indices * repeats)[:self.total_size]
        start, self._start = self._start, 0
        return iter(indices[start + self.rank:self.total_size:self.world_size])


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
        epoch, permutation = None, None
        while True:
            if position // self.size != epoch:
                epoch = position // self.size
                permutation = _permutation(self.size, self.seed, epoch,
                                           self.shuffle)
            yield permutation[position % self.size]
            position += self.world_size

    def __iter__(self) -> Iterator[int]:
        start, self._start = self._start, 0
        return self._stream(start)

