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
* restores every buffer (BatchNorm statistics) and every parameter the
  optimizer does not own to its value before the forward pass
  (``restore_model_state=True``); ``forward`` changes nothing else;
* sets ``optim_wrapper.step_skipped = True`` and the message-hub info
  ``'nonfinite_step_skipped'``, so code that runs after ``update_params``
  skips itself too: ``TeacherAndPrototypesHook`` leaves the EMA teacher,
  the SwAV queue, its counter and the prototypes untouched;
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
from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.logging import MessageHub, print_log
from mmengine.optim import OptimWrapper

from .step_snapshot import StepSnapshotMixin

__all__ = ['NonFiniteGuardMixin', 'NonFiniteTrainingError']


class NonFiniteTrainingError(RuntimeError):
    """Raised after too many consecutive non-finite steps."""


class NonFiniteGuardMixin(StepSnapshotMixin):
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
        self._init_snapshot()

    @contextmanager
    def optim_context(self, model):
        self._snapshot_before_forward(model)
        with super().optim_context(model):
            yield

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
