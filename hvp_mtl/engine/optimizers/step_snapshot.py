"""What a skipped optimizer step must put back: the state ``forward`` changed.

``forward`` changes no parameter and none of this project's training state
(the EMA teacher, the SwAV queue and counter change after the step, in
``TeacherAndPrototypesHook``, which a skipped step skips). What it can still
change is buffers of other modules (BatchNorm running statistics) and
parameters the optimizer does not own. :class:`StepSnapshotMixin` copies
exactly those before ``forward`` and restores them on a skip (used by
:class:`~.nonfinite_guard.NonFiniteGuardMixin`).
"""
from collections import OrderedDict
from typing import Dict, Optional

import torch
from mmengine.model import is_model_wrapper

from hvp_mtl.models.protocols import ChangedOutsideForward, reset_step_caches

__all__ = ['StepSnapshotMixin']


class StepSnapshotMixin:
    """Snapshot before ``forward``, restore after a skipped step.

    Needs ``self.optimizer``, ``self.should_sync()`` and
    ``self.restore_model_state``; call :meth:`_init_snapshot` in ``__init__``.
    """

    def _init_snapshot(self) -> None:
        self._snapshot: Optional[Dict[str, torch.Tensor]] = None
        self._snapshot_model = None

    def _owned_ids(self) -> set:
        return {
            id(p)
            for group in self.optimizer.param_groups for p in group['params']
        }

    def _snapshot_names(self, model) -> set:
        """What a skipped step must restore.

        Buffers (not those of modules that are
        :class:`~hvp_mtl.models.protocols.ChangedOutsideForward`) and the
        parameters this optimizer does not update (frozen ones). The
        optimized parameters are not copied: the optimizer is what changes
        them, and a skipped step does not call it.
        """
        owned = self._owned_ids()
        outside = self._changed_outside_forward(model)
        names = {name for name, _ in model.named_buffers()
                 if not name.startswith(outside)}
        names.update(name for name, param in model.named_parameters()
                     if id(param) not in owned or not param.requires_grad)
        return names

    @staticmethod
    def _changed_outside_forward(model) -> tuple:
        """Name prefixes of modules whose state only changes after the step.

        A :class:`~hvp_mtl.models.protocols.ChangedOutsideForward` module
        (the EMA teacher, updated by ``TeacherAndPrototypesHook``, which a
        skipped step skips) is left out of the snapshot: copying it every
        step would cost a full copy of the teacher in memory and time for
        nothing.
        """
        return tuple(f'{name}.' for name, module in model.named_modules()
                     if name and isinstance(module, ChangedOutsideForward)
                     and module.changed_outside_forward)

    def _snapshot_before_forward(self, model) -> None:
        """Copy what a skipped step must restore (see ``_snapshot_names``)."""
        # should_sync(): will the coming backward end in an optimizer step?
        if self.restore_model_state and self.should_sync():
            module = model.module if is_model_wrapper(model) else model
            names = self._snapshot_names(module)
            self._snapshot_model = module
            # plain tensor copies (no state_dict(): under FSDP that would
            # all-gather every step); sharded views are copied as they are
            self._snapshot = OrderedDict(
                (name, tensor.detach().clone())
                for name, tensor in self._named_tensors(module)
                if name in names)

    @staticmethod
    def _named_tensors(module):
        yield from module.named_buffers()
        yield from module.named_parameters()

    def _restore_untracked_state(self) -> None:
        """Copy the snapshot back, then let modules drop host-side caches.

        Modules that keep host-side state of the step (cached step counters,
        the SwAV head's embeddings kept for the post-step hook) implement
        :class:`~hvp_mtl.models.protocols.StepCache`; it is reset, as a load
        would.
        """
        if self._snapshot is None:
            return
        module = self._snapshot_model
        with torch.no_grad():
            for name, tensor in self._named_tensors(module):
                if name in self._snapshot:
                    tensor.copy_(self._snapshot[name])
        reset_step_caches(module)
