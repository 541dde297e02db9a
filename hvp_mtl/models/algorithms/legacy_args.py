"""``HVPMTL``'s constructor arguments before ``tasks=``, translated (deprecated).

Until the task dict, ``HVPMTL`` took one argument per task (``mim_head=``,
``swav_head=``, ``mlc_head=``, ``montage_head=``, ``extra_tasks=``), built the
distillation task itself from ``distill_loss=``, set the multi-label rows from
``mlc_views=`` and the EMA momentum from ``teacher_momentum=``. They keep
working for one release: :func:`tasks_from_legacy` turns them into the new
arguments (same modules, same run order, same state-dict keys) and warns.
"""
import warnings
from typing import Any, Dict, Optional

from .loss_weights import DEFAULT_LOSS_WEIGHTS

__all__ = ['LEGACY_ARGS', 'LEGACY_RUN_ORDER', 'tasks_from_legacy']

#: the built-in tasks in the order they ran; ``extra_tasks`` after them
LEGACY_RUN_ORDER = ('mim', 'swav', 'mlc', 'distill', 'montage')
LEGACY_ARGS = ('mlc_head', 'swav_head', 'mim_head', 'montage_head', 'extra_tasks',
               'distill_loss', 'mlc_views', 'teacher_momentum')
DEFAULT_DISTILL_LOSS = dict(type='SymmetricKLDistillationLoss', temperature=1.0)


def tasks_from_legacy(legacy: Dict[str, Any], tasks: Optional[dict],
                      loss_weights: Optional[dict], teacher: Optional[dict],
                      warn: bool = True) -> Dict[str, Any]:
    """``tasks``, ``teacher`` and ``loss_weights`` of the old arguments.

    Args:
        legacy (dict): The old arguments given (keys of :data:`LEGACY_ARGS`).
        tasks (dict, optional): ``tasks=``, which they cannot be mixed with.
        loss_weights (dict, optional): As given.
        teacher (dict, optional): ``teacher=``; ``teacher_momentum`` fills it.
        warn (bool): Emit the ``DeprecationWarning``.

    Returns:
        dict: ``tasks`` (every head given, in the old run order), ``teacher``.

    Raises:
        ValueError: Old and new arguments mixed, a task on (weight > 0) without
            its head, a bad ``mlc_views``, or an extra task named as a built-in.
    """
    if tasks is not None:
        raise ValueError(f'give tasks=dict(...) or the deprecated {sorted(legacy)}, '
                         'not both')
    if warn:
        warnings.warn(f'HVPMTL({", ".join(sorted(legacy))}=...) is deprecated: give '
                      "tasks=dict(mim=..., swav=..., mlc=..., distill=dict(type="
                      "'MomentumDistillationHead', loss=...), montage=...) and "
                      'teacher=dict(momentum=...) (docs/ARCHITECTURE.md)',
                      DeprecationWarning, stacklevel=4)
    extra = dict(legacy.get('extra_tasks') or {})
    clash = set(extra) & set(DEFAULT_LOSS_WEIGHTS)
    if clash:
        raise ValueError(f'extra_tasks {sorted(clash)} clash with the built-in tasks')
    weights = dict(DEFAULT_LOSS_WEIGHTS, **{name: 1.0 for name in extra})
    weights.update(loss_weights or {})
    views = legacy.get('mlc_views', 'both')
    mlc = legacy.get('mlc_head')
    if views not in ('both', 'unmasked') or mlc and mlc.get('views', views) != views:
        raise ValueError("mlc_views must be 'both' or 'unmasked' (and mlc_head.views, if "
                         f'set, the same), got {views!r}')
    heads = dict(mim=legacy.get('mim_head'), swav=legacy.get('swav_head'),
                 mlc=mlc and dict(mlc, views=views),
                 distill=dict(type='MomentumDistillationHead',
                              loss=legacy.get('distill_loss') or DEFAULT_DISTILL_LOSS),
                 montage=legacy.get('montage_head'))
    out = {}
    for name in LEGACY_RUN_ORDER + tuple(extra):
        cfg = heads[name] if name in heads else extra[name]
        if cfg is None:
            if weights.get(name, 0) > 0:
                raise ValueError(f'loss_weights.{name} > 0 needs {name}_head')
            continue
        if name == 'distill' and weights.get(name, 0) == 0:
            continue  # never configured by hand: nothing to keep
        out[name] = cfg
    teacher = dict(teacher or {})
    if 'teacher_momentum' in legacy:
        teacher['momentum'] = legacy['teacher_momentum']
    return dict(tasks=out, teacher=teacher)
