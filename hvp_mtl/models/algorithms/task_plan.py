"""What the enabled tasks need of a step, gathered and checked once at build."""
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import torch.nn as nn

from ..protocols import TaskNeeds, TeacherShadowed, task_needs

__all__ = ['TaskPlan', 'plan_tasks', 'run_order']


@dataclass(frozen=True)
class TaskPlan:
    """The union of the enabled tasks' :class:`TaskNeeds`.

    Attributes:
        needs (dict[str, TaskNeeds]): Each task's, in run order.
        mask (bool): Some task needs view 0 masked.
        teacher (bool): Some task needs the EMA teacher (or shadows a module).
        teacher_views (tuple[int]): The views the teacher's backbone sees,
            sorted (empty without a teacher).
        shadows (tuple[str]): The model's modules the teacher copies, in the
            order the tasks name them (their own: :class:`TeacherShadowed`).
    """
    needs: Dict[str, TaskNeeds]
    mask: bool
    teacher: bool
    teacher_views: Tuple[int, ...]
    shadows: Tuple[str, ...]


def run_order(tasks: Dict[str, nn.Module], rank: Sequence[str]) -> Tuple[str, ...]:
    """The order the enabled tasks run in, whatever the order of the ``tasks`` dict.

    Each task runs after the tasks whose ``step.shared`` keys it reads; among the tasks ready
    to run, those named in ``rank`` go first, in its order, then the others by name. The
    order depends on the set of tasks only, not on the dict's order, which mmengine's config
    dump sorts (a ``config.py`` saved into the work dir must build the same step).

    Args:
        tasks (dict[str, nn.Module]): The enabled tasks.
        rank (Sequence[str]): The built-in tasks' order (``LEGACY_RUN_ORDER``).

    Returns:
        tuple[str]: The names, in run order. A read no task writes, or a cycle, is left to
        :func:`plan_tasks` to report.
    """
    needs = {name: task_needs(task) for name, task in tasks.items()}
    writers = {key: name for name, need in needs.items() for key in need.writes}
    pending = sorted(tasks, key=lambda n: (rank.index(n) if n in rank else len(rank), n))
    order: list = []
    while pending:
        ready = [n for n in pending
                 if all(writers.get(key) in (None, n, *order) for key in needs[n].reads)]
        name = (ready or pending)[0]
        order.append(name)
        pending.remove(name)
    return tuple(order)


def plan_tasks(tasks: Dict[str, nn.Module], out_indices: Sequence[int]) -> TaskPlan:
    """Read every task's needs and check them against each other and the backbone.

    Args:
        tasks (dict[str, nn.Module]): The enabled tasks, in run order.
        out_indices (Sequence[int]): The backbone's output stages.

    Raises:
        ValueError: A task reads a ``step.shared`` key that no task before it
            writes, or needs stages the backbone does not return.
    """
    needs = {name: task_needs(task) for name, task in tasks.items()}
    written: Dict[str, str] = {}
    for name, need in needs.items():
        for key in need.reads:
            if key not in written:
                raise ValueError(
                    f'loss_weights.{name} > 0: task {name!r} reads step.shared[{key!r}], '
                    'which no enabled task before it writes (turn the writing task on and '
                    f'run it first, or set loss_weights.{name}=0)')
        written.update({key: name for key in need.writes})
        missing = set(need.needs_stages) - set(out_indices)
        if missing:
            wanted = tuple(sorted(set(out_indices) | set(need.needs_stages)))
            raise ValueError(f'loss_weights.{name} > 0 needs the backbone stages '
                             f'{need.needs_stages}: set backbone.out_indices={wanted}')
    shadows = []
    for need in needs.values():
        shadows.extend(s for s in need.shadows if s not in shadows)
    teacher = any(n.needs_teacher or n.shadows for n in needs.values()) or any(
        isinstance(t, TeacherShadowed) for t in tasks.values())
    views = sorted({v for n in needs.values() if n.needs_teacher or n.shadows
                    for v in n.teacher_views}) if teacher else []
    if teacher and not views:
        views = [1]
    return TaskPlan(needs=needs, mask=any(n.needs_mask for n in needs.values()),
                    teacher=teacher, teacher_views=tuple(views), shadows=tuple(shadows))
