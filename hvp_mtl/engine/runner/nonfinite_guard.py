"""Optimizer wrappers that skip steps with a non-finite loss or gradients.

One bad batch (a NaN from an fp16 overflow, a corrupt image, a divergence
spike) must not poison a 30-epoch run: without a guard AdamW writes NaN into
every weight and the EMA teacher copies it a step later.

:class:`GuardedOptimWrapper` (fp32) and :class:`GuardedAmpOptimWrapper`
(``AmpOptimWrapper``: bf16, or fp16 with dynamic loss scaling) check, after
the backward pass, whether the loss and the (unscaled) gradients are finite.
The verdict is all-reduced, so under DDP/FSDP every rank skips the same
steps. A skipped step

* does not call ``optimizer.step()`` (parameters and optimizer moments are
  unchanged) and zeroes the gradients;
* restores every buffer, every parameter the optimizer does not own, and
  every optimized parameter a model changes itself in ``forward``, to its
  value before the forward pass (``restore_model_state=True``): the SwAV
  queue and prototype-freeze counter are left exactly as they were;
* sets ``optim_wrapper.step_skipped = True`` and the message-hub info
  ``'nonfinite_step_skipped'``, so code that runs after ``update_params``
  skips itself too: ``TeacherAndPrototypesHook`` leaves the EMA teacher
  and the prototypes untouched;
* is logged (warning) and counted (``train/nonfinite_skips`` in the log).

After ``max_consecutive_nonfinite`` skipped steps in a row the run stops with
:class:`NonFiniteTrainingError`, naming the last checkpoint written (which is
a good one: skipped steps never change the weights).

With fp16 dynamic loss scaling an overflow of the *scaled* gradients with a
finite loss is the scaler's business: ``GradScaler`` skips the step and
lowers the scale; the guard still restores the model state, logs it as
``train/loss_scale_skips`` and does not count it towards the stop.
"""
import logging
from collections import OrderedDict
from contextlib import contextmanager
from typing import Dict, List, Optional

import torch
import torch.distributed as torch_dist
from mmengine.logging import MessageHub, print_log
from mmengine.model import is_model_wrapper

__all__ = ['NonFiniteGuardMixin', 'NonFiniteTrainingError']


class NonFiniteTrainingError(RuntimeError):
    """Raised after too many consecutive non-finite steps."""


class NonFiniteGuardMixin:
    """The guard logic shared by the two wrappers (see module docstring).

    It also clips gradient norms correctly under FSDP: there each rank holds
    a shard of every gradient, and upstream's ``clip_grad_norm_`` over the
    optimizer's parameters would clip every shard by its own local norm.
    ``ResumableFSDPStrategy`` sets :attr:`grads_sharded`; the norm is then
    all-reduced over the ranks first (as ``FSDP.clip_grad_norm_``).
    """

    #: every rank holds a disjoint shard of each gradient (set under FSDP)
    grads_sharded = False

    def _init_guard(self, max_consecutive_nonfinite: int,
                    restore_model_state: bool) -> None:
        if max_consecutive_nonfinite < 1:
            raise ValueError('max_consecutive_nonfinite must be >= 1, got '
                             f'{max_consecutive_nonfinite}')
        self.max_consecutive_nonfinite = int(max_consecutive_nonfinite)
        self.restore_model_state = restore_model_state
        self.step_skipped = False
        self.consecutive_nonfinite = 0
        self.total_nonfinite = 0
        self.total_scale_skips = 0
        self._snapshot: Optional[Dict[str, torch.Tensor]] = None
        self._snapshot_model = None
        self._versions: Dict[str, int] = {}
        self._forward_mutated: Optional[set] = None

    # -------------------------------------------------------- model state --
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

    @contextmanager
    def optim_context(self, model):
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
        with super().optim_context(model):
            yield

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

    # ------------------------------------------------------------ checks --
    def _grads(self) -> List[torch.Tensor]:
        return [
            p.grad for group in self.optimizer.param_groups
            for p in group['params'] if p.grad is not None
        ]

    def _any_rank_nonfinite(self, loss: torch.Tensor) -> bool:
        """True if the loss or a gradient is non-finite on any rank."""
        bad = (~torch.isfinite(loss.detach().float())).any().float()
        grads = self._grads()
        if grads:
            norms = torch._foreach_norm(grads)
            total = torch.stack([n.float().to(bad.device) for n in norms])
            bad = torch.maximum(bad, (~torch.isfinite(total)).any().float())
        if torch_dist.is_available() and torch_dist.is_initialized():
            torch_dist.all_reduce(bad, op=torch_dist.ReduceOp.MAX)
        return bool(bad.item() > 0)

    def _loss_nonfinite_anywhere(self, loss: torch.Tensor) -> bool:
        bad = (~torch.isfinite(loss.detach().float())).any().float()
        if torch_dist.is_available() and torch_dist.is_initialized():
            torch_dist.all_reduce(bad, op=torch_dist.ReduceOp.MAX)
        return bool(bad.item() > 0)

    @staticmethod
    def _iter_label() -> str:
        it = MessageHub.get_current_instance().get_info('iter')
        return '?' if it is None else str(it + 1)  # 1-based, as in the log

    def _record(self, skipped: bool, counted: bool, reason: str) -> None:
        hub = MessageHub.get_current_instance()
        self.step_skipped = skipped
        hub.update_info('nonfinite_step_skipped', skipped)
        if skipped:
            self._restore_untracked_state()
            if counted:
                self.consecutive_nonfinite += 1
                self.total_nonfinite += 1
            else:
                self.total_scale_skips += 1
            print_log(
                f'Skipped the optimizer step of iter {self._iter_label()}: '
                f'{reason} '
                f'({self.consecutive_nonfinite} in a row, '
                f'{self.total_nonfinite} non-finite steps in total).',
                logger='current',
                level=logging.WARNING)
        else:
            self.consecutive_nonfinite = 0
        self._snapshot = None
        hub.update_scalar('train/nonfinite_skips', self.total_nonfinite)
        if self.total_scale_skips:
            hub.update_scalar('train/loss_scale_skips', self.total_scale_skips)
        if self.consecutive_nonfinite >= self.max_consecutive_nonfinite:
            last = hub.get_info('last_ckpt')
            where = (f'The last good checkpoint is {last}; resume from it '
                     f'with `--resume {last}`' if last else
                     'No checkpoint was written yet')
            raise NonFiniteTrainingError(
                f'{self.consecutive_nonfinite} consecutive steps had a '
                f'non-finite loss or gradients (the last at iter '
                f'{self._iter_label()}); stopping the run. {where} '
                '(e.g. after lowering the learning rate or enabling '
                'optim_wrapper.clip_grad).')

    def _clip_grad(self) -> None:
        """Upstream's clipping, with the global norm of sharded gradients."""
        if (not self.grads_sharded
                or self.clip_func is not torch.nn.utils.clip_grad_norm_):
            return super()._clip_grad()  # value clipping is per element
        grads = self._grads()
        if not grads:
            return
        max_norm = float(self.clip_grad_kwargs['max_norm'])
        norm_type = float(self.clip_grad_kwargs.get('norm_type', 2.0))
        norms = torch.stack(torch._foreach_norm(grads, norm_type)).float()
        if norm_type == float('inf'):
            total = norms.max()
            torch_dist.all_reduce(total, op=torch_dist.ReduceOp.MAX)
        else:
            total = norms.pow(norm_type).sum()
            torch_dist.all_reduce(total, op=torch_dist.ReduceOp.SUM)
            total = total.pow(1. / norm_type)
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        torch._foreach_mul_(grads, coef.to(grads[0].dtype))
        self.message_hub.update_scalar(f'train/{self.grad_name}',
                                       float(total))

    # ------------------------------------------------------------ update --
    def update_params(self,
                      loss: torch.Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        """Backward, then step only if everything is finite on every rank."""
        step_kwargs = step_kwargs or {}
        zero_kwargs = zero_kwargs or {}
        loss = self.scale_loss(loss)
        # always run backward, so DDP's gradient all-reduce happens on every
        # rank whatever the verdict
        self.backward(loss)
        if not self.should_update():
            return
        self._learn_forward_mutations()
        self._guarded_step(loss, step_kwargs)
        self.zero_grad(**zero_kwargs)

    def _guarded_step(self, loss, step_kwargs) -> None:
        if self._any_rank_nonfinite(loss):
            self._record(True, True, 'non-finite loss or gradients')
        else:
            self.step(**step_kwargs)
            self._record(False, False, '')

    # ---------------------------------------------------- checkpointing --
    def state_dict(self) -> dict:
        state = super().state_dict()
        state['nonfinite_guard'] = dict(
            consecutive=self.consecutive_nonfinite,
            total=self.total_nonfinite,
            scale_skips=self.total_scale_skips)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        guard = state_dict.pop('nonfinite_guard', None)
        if guard is not None:
            self.consecutive_nonfinite = int(guard['consecutive'])
            self.total_nonfinite = int(guard['total'])
            self.total_scale_skips = int(guard['scale_skips'])
        super().load_state_dict(state_dict)
