"""Train loops that resume in O(1): no replay of the skipped batches.

mmengine 0.10.7's loops resume badly at scale:

* ``IterBasedTrainLoop.run`` calls ``next(dataloader_iterator)`` once per
  already-trained iteration ("Advance dataloader N steps"), i.e. it loads and
  augments every skipped batch -- hours at 18M images;
* ``EpochBasedTrainLoop`` restarts a resumed epoch from its first batch, so a
  mid-epoch checkpoint trains on part of the epoch twice.

The loops below take the position from ``checkpoint['resume_state']`` (see
:mod:`.resume_state`, written and handed back by ``ResumeStateHook``, for the
checkpoints of ``AtomicCheckpointHook``), hand it to a
resumable sampler (:mod:`hvp_mtl.datasets.samplers`) which starts there by slicing,
and restore every rank's RNG state right before the first resumed batch is
drawn, i.e. at the same point of the random stream as in the uninterrupted
run. Validations inside training leave every generator as they found it
(:func:`~.resume_state.preserved_rng_state`), so a validation that runs right
after a checkpoint, which the resumed run does not repeat, changes nothing.
With ``num_workers=0`` a resumed run is bit-identical to an uninterrupted
one on CPU; with worker processes the data order is exact while augmentation
randomness inside workers is freshly seeded (workers keep their own RNGs).
"""
import logging
from typing import Any, Dict, Optional

from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
from mmpretrain.registry import LOOPS

from .resume_state import (
    GATHER_EVENT,
    capture_rng_state,
    dataloader_batch_size,
    load_rank_local_state,
    preserved_rng_state,
    restore_rng_state,
)

__all__ = ['ResumableEpochBasedTrainLoop', 'ResumableIterBasedTrainLoop']


class _ResumableLoopMixin:
    """Shared bookkeeping: samples consumed, pending resume state."""

    _resume_state: Optional[Dict[str, Any]] = None
    _batches_done = 0  # batches of the current data epoch already trained

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not any(hasattr(hook, GATHER_EVENT) for hook in self.runner.hooks):
            print_log(
                f'{type(self).__name__} without ResumeStateHook: checkpoints '
                'carry no sampler position or RNG states, so a resumed run '
                'is not exact. Add default_hooks.resume_state='
                "dict(type='ResumeStateHook').",
                logger='current',
                level=logging.WARNING)

    def load_resume_state(self, resume_state: Dict[str, Any]) -> None:
        """Called by ``ResumeStateHook.after_load_checkpoint``."""
        self._resume_state = resume_state

    def _samples_per_step(self) -> int:
        world_size = self.runner.world_size
        return dataloader_batch_size(self.dataloader) * world_size

    def _sampler(self):
        sampler = getattr(self.dataloader, 'sampler', None)
        if not hasattr(sampler, 'set_resume_position'):
            sampler = getattr(
                getattr(self.dataloader, 'batch_sampler', None), 'sampler',
                None)
        return sampler

    def _restore_rank_states(self, state: Dict[str, Any]) -> None:
        """This rank's random generators and per-process model state."""
        rng = state.get('rng')
        rank = self.runner.rank
        if not rng:
            return
        if len(rng) != self.runner.world_size:
            print_log(
                f'The checkpoint was written by {len(rng)} processes and this '
                f'run has {self.runner.world_size}: random states and '
                'per-process model state (SwAV queues: rank 0\'s on every '
                'rank) are not restored per rank (the data position is).',
                logger='current',
                level=logging.WARNING)
            return
        restore_rng_state(rng[rank])
        rank_local = state.get('rank_local')
        if rank_local:
            load_rank_local_state(self.runner.model, rank_local[rank])

    def _seek(self, epoch: int, consumed: int) -> int:
        """Position the sampler; returns the number of batches skipped."""
        sampler = self._sampler()
        if sampler is None or not hasattr(sampler, 'set_resume_position'):
            raise TypeError(
                f'{type(self).__name__} needs a resumable sampler '
                '(ResumableDefaultSampler or ResumableInfiniteSampler) in '
                f'train_dataloader, got {type(sampler).__name__}')
        sampler.set_resume_position(epoch, consumed)
        skipped = consumed // self._samples_per_step()
        print_log(
            f'Resuming data at epoch {epoch}, sample {consumed} '
            f'(batch {skipped}): the sampler starts there, no batch is '
            'loaded or replayed.',
            logger='current')
        return skipped


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(_ResumableLoopMixin, EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` that resumes inside an epoch in O(1).

    Use with ``train_dataloader.sampler=dict(type='ResumableDefaultSampler')``,
    ``ResumeStateHook`` and ``AtomicCheckpointHook`` (e.g. ``by_epoch=False,
    interval=N`` for mid-epoch checkpoints). Arguments are those of
    ``EpochBasedTrainLoop``.
    """

    def sampler_position(self) -> Dict[str, int]:
        return dict(
            epoch=self._epoch,
            consumed=self._batches_done * self._samples_per_step())

    _rng_at_epoch_end: Optional[Dict[str, Any]] = None

    def run_epoch(self) -> None:
        """Iterate over one epoch, or over its remainder after a resume."""
        state, self._resume_state = self._resume_state, None
        position = (state or {}).get('sampler') or {}
        mid_epoch = bool(state) and position.get('epoch') == self._epoch
        if state and not mid_epoch:
            # checkpoint written at an epoch end: continue with a new epoch
            self._restore_rank_states(state)
        elif not state and self._rng_at_epoch_end is not None:
            # the epoch-end validation (any val loop) leaves no trace in the
            # random stream, as in a run resumed from that epoch's checkpoint
            restore_rng_state(self._rng_at_epoch_end)
        self._rng_at_epoch_end = None

        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        start = 0
        if mid_epoch:
            start = self._seek(self._epoch, int(position['consumed']))
        self._batches_done = start
        batches = iter(self.dataloader)
        if mid_epoch:
            self._restore_rank_states(state)
        for idx, data_batch in enumerate(batches, start):
            self.run_iter(idx, data_batch)

        self.runner.call_hook('after_train_epoch')
        self._rng_at_epoch_end = capture_rng_state()
        self._epoch += 1
        self._batches_done = 0

    def run_iter(self, idx, data_batch) -> None:
        self.runner.call_hook(
            'before_train_iter', batch_idx=idx, data_batch=data_batch)
        outputs = self.runner.model.train_step(
            data_batch, optim_wrapper=self.runner.optim_wrapper)
        self._batches_done = idx + 1
        self.runner.call_hook(
            'after_train_iter',
            batch_idx=idx,
            data_batch=data_batch,
            outputs=outputs)
        self._iter += 1


@LOOPS.register_module()
class ResumableIterBasedTrainLoop(_ResumableLoopMixin, IterBasedTrainLoop):
    """``IterBasedTrainLoop`` without the "Advance dataloader" replay.

    Works with ``ResumableInfiniteSampler`` (one endless stream) and with
    ``ResumableDefaultSampler`` (the dataloader is restarted with the next
    epoch at its end). Arguments are those of ``IterBasedTrainLoop``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # mmengine creates (and, with workers, starts prefetching) the
        # iterator here; ours is created in run(), after the sampler seek.
        self.dataloader_iterator = None
        self._data_epoch = 0

    def sampler_position(self) -> Dict[str, int]:
        return dict(
            epoch=self._data_epoch,
            consumed=self._batches_done * self._samples_per_step())

    def _next_batch(self):
        try:
            return next(self.dataloader_iterator)
        except StopIteration:
            self._data_epoch += 1
            self._batches_done = 0
            self._sampler().set_epoch(self._data_epoch)
            self.dataloader_iterator = iter(self.dataloader)
            return next(self.dataloader_iterator)

    def run(self):
        """Launch training (resuming the data stream where it stopped)."""
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        state, self._resume_state = self._resume_state, None
        position = (state or {}).get('sampler') or {}
        if self._iter > 0 and not position:
            raise RuntimeError(
                f'Resuming at iteration {self._iter} from a checkpoint without '
                '`resume_state` (written by ResumeStateHook with '
                'AtomicCheckpointHook); '
                'refusing to replay the dataloader.')
        if position:
            self._data_epoch = int(position['epoch'])
            self._batches_done = self._seek(self._data_epoch,
                                            int(position['consumed']))
        self.dataloader_iterator = iter(self.dataloader)
        if state:
            self._restore_rank_states(state)
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = self._next_batch()
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None
                    and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0
                         or self._iter == self._max_iters)):
                with preserved_rng_state():  # see preserved_rng_state
                    self.runner.val_loop.run()

        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_iter(self, data_batch) -> None:
        self.runner.call_hook(
            'before_train_iter', batch_idx=self._iter, data_batch=data_batch)
        outputs = self.runner.model.train_step(
            data_batch, optim_wrapper=self.runner.optim_wrapper)
        self._batches_done += 1
        self.runner.call_hook(
            'after_train_iter',
            batch_idx=self._iter,
            data_batch=data_batch,
            outputs=outputs)
        self._iter += 1
