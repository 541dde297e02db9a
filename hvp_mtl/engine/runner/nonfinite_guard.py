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
finite loss is first the scaler's business: the step is skipped, the scale
lowered, the model state restored, and the skip logged as
``train/loss_scale_skips``; ``max_consecutive_overflow`` such skips in a row
(NaN gradients stay NaN at any scale) stop the run too. bf16 and fp32 have
no loss scaler: every non-finite gradient counts towards the stop.

Per step the guard computes one total gradient norm (which norm clipping
reuses: no second pass), runs one collective and syncs with the host once.
"""
import logging
import math
from collections import OrderedDict
from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.logging import MessageHub, print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper

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
                    restore_model_state: bool,
                    max_consecutive_overflow: int = 20) -> None:
        for name, value in (('max_consecutive_nonfinite',
                             max_consecutive_nonfinite),
                            ('max_consecutive_overflow',
                             max_consecutive_overflow)):
            if value < 1:
                raise ValueError(f'{name} must be >= 1, got {value}')
        self.max_consecutive_nonfinite = int(max_consecutive_nonfinite)
        self.max_consecutive_overflow = int(max_consecutive_overflow)
        self.consecutive_overflow = 0
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
        self._snapshot_before_forward(model)
        with super().optim_context(model):
            yield

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

    # ------------------------------------------------------------ checks --
    def _grads(self) -> List[torch.Tensor]:
        return [
            p.grad for group in self.optimizer.param_groups
            for p in group['params'] if p.grad is not None
        ]

    def _norm_type(self) -> float:
        return float(self.clip_grad_kwargs.get('norm_type', 2.0))

    def _verdict(self, loss: torch.Tensor,
                 grads: List[torch.Tensor]) -> Tuple[bool, bool, float,
                                                     Optional[torch.Tensor]]:
        """Is the loss / are the gradients non-finite on any rank?

        One gradient-norm pass (the total norm, which clipping reuses), one
        collective and one host sync per step. A non-finite gradient makes
        the total norm non-finite. Under DDP the gradients are the same on
        every rank (all-reduced) and only the loss flag needs a reduction;
        under FSDP (``grads_sharded``) the norm's partial sums are reduced in
        the same collective.

        Returns:
            tuple: ``(loss_bad, grads_bad, total_norm, total_norm_tensor)``;
            the tensor is None when there are no gradients.
        """
        loss_bad = (~torch.isfinite(loss.detach().float())).any().float()
        norm_type = self._norm_type()
        total = loss_bad.new_zeros(())
        if grads:
            total = torch.nn.utils.get_total_norm(
                grads, norm_type, error_if_nonfinite=False).float().to(
                    loss_bad.device)
        distributed = torch_dist.is_available() and torch_dist.is_initialized()
        inf_norm = norm_type == float('inf')
        if self.grads_sharded and distributed:
            partial = total if inf_norm else total.pow(norm_type)
            flags = torch.stack(
                [loss_bad, (~torch.isfinite(partial)).float(), partial])
            torch_dist.all_reduce(
                flags, op=torch_dist.ReduceOp.MAX
                if inf_norm else torch_dist.ReduceOp.SUM)
            total = flags[2] if inf_norm else flags[2].pow(1. / norm_type)
            flags = torch.stack([flags[0], flags[1], total])
        else:  # replicated gradients: only the loss flag differs per rank
            flags = torch.stack([loss_bad, (~torch.isfinite(total)).float()])
            if distributed:
                torch_dist.all_reduce(flags, op=torch_dist.ReduceOp.MAX)
            flags = torch.cat([flags, total.reshape(1)])
        loss_flag, grads_flag, norm = flags.tolist()  # the one host sync
        grads_bad = grads_flag > 0 or not math.isfinite(norm)
        if not grads:
            total = None
        return loss_flag > 0, grads_bad, norm, total

    def _clip_with_norm(self, grads: List[torch.Tensor], norm: float,
                        total: Optional[torch.Tensor]) -> None:
        """Gradient clipping with the norm of :meth:`_verdict` (no 2nd pass).

        Norm clipping scales as ``torch.nn.utils.clip_grad_norm_`` does (same
        coefficient, same kernels: bit-identical results); value clipping is
        upstream's.
        """
        if not self.clip_grad_kwargs:
            return
        if self.clip_func is not torch.nn.utils.clip_grad_norm_:
            return OptimWrapper._clip_grad(self)
        if total is None:
            return
        max_norm = float(self.clip_grad_kwargs['max_norm'])
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        torch._foreach_mul_(grads, coef.to(grads[0].device, grads[0].dtype))
        self.message_hub.update_scalar(f'train/{self.grad_name}', norm)

    @staticmethod
    def _iter_label() -> str:
        it = MessageHub.get_current_instance().get_info('iter')
        return '?' if it is None else str(it + 1)  # 1-based, as in the log

    def _record(self, skipped: bool, overflow: bool, reason: str) -> None:
        """Book-keeping of one step; stops the run after too many skips.

        ``overflow``: an fp16 loss-scale overflow (finite loss, non-finite
        scaled gradients), counted towards ``max_consecutive_overflow``;
        every other skip counts towards ``max_consecutive_nonfinite``.
        """
        hub = MessageHub.get_current_instance()
        self.step_skipped = skipped
        hub.update_info('nonfinite_step_skipped', skipped)
        if skipped:
            self._restore_untracked_state()
            if overflow:
                self.consecutive_overflow += 1
                self.total_scale_skips += 1
            else:
                self.consecutive_nonfinite += 1
                self.total_nonfinite += 1
            counts = (f'{self.consecutive_overflow} in a row, '
                      f'{self.total_scale_skips} overflow skips in total'
                      if overflow else
                      f'{self.consecutive_nonfinite} in a row, '
                      f'{self.total_nonfinite} non-finite steps in total')
            print_log(
                f'Skipped the optimizer step of iter {self._iter_label()}: '
                f'{reason} ({counts}).',
                logger='current',
                level=logging.WARNING)
        else:
            self.consecutive_nonfinite = 0
            self.consecutive_overflow = 0
        self._snapshot = None
        hub.update_scalar('train/nonfinite_skips', self.total_nonfinite)
        if self.total_scale_skips:
            hub.update_scalar('train/loss_scale_skips', self.total_scale_skips)
        if self.consecutive_nonfinite >= self.max_consecutive_nonfinite:
            self._stop(f'{self.consecutive_nonfinite} consecutive steps had '
                       'a non-finite loss or gradients')
        if self.consecutive_overflow >= self.max_consecutive_overflow:
            self._stop(f'{self.consecutive_overflow} consecutive steps were '
                       'skipped as fp16 loss-scale overflows (finite loss, '
                       'non-finite gradients at every scale tried, now '
                       f'{self._loss_scale():g}): the gradients are '
                       'non-finite whatever the scale')

    def _loss_scale(self) -> float:
        return 1.

    def _stop(self, what: str) -> None:
        last = MessageHub.get_current_instance().get_info('last_ckpt')
        where = (f'The last good checkpoint is {last}; resume from it '
                 f'with `--resume {last}`' if last else
                 'No checkpoint was written yet')
        raise NonFiniteTrainingError(
            f'{what} (the last at iter {self._iter_label()}); stopping the '
            f'run. {where} (e.g. after lowering the learning rate or '
            'enabling optim_wrapper.clip_grad).')

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
        """Verdict, then clip + step, or skip (see the module docstring)."""
        self._unscale()
        grads = self._grads()
        loss_bad, grads_bad, norm, total = self._verdict(loss, grads)
        if loss_bad or grads_bad:
            overflow = self._update_scale_after_skip() and not loss_bad
            self._record(True, overflow, 'fp16 gradient overflow' if overflow
                         else 'non-finite loss or gradients')
        else:
            self._clip_with_norm(grads, norm, total)
            self.optimizer.step(**step_kwargs)
            self._update_scale_after_step()
            self._record(False, False, '')

    # loss-scaling hooks, no-ops without a loss scaler (GuardedAmpOptimWrapper
    # overrides them)
    def _unscale(self) -> None:
        """Unscale the gradients in place (fp16 dynamic loss scaling)."""

    def _update_scale_after_skip(self) -> bool:
        """Update the loss scale after a skip; True for a dynamic scaler."""
        return False

    def _update_scale_after_step(self) -> None:
        """Update the loss scale after a step."""

    # ---------------------------------------------------- checkpointing --
    def state_dict(self) -> dict:
        state = super().state_dict()
        state['nonfinite_guard'] = dict(
            consecutive=self.consecutive_nonfinite,
            total=self.total_nonfinite,
            scale_skips=self.total_scale_skips,
            consecutive_overflow=self.consecutive_overflow)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        guard = state_dict.pop('nonfinite_guard', None)
        if guard is not None:
            self.consecutive_nonfinite = int(guard['consecutive'])
            self.total_nonfinite = int(guard['total'])
            self.total_scale_skips = int(guard['scale_skips'])
            self.consecutive_overflow = int(
                guard.get('consecutive_overflow', 0))
        super().load_state_dict(state_dict)
