"""Tiny ``HVPMTL(tasks=...)`` configs, one per registered task module, for the task sweep.

:func:`legacy_model_cfg` turns the tiny model config of ``tiny_pretrain_cfg`` (``tasks=dict(...)``,
as the shipped configs) into the deprecated per-task arguments (``*_head``, ``distill_loss``,
``teacher_momentum``...), :func:`new_style_model_cfg` back. :func:`task_sweep_cfg` keeps one task
(and the tasks it reads from), for every task type the plugin registers: ``SWEEP`` names them,
and the sweep test fails on a registered task missing from it.
"""
import copy
from typing import Dict, List

from mmengine.config import ConfigDict
from mmpretrain.registry import MODELS

from hvp_mtl.models.algorithms.legacy_args import LEGACY_ARGS, tasks_from_legacy
from tests.helpers.step_reference import CLASSES
from tests.helpers.tiny_configs import tiny_pretrain_cfg

#: task type -> the tasks of its one-task model (run order; the last is the one swept)
SWEEP: Dict[str, List[str]] = {
    'MIMLinearDecoderHead': ['mim'],
    'SwAVClusteringHead': ['swav'],
    'MultiLabelDecoderHead': ['mlc'],
    'MomentumDistillationHead': ['mlc', 'distill'],
    'MontageContrastiveHead': ['montage'],
}


def legacy_model_cfg(model: dict) -> ConfigDict:
    """``model`` (an ``HVPMTL(tasks=...)`` config) in the deprecated per-task arguments."""
    model = copy.deepcopy(dict(model))
    tasks, teacher = dict(model.pop('tasks')), dict(model.pop('teacher', None) or {})
    for name in ('mim', 'swav', 'mlc', 'montage'):
        if name in tasks:
            model[f'{name}_head'] = dict(tasks.pop(name))
    if 'distill' in tasks:
        model['distill_loss'] = tasks.pop('distill')['loss']
    if 'views' in model.get('mlc_head', {}):
        model['mlc_views'] = model['mlc_head'].pop('views')
    if tasks:
        model['extra_tasks'] = tasks
    if 'momentum' in teacher:
        model['teacher_momentum'] = teacher.pop('momentum')
    if teacher:
        model['teacher'] = teacher
    return ConfigDict(model)


def new_style_model_cfg(model: dict) -> dict:
    """``model`` with ``tasks=`` and ``teacher=`` (as given if it has no legacy argument)."""
    model = dict(model)
    legacy = {k: model.pop(k) for k in LEGACY_ARGS if model.get(k) is not None}
    if not legacy:
        return model
    new = tasks_from_legacy(legacy, None, model.get('loss_weights'), model.get('teacher'),
                            warn=False)
    return dict(model, **new)


def registered_task_types() -> List[str]:
    """Every class of the plugin in mmpretrain's ``MODELS`` that has ``task_loss``."""
    import hvp_mtl  # noqa: F401  (registers the plugin)
    return sorted(name for name, cls in MODELS.module_dict.items()
                  if cls.__module__.startswith('hvp_mtl.') and hasattr(cls, 'task_loss'))


def task_sweep_cfg(task_type: str) -> dict:
    """A tiny ``HVPMTL`` config that runs ``task_type`` (and what it reads from) only."""
    names = SWEEP[task_type]
    model = new_style_model_cfg(tiny_pretrain_cfg(
        'swin', num_classes=CLASSES, montage=0.1 if 'montage' in names else 0.).model)
    tasks = {name: model['tasks'][name] for name in names}
    assert tasks[names[-1]]['type'] == task_type, (task_type, tasks)
    weights = {name: weight for name, weight in model['loss_weights'].items() if name in tasks}
    return ConfigDict(dict(model, tasks=tasks, loss_weights=weights))
