"""Exact-resume state in every checkpoint, handed back to the loop on resume.

mmengine's checkpoints miss what a resumed run needs to continue *the same*
run (see :mod:`hvp_mtl.engine.runner.resume_state`): every rank's random
generators, the sampler position inside the epoch and per-process model
state (SwAV queues). :class:`ResumeStateHook` adds them under
``checkpoint['resume_state']`` on mmengine's ``before_save_checkpoint`` and
gives them back to the train loop on ``after_load_checkpoint``, the pair
mmengine's ``EMAHook`` uses for the EMA weights.

One difference from ``EMAHook``: the state of *every* rank is gathered, a
collective, but ``Runner.save_checkpoint`` (and with it
``before_save_checkpoint``) runs on rank 0 only. The gathering therefore
happens on the custom hook event ``before_save_checkpoint_all_ranks``
(:data:`~hvp_mtl.engine.runner.resume_state.GATHER_EVENT`), which
:class:`~.atomic_checkpoint_hook.AtomicCheckpointHook` announces on every
rank right before it saves; ``before_save_checkpoint`` then stores what was
gathered for that save. A checkpoint saved without that announcement (a
plain ``CheckpointHook``, a "best" checkpoint) carries no resume state, as
before the split. The key is the one ``AtomicCheckpointHook`` wrote before
this hook existed, so those checkpoints resume unchanged.
"""
import logging
from typing import Any, Dict, Optional

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmpretrain.registry import HOOKS

from ..runner.resume_state import RESUME_STATE_KEY, collect_resume_state

__all__ = ['ResumeStateHook']


@HOOKS.register_module()
class ResumeStateHook(Hook):
    """Save and restore ``checkpoint['resume_state']``.

    Use with ``ResumableEpochBasedTrainLoop`` + ``ResumableDefaultSampler``
    and :class:`~.atomic_checkpoint_hook.AtomicCheckpointHook` for an O(1),
    bit-identical resume. The shipped pre-training configs list it in
    ``default_hooks`` (``resume_state=dict(type='ResumeStateHook')``), so a
    config that replaces ``custom_hooks`` keeps it.
    """

    # after the checkpoint hook (VERY_LOW): the gathered state is dropped
    # once the iteration's or epoch's checkpoint is written (on every rank)
    priority = 'LOWEST'

    def __init__(self) -> None:
        self._gathered: Optional[Dict[str, Any]] = None

    def before_save_checkpoint_all_ranks(self, runner) -> None:
        """Gather the resume state of every rank (a collective).

        The hook event ``GATHER_EVENT`` of :mod:`..runner.resume_state`,
        called by the checkpoint hook on every rank right before it saves.
        """
        self._gathered = collect_resume_state(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the state gathered for this save (rank 0 writes it)."""
        if self._gathered is not None:
            checkpoint[RESUME_STATE_KEY] = self._gathered
            self._gathered = None

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        self._gathered = None  # ranks > 0 under Runner never used it

    def after_train_epoch(self, runner) -> None:
        self._gathered = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Hand ``resume_state`` to the train loop when resuming."""
        state = checkpoint.get(RESUME_STATE_KEY)
        if not runner._resume or state is None:
            return
        loop = runner.train_loop
        if hasattr(loop, 'load_resume_state'):
            loop.load_resume_state(state)
        else:
            print_log(
                f'{type(loop).__name__} cannot use the saved sampler position '
                'and RNG states; use ResumableEpochBasedTrainLoop or '
                'ResumableIterBasedTrainLoop for an O(1), exact resume.',
                logger='current',
                level=logging.WARNING)
