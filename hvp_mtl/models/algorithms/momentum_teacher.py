"""EMA teacher for momentum distillation (eq. 5-6)."""
from copy import deepcopy
from typing import Dict, List, Tuple

import torch
import torch.nn as nn

__all__ = ['MomentumTeacher']


# FSDP inserts this into the names of the modules it wraps (its units)
_FSDP_PREFIX = '_fsdp_wrapped_module.'


def _clean(name: str) -> str:
    """A parameter/buffer name without FSDP's wrapper components."""
    return name.replace(_FSDP_PREFIX, '')


def _parameters_to_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of ``module`` into a persistent buffer (same name)."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None:
                del sub._parameters[name]
                sub.register_buffer(name, param.detach().clone())
    return module


class MomentumTeacher(nn.Module):
    """Exponential-moving-average copy of some student modules.

    ``teacher = m * teacher + (1 - m) * student`` for every parameter at each
    :meth:`update` (buffers are copied), with ``m = momentum`` (paper: 0.995).
    The first update copies the student outright, so the teacher starts from
    the student's weights after ``init_weights`` / ``load_from``. The update
    uses fused ``torch._foreach_*`` kernels and never syncs with the host
    after the first step. It runs outside ``forward``, after each optimizer
    step (``TeacherAndPrototypesHook``), on full parameters: under FSDP
    inside ``summon_full_params``, where names carry FSDP's
    ``_fsdp_wrapped_module.`` components, which the pairing ignores.

    The copies are sub-modules named as given (``teacher.backbone.*``,
    ``teacher.mlc_head.*`` inside ``HVPMTL``) whose weights are stored as
    persistent **buffers**, not parameters: the state dict has the student's
    key names under the teacher prefix, but the optimizer, its constructor
    and DDP's gradient reduction never see the teacher. The copies stay in
    eval mode whatever ``train()`` is called with (no dropout or drop-path in
    the teacher), and the step counter is the buffer ``steps``, so a
    checkpoint restores the teacher exactly. It has no ``init_weights``:
    mmengine's initialisation skips it, the first update overwrites it.

    Args:
        modules (dict[str, nn.Module]): Student modules to shadow.
        momentum (float): ``m`` in ``[0, 1)``. Defaults to 0.995.
    """

    #: its weights change only in :meth:`update`, after an optimizer step, never
    #: in ``forward``: the non-finite guard need not snapshot them
    changed_outside_forward = True

    def __init__(self,
                 modules: Dict[str, nn.Module],
                 momentum: float = 0.995) -> None:
        super().__init__()
        if not 0. <= momentum < 1.:
            raise ValueError(f'momentum must be in [0, 1), got {momentum}')
        self.momentum = float(momentum)
        self.names = tuple(modules)
        for name, module in modules.items():
            self.add_module(name, _parameters_to_buffers(deepcopy(module)))
        self.register_buffer('steps', torch.zeros((), dtype=torch.long))
        self._started = False  # host mirror of ``steps > 0``
        self.train(False)

    def train(self, mode: bool = True) -> 'MomentumTeacher':
        """Always eval mode."""
        return super().train(False)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.reset_step_cache()

    def reset_step_cache(self) -> None:
        """Re-read ``steps`` at the next use (``StepCache``)."""
        self._started = False

    @property
    def initialized(self) -> bool:
        """Whether the teacher holds weights (copied, averaged or loaded).

        Reads the ``steps`` buffer once after a load, then a host mirror.
        """
        if not self._started:
            self._started = bool(self.steps > 0)
        return self._started

    def _pairs(self, students: Dict[str, nn.Module]
               ) -> Tuple[List[torch.Tensor], ...]:
        """(teacher, student) tensors: parameters to average, buffers to copy."""
        if set(students) != set(self.names):
            raise KeyError(f'expected student modules {self.names}, got '
                           f'{tuple(students)}')
        t_params, s_params, t_bufs, s_bufs = [], [], [], []
        for name in self.names:
            teacher = {_clean(key): buf
                       for key, buf in getattr(self, name).named_buffers()}
            student = students[name]
            for key, param in student.named_parameters():
                t_params.append(teacher[_clean(key)])
                s_params.append(param.detach())
            for key, buf in student.named_buffers():
                t_bufs.append(teacher[_clean(key)])
                s_bufs.append(buf)
        return t_params, s_params, t_bufs, s_bufs

    @torch.no_grad()
    def update(self, students: Dict[str, nn.Module]) -> None:
        """One EMA step from the current student weights.

        Args:
            students (dict[str, nn.Module]): The modules given at init,
                under the same names.
        """
        t_params, s_params, t_bufs, s_bufs = self._pairs(students)
        if self.initialized:
            torch._foreach_lerp_(t_params, s_params, 1. - self.momentum)
        else:
            torch._foreach_copy_(t_params, s_params)
        if t_bufs:
            torch._foreach_copy_(t_bufs, s_bufs)
        self.steps += 1
        self._started = True
