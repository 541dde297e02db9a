"""The interfaces one layer calls on another, declared in one place.

Hooks, loops, the non-finite guard, the evaluators and the exporters call a
few methods on models and their parts. Each such name is a
:class:`typing.Protocol` here; the call sites use them in type hints, and
the ``runtime_checkable`` ones replace ``hasattr`` checks with
``isinstance``.

* :class:`PretrainTask` (``task_loss``): the task heads (multi-label,
  SwAV, MIM, distillation, montage); called by ``HVPMTL.loss``'s loop. What
  a task needs of the step (the mask, stages, the teacher, another task's
  output) it declares as optional attributes, read once at build
  (:class:`TaskNeeds`, :func:`task_needs`).
* :class:`BatchExtender` (``extend_batch``): ``MontageContrastiveHead``;
  called by ``HVPMTL.loss`` before the backbone pass.
* :class:`AfterTrainStep` (``after_train_step``): ``HVPMTL``, ``MCL``,
  ``SwAVClusteringHead``; called by ``TeacherAndPrototypesHook`` (the
  model's calls its tasks').
* :class:`TeacherShadowed` (``shadowed_modules``):
  ``MontageContrastiveHead``; read by ``HVPMTL`` to build its EMA teacher.
* :class:`ChangedOutsideForward` (``changed_outside_forward``):
  ``MomentumTeacher``; read by the non-finite guard's step snapshot.
* :class:`RankLocalState` (``rank_local_state`` /
  ``load_rank_local_state``): ``SwAVClusteringHead``'s queue; saved and
  restored per rank by the resume state.
* :class:`TeacherPredictor` (``predict_with_teacher``): ``HVPMTL``; set by
  ``MultiLabelValLoop`` and ``ImageTagger``.
* :class:`LayerDepth` (``get_layer_depth``): mmpretrain classifiers and
  backbones; read by the layer-decay optimizer constructor.
"""
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

import torch
import torch.nn as nn

__all__ = ['TaskStep', 'PretrainTask', 'TaskNeeds', 'task_needs', 'BatchExtender',
           'AfterTrainStep', 'StepCache', 'reset_step_caches',
           'TeacherShadowed', 'ChangedOutsideForward', 'RankLocalState',
           'TeacherPredictor', 'LayerDepth']


@dataclass
class TaskStep:
    """What every task of one training step may read (built by ``HVPMTL.loss``).

    Attributes:
        view0 (Tensor): The masked view ``[B, 3, S, S]``.
        view1 (Tensor): The clean view ``[B, 3, S, S]``.
        data_samples (list): The batch's ``DataSample`` s (``gt_score`` ...).
        mask (Tensor, optional): View 0's patch mask ``[B, S/p, S/p]``.
        stages (Sequence[Tensor]): The student backbone's outputs for every
            row of its one pass: ``[:B]`` view 0, ``[B:2B]`` view 1, then the
            rows :class:`BatchExtender` tasks appended.
        feats (Tensor): ``stages[-1][:2B]``, the last stage of both views.
        teacher (nn.Module, optional): The EMA ``MomentumTeacher``.
        teacher_stages (Sequence[Tensor], optional): The teacher backbone's
            outputs for view 1 (no grad).
        teacher_views (dict): ``{view: the teacher backbone's outputs}`` of
            every view a task asked for (:attr:`TaskNeeds.teacher_views`);
            ``teacher_views[1]`` is :attr:`teacher_stages`.
        students (dict): The student modules the teacher shadows, by name.
        shared (dict): Outputs a task leaves for a later one (e.g. the
            multi-label decoder's view-1 tokens for distillation) and what a
            :class:`BatchExtender` keeps for its own ``task_loss``.
    """
    view0: torch.Tensor
    view1: torch.Tensor
    data_samples: List[Any]
    mask: Optional[torch.Tensor] = None
    stages: Sequence[torch.Tensor] = ()
    feats: Optional[torch.Tensor] = None
    teacher: Optional[nn.Module] = None
    teacher_stages: Optional[Sequence[torch.Tensor]] = None
    teacher_views: Dict[int, Sequence[torch.Tensor]] = field(default_factory=dict)
    students: Dict[str, nn.Module] = field(default_factory=dict)
    shared: Dict[str, Any] = field(default_factory=dict)

    @property
    def batch(self) -> int:
        """Images per view, ``B``."""
        return self.view0.shape[0]

    def stack(self, name: str, producer: str) -> torch.Tensor:
        """One field of every data sample, stacked, or a clear error."""
        missing = [i for i, s in enumerate(self.data_samples)
                   if name not in s]
        if missing:
            raise KeyError(f'HVPMTL needs data_sample.{name} ({producer}); '
                           f'missing in samples {missing[:5]} of the batch')
        return torch.stack([s.get(name) for s in self.data_samples])


class PretrainTask(Protocol):
    """One pre-training objective: one module, one ``loss_weights`` entry.

    Besides :meth:`task_loss`, a task may declare what it needs of the step
    as class (or instance) attributes, each optional, with the defaults of
    :class:`TaskNeeds`: ``needs_mask``, ``needs_stages``, ``needs_teacher``,
    ``teacher_views``, ``shadows``, ``reads``, ``writes``. ``HVPMTL`` reads
    them once when it is built, so the task loop names no task.
    """

    def task_loss(self, step: TaskStep
                  ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The task's unweighted scalar loss and its (detached) logs.

        ``forward``/``task_loss`` change no state of the module: what a step
        changes (counters, queues) changes in :meth:`AfterTrainStep.
        after_train_step`, after the optimizer step.
        """


@dataclass(frozen=True)
class TaskNeeds:
    """What one task needs of the step, as it declares it (all optional).

    Attributes:
        needs_mask (bool): View 0's mask applied in the student's pass (and
            ``step.mask`` filled). No task needing it: nothing is masked and
            the backbone's mask token is frozen.
        needs_stages (tuple[int]): Backbone stages the task reads (its
            ``out_indices`` must hold them), e.g. ``(0, 1, 2, 3)``.
        needs_teacher (bool): The EMA teacher is built and run.
        teacher_views (tuple[int]): The views the teacher's backbone sees
            (``step.teacher_views``); default view 1, the clean one.
        shadows (tuple[str]): Modules of the model (``'mlc_head'``) the
            teacher keeps an EMA copy of under the same name (the task's own
            modules: :class:`TeacherShadowed`).
        reads (tuple[str]): ``step.shared`` keys the task consumes; a task
            that runs earlier must write each (checked at build).
        writes (tuple[str]): ``step.shared`` keys the task leaves for later
            tasks.
    """
    needs_mask: bool = False
    needs_stages: Tuple[int, ...] = ()
    needs_teacher: bool = False
    teacher_views: Tuple[int, ...] = (1, )
    shadows: Tuple[str, ...] = ()
    reads: Tuple[str, ...] = ()
    writes: Tuple[str, ...] = ()


def task_needs(task: Any) -> TaskNeeds:
    """The :class:`TaskNeeds` a task module declares (defaults where it is silent)."""
    declared = {}
    for item in fields(TaskNeeds):
        value = getattr(task, item.name, item.default)
        declared[item.name] = tuple(value) if isinstance(item.default, tuple) else bool(value)
    return TaskNeeds(**declared)


@runtime_checkable
class BatchExtender(Protocol):
    """A task that adds rows to the student's one backbone pass."""

    def extend_batch(self, step: TaskStep) -> torch.Tensor:
        """Rows ``[N, 3, S, S]`` appended after view 1 (never masked)."""


@runtime_checkable
class AfterTrainStep(Protocol):
    """State that changes after an optimizer step, never in ``forward``."""

    def after_train_step(self, before_training: bool = False) -> None:
        """Called once after every optimizer step taken (not on accumulation
        iterations, not on skipped non-finite steps) and once before the
        first step with ``before_training=True`` (set up only what is still
        untouched: a resumed run must equal an uninterrupted one)."""


@runtime_checkable
class StepCache(Protocol):
    """A module with host-side state of the current step (cached counters, the SwAV head's
    embeddings kept for the post-step hook), not in its state dict."""

    def reset_step_cache(self) -> None:
        """Drop it, as a load does: counters are re-read from the buffers, what the
        step's forwards kept for ``after_train_step`` is forgotten. Called by the non-finite
        guard after restoring a skipped step and after any extra forward outside training
        (e.g. the gradient-share measurement)."""


def reset_step_caches(model: nn.Module) -> None:
    """:meth:`StepCache.reset_step_cache` on every submodule that has one."""
    for module in model.modules():
        if isinstance(module, StepCache):
            module.reset_step_cache()


@runtime_checkable
class TeacherShadowed(Protocol):
    """A task whose modules the EMA teacher also keeps a copy of."""

    def shadowed_modules(self) -> Dict[str, nn.Module]:
        """``{teacher attribute name: student module}``."""


@runtime_checkable
class ChangedOutsideForward(Protocol):
    """A module whose state changes only after the optimizer step (the EMA
    teacher): the non-finite guard need not snapshot it before ``forward``."""

    changed_outside_forward: bool


@runtime_checkable
class RankLocalState(Protocol):
    """State that differs per rank (a SwAV queue), saved per rank on resume."""

    def rank_local_state(self) -> Dict[str, torch.Tensor]:
        """This process's state (CPU tensors)."""

    def load_rank_local_state(self, state: Dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`rank_local_state`."""


@runtime_checkable
class TeacherPredictor(Protocol):
    """A model that can score with its EMA teacher instead of the student."""

    predict_with_teacher: bool


@runtime_checkable
class LayerDepth(Protocol):
    """Layer ids for layer-wise learning-rate decay (mmpretrain's name)."""

    def get_layer_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """``(layer id, number of layers)`` of a parameter."""
