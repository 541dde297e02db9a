"""What a skipped optimizer step must put back: the model state of ``forward``.

A step the non-finite guard skips must leave the model as it was before the
forward pass: buffers (SwAV queue and counters, BatchNorm statistics),
parameters the optimizer does not own, and optimized parameters a model
changes in ``forward`` itself. :class:`StepSnapshotMixin` copies exactly those
before ``forward`` and restores them on a skip (used by
:class:`~.nonfinite_guard.NonFiniteGuardMixin`).
"""
from collections import OrderedDict
from typing import Dict, Optional

import torch
from mmengine.model import is_model_wrapper

__all__ = ['StepSnapshotMixin']


class StepSnapshotMixin:
    """Snapshot before ``forward``, restore after a skipped step.

    Needs ``self.optimizer``, ``self.should_sync()`` and
    ``self.restore_model_state``; call :meth:`_init_snapshot` in ``__init__``.
    """

    def _init_snapshot(self) -> None:
        self._snapshot: Optional[Dict[str, torch.Tensor]] = None
        self._snapshot_model = None
        self._versions: Dict[str, int] = {}
        self._forward_mutated: Optional[set] = None

    def _owned_ids(self) -> set:
        return {
            id(p)
            for group in self.optimizer.param_groups for p in group['params']
        }

    def _snapshot_names(self, model) -> set:
        """What a skipped step must restore.

        Buffers (not those of modules marked ``changed_outside_forward``),
        parameters this optimizer does not update (frozen ones),
        and optimized parameters the model itself changes in ``forward``
        (e.g. a weight normalised in place there). The latter are found
        by their tensor version counters; until the first step has shown
        which they are, every parameter is snapshotted.
        """
        owned = self._owned_ids()
        outside = self._changed_outside_forward(model)
        names = {name for name, _ in model.named_buffers()
                 if not name.startswith(outside)}
        for name, param in model.named_parameters():
            if (id(param) not in owned or not param.requires_grad
                    or self._forward_mutated is None
                    or name in self._forward_mutated):
                names.add(name)
        return names

    @staticmethod
    def _changed_outside_forward(model) -> tuple:
        """Name prefixes of modules whose state only changes after the step.

        A module with ``changed_outside_forward = True`` (the EMA teacher,
        updated by ``TeacherAndPrototypesHook``, which a skipped step skips)
        is left out of the snapshot: copying it every step would cost a full
        copy of the teacher in memory and time for nothing.
        """
        return tuple(f'{name}.' for name, module in model.named_modules()
                     if name and getattr(module, 'changed_outside_forward',
                                         False))

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
            owned = self._owned_ids()
            self._versions = {
                name: param._version
                for name, param in module.named_parameters()
                if id(param) in owned
            }

    def _learn_forward_mutations(self) -> None:
        """Record optimized parameters that changed before the step."""
        if self._snapshot is None:
            return
        first = self._forward_mutated is None
        mutated = set()
        for name, param in self._snapshot_model.named_parameters():
            if name not in self._versions:
                continue
            if param._version != self._versions[name]:
                mutated.add(name)
            elif first and not torch.equal(param.detach(),
                                           self._snapshot[name]):
                mutated.add(name)  # changed through ``.data``: no version
        self._forward_mutated = (self._forward_mutated or set()) | mutated

    @staticmethod
    def _named_tensors(module):
        yield from module.named_buffers()
        yield from module.named_parameters()

    def _restore_untracked_state(self) -> None:
        """Copy the snapshot back, then let modules drop host-side caches.

        Modules of this project that mirror buffers on the host (cached step
        counters) reset the mirror in ``_load_from_state_dict``; it is called
        on them with an empty state dict, as a load would.
        """
        if self._snapshot is None:
            return
        module = self._snapshot_model
        with torch.no_grad():
            for name, tensor in self._named_tensors(module):
                if name in self._snapshot:
                    tensor.copy_(self._snapshot[name])
        for submodule in module.modules():
            if any(cls.__module__.startswith('hvp_mtl.')
                   and '_load_from_state_dict' in vars(cls)
                   for cls in type(submodule).__mro__):
                submodule._load_from_state_dict({}, '', {}, False, [], [], [])
