"""``GuardedOptimWrapper`` / ``GuardedAmpOptimWrapper``: the non-finite step
guard of :mod:`.nonfinite_guard` on mmengine's two optimizer wrappers.

Drop-in replacements (registered in mmpretrain's ``OPTIM_WRAPPERS``)::

    optim_wrapper = dict(type='GuardedAmpOptimWrapper', dtype='bfloat16',
                         max_consecutive_nonfinite=10, optimizer=...)
"""
import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS

from .nonfinite_guard import NonFiniteGuardMixin

__all__ = ['GuardedOptimWrapper', 'GuardedAmpOptimWrapper']


@OPTIM_WRAPPERS.register_module()
class GuardedOptimWrapper(NonFiniteGuardMixin, OptimWrapper):
    """``OptimWrapper`` with the non-finite step guard.

    Args:
        max_consecutive_nonfinite (int): stop after this many skipped steps
            in a row. Defaults to 10.
        restore_model_state (bool): restore buffers, non-optimized
            parameters (EMA teacher) and parameters changed inside
            ``forward`` (normalised prototypes) of a skipped step. Defaults
            to True.
        **kwargs: ``OptimWrapper`` arguments (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self,
                 max_consecutive_nonfinite: int = 10,
                 restore_model_state: bool = True,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self._init_guard(max_consecutive_nonfinite, restore_model_state)


@OPTIM_WRAPPERS.register_module()
class GuardedAmpOptimWrapper(NonFiniteGuardMixin, AmpOptimWrapper):
    """``AmpOptimWrapper`` with the non-finite step guard.

    bf16 (``dtype='bfloat16'``, the default of the HVP-MTL configs) needs no
    loss scaling; fp16 (``dtype='float16'``) should use
    ``loss_scale='dynamic'``. Without CUDA (debug runs) only bf16 CPU autocast
    is possible; the loss scaler is then disabled.

    Args:
        loss_scale (str | float | dict): as ``AmpOptimWrapper``.
        dtype (str | torch.dtype, optional): autocast dtype.
        use_fsdp (bool): use ``ShardedGradScaler`` (FSDP).
        max_consecutive_nonfinite (int): see :class:`GuardedOptimWrapper`.
        restore_model_state (bool): see :class:`GuardedOptimWrapper`.
        **kwargs: ``OptimWrapper`` arguments.
    """

    def __init__(self,
                 loss_scale='dynamic',
                 dtype=None,
                 use_fsdp: bool = False,
                 max_consecutive_nonfinite: int = 10,
                 restore_model_state: bool = True,
                 **kwargs) -> None:
        if torch.cuda.is_available():
            super().__init__(
                loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp,
                **kwargs)
        else:
            self._init_cpu_autocast(dtype, **kwargs)
        self._dynamic_scaling = (
            self.loss_scaler.is_enabled()
            and self._scale_update_param is None)
        self._init_guard(max_consecutive_nonfinite, restore_model_state)

    def _init_cpu_autocast(self, dtype, **kwargs) -> None:
        """CPU debug runs: bf16 autocast, no loss scaling."""
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        if dtype not in (None, torch.bfloat16):
            raise ValueError(
                f'Without CUDA only bfloat16 autocast is available, got {dtype}')
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        self.cast_dtype = torch.bfloat16

    def _guarded_step(self, loss, step_kwargs) -> None:
        # the verdict needs true gradient values: unscale first (once)
        self.loss_scaler.unscale_(self.optimizer)
        loss_bad = self._loss_nonfinite_anywhere(loss)
        any_bad = loss_bad or self._any_rank_nonfinite(loss)
        if any_bad and self._dynamic_scaling and not loss_bad:
            # scaled-gradient overflow: GradScaler skips and lowers the scale
            self.loss_scaler.step(self.optimizer, **step_kwargs)
            self.loss_scaler.update()
            self._record(True, False, 'fp16 gradient overflow (loss scale '
                         f'now {self.loss_scaler.get_scale():g})')
        elif any_bad:
            self.loss_scaler.update(self._scale_update_param)
            self._record(True, True, 'non-finite loss or gradients')
        else:
            if self.clip_grad_kwargs:
                self._clip_grad()
            self.loss_scaler.step(self.optimizer, **step_kwargs)
            self.loss_scaler.update(self._scale_update_param)
            self._record(False, False, '')
