"""``GuardedOptimWrapper`` / ``GuardedAmpOptimWrapper``: the non-finite step
guard of :mod:`.nonfinite_guard` on mmengine's two optimizer wrappers.

Drop-in replacements (registered in mmpretrain's ``OPTIM_WRAPPERS``)::

    optim_wrapper = dict(type='GuardedAmpOptimWrapper', dtype='bfloat16',
                         max_consecutive_nonfinite=10, optimizer=...)
"""
from contextlib import contextmanager
from typing import Optional, Union

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
        restore_model_state (bool): restore the buffers (BatchNorm
            statistics; not the EMA teacher's, which only the post-step hook
            changes) and the non-optimized parameters of a skipped step to
            their values before its forward. Defaults to True.
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

    bf16 (``dtype='bfloat16'``, the HVP-MTL configs) runs without a loss
    scaler: its exponent range is fp32's, and a dynamic ``GradScaler`` would
    only turn every non-finite gradient into an uncounted "overflow" skip.
    Asking for a loss scaler with bf16 is an error. fp16 (``dtype='float16'``)
    uses dynamic loss scaling unless ``loss_scale`` says otherwise.

    The scaler's device is a parameter, so the fp16 branches (unscaling,
    overflow skips, scale updates) also run on a CPU (``torch.amp.GradScaler
    ('cpu')``), as in this project's tests.

    Args:
        loss_scale (str | float | dict, optional): as ``AmpOptimWrapper``
            (``'dynamic'``, a static scale, or ``GradScaler`` arguments).
            Defaults to None: ``'dynamic'`` for fp16, no scaler for bf16.
        dtype (str | torch.dtype, optional): autocast dtype. Defaults to
            float16 on CUDA, bfloat16 on a CPU.
        use_fsdp (bool): use ``ShardedGradScaler`` (FSDP) for fp16.
        device (str, optional): device of the loss scaler. Defaults to
            ``'cuda'`` when available, else ``'cpu'``.
        max_consecutive_nonfinite (int): see :class:`GuardedOptimWrapper`.
        max_consecutive_overflow (int): stop after this many fp16 overflow
            skips in a row. Defaults to 20: the default initial scale 2^16
            halved 20 times is 1/16, so gradients still non-finite then are
            not a scaling problem.
        restore_model_state (bool): see :class:`GuardedOptimWrapper`.
        **kwargs: ``OptimWrapper`` arguments.
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict, None] = None,
                 dtype: Union[str, torch.dtype, None] = None,
                 use_fsdp: bool = False,
                 device: Optional[str] = None,
                 max_consecutive_nonfinite: int = 10,
                 max_consecutive_overflow: int = 20,
                 restore_model_state: bool = True,
                 **kwargs) -> None:
        # mmengine's AmpOptimWrapper.__init__ insists on an accelerator and a
        # CUDA scaler; everything else of it (backward with the scaled loss,
        # autocast context, scaler state in checkpoints) is inherited
        OptimWrapper.__init__(self, **kwargs)
        device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
        self._device = device
        if isinstance(dtype, str):
            if dtype not in self.valid_dtypes:
                raise ValueError(f'dtype should be one of {self.valid_dtypes}'
                                 f', got {dtype!r}')
            dtype = getattr(torch, dtype)
        if dtype is None:
            dtype = torch.float16 if device == 'cuda' else torch.bfloat16
        self.cast_dtype = dtype
        self._scale_update_param = None
        self.loss_scaler = self._build_scaler(loss_scale, dtype, use_fsdp,
                                              device)
        self._dynamic_scaling = (self.loss_scaler.is_enabled()
                                 and self._scale_update_param is None)
        self._init_guard(max_consecutive_nonfinite, restore_model_state,
                         max_consecutive_overflow)

    def _build_scaler(self, loss_scale, dtype, use_fsdp, device):
        if use_fsdp:
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler as scaler_type
        else:
            scaler_type = torch.amp.GradScaler
        if dtype == torch.bfloat16:
            if loss_scale is not None:
                raise ValueError(
                    f'optim_wrapper: dtype=bfloat16 with loss_scale='
                    f'{loss_scale!r}. bf16 needs no loss scaling (its range '
                    'is fp32\'s); a scaler would hide non-finite gradients as '
                    'fp16 overflows. Remove loss_scale (or use '
                    "dtype='float16').")
            return scaler_type(device, enabled=False)
        if loss_scale is None or loss_scale == 'dynamic':
            return scaler_type(device)
        if isinstance(loss_scale, float):
            self._scale_update_param = loss_scale
            return scaler_type(device, init_scale=loss_scale)
        if isinstance(loss_scale, dict):
            return scaler_type(device, **loss_scale)
        raise TypeError('loss_scale must be None, "dynamic", a float or a '
                        f'dict, got {loss_scale!r}')

    @contextmanager
    def optim_context(self, model):
        """Snapshot for the guard, then ``torch.autocast`` on the wrapper's
        device (mmengine's ``autocast`` refuses fp16 on a CPU)."""
        self._snapshot_before_forward(model)
        with OptimWrapper.optim_context(self, model), torch.autocast(
                device_type=self._device, dtype=self.cast_dtype):
            yield

    def _unscale(self) -> None:
        # the verdict needs true gradient values: unscale first (once)
        self.loss_scaler.unscale_(self.optimizer)

    def _update_scale_after_skip(self) -> bool:
        # unscale_ recorded found_inf: a dynamic scaler lowers the scale
        self.loss_scaler.update(self._scale_update_param)
        return self._dynamic_scaling

    def _update_scale_after_step(self) -> None:
        # the guard already knows every gradient is finite, so the optimizer
        # steps directly (GradScaler.step would sync to re-check found_inf)
        self.loss_scaler.update(self._scale_update_param)

    def _loss_scale(self) -> float:
        return float(self.loss_scaler.get_scale())
