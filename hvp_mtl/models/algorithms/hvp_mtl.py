"""HVP-MTL: pre-training tasks on one backbone, a weighted sum, eq. (7)."""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..builder import build_module
from ..protocols import AfterTrainStep, BatchExtender, PretrainTask, TaskStep, TeacherShadowed
from .legacy_args import LEGACY_ARGS, LEGACY_RUN_ORDER, tasks_from_legacy
from .loss_weights import parse_loss_weights
from .momentum_teacher import MomentumTeacher
from .task_plan import plan_tasks, run_order

__all__ = ['HVPMTL']


@MODELS.register_module()
class HVPMTL(BaseSelfSupervisor):
    """Heuristic Vision Pre-training with Multi-Task Learning (arXiv 2310.07510).

    Eq. (7): ``L = a1 L_mcls + a2 L_cl + a3 L_mim + a4 L_mom`` with
    ``loss_weights = dict(mlc=a1, swav=a2, mim=a3, distill=a4)`` (paper:
    0.001, 0.02, 1.0, 10.0). Each task is one module, ``{task}_head``, with
    one contract (:class:`~hvp_mtl.models.protocols.PretrainTask`):
    ``task_loss(step) -> (loss, logs)`` on the :class:`TaskStep` that
    :meth:`loss` fills once per step. A task whose weight is 0 is not built
    and costs nothing (Table 5 ablations); distillation needs the
    multi-label decoder. A fifth task, ``montage`` (default 0), adds MCL's
    montage contrast (:class:`MontageContrastiveHead`; its montages join the
    backbone batch, it reads all four stages, the other tasks the last one;
    docs/MCL.md). A further task is one more ``tasks`` entry
    (docs/ARCHITECTURE.md); the old per-task arguments still work, deprecated.

    Data flow of one step (``inputs`` = two augmented views, ``mask``
    applies to view 0)::

        [view0 (masked) ; view1 ; extra rows] --one student pass, batch 2B+-->
            F [2B, d0, h, w] (last stage of the two views)
            mim:     F[:B] -> MIM decoder -> L1 on masked pixels   (eq. 4)
            swav:    F -> view0 vs view1 swapped codes             (eq. 2-3)
            mlc:     F -> multi-label decoder, gt_score of both    (eq. 1)
                     views (its ``views='unmasked'``: F[B:] only);
                     view-1 tokens h -> ``step.shared``
            distill: symmetric KL(S(h, Q0) / T, S(h', Q0) / T)     (eq. 5-6)
                     h' = teacher decoder of the teacher's view1 features
            montage: MCL's multi-level contrast of the montage rows
        loss_{task} = weight * task loss, summed by mmengine

    The two views share one backbone call; rows after view 0 get an
    all-zero mask, which leaves them exactly unmasked. ``forward`` changes
    no state at all: the EMA teacher step, the SwAV queue, counter and
    prototype normalisation happen in :meth:`after_train_step`, after every
    optimizer step that was taken (``TeacherAndPrototypesHook``, in every
    pre-training config's ``default_hooks``), which also makes them work
    under FSDP. See docs/method.md.

    Args:
        backbone (dict): ``MaskedSwinTransformer`` / ``MaskedViT`` config
            (ViT with ``out_type='featmap'``).
        tasks (dict): ``{name: task module config}``; each built as
            ``{name}_head`` with weight ``loss_weights[name]``. They run in
            dependency order, ties in the paper's order (mim, swav, mlc,
            distill, montage), then by name: not in the dict's order, which
            mmengine's config dump sorts (``task_plan.run_order``). What a
            task needs (the mask, stages, the teacher, an earlier task's
            output) it declares itself (``TaskNeeds``, models/protocols.py).
        loss_weights (dict): Task weights; the paper's tasks default to its
            weights (``DEFAULT_LOSS_WEIGHTS``), others to 1.0; 0 = not built
            (a known task missing from ``tasks`` weighs 0).
        teacher (dict, optional): ``MomentumTeacher`` arguments
            (``momentum``, default 0.995), used when a task needs the teacher.
        predict_task (str): The task whose ``{name}_head`` scores
            :meth:`predict`. Defaults to ``'mlc'``.
        predict_with_teacher (bool): :meth:`predict` uses the teacher.
        data_preprocessor (dict, optional): Defaults to
            ``SelfSupDataPreprocessor``.
        pretrained (str, optional): Checkpoint for the whole model.
        init_cfg (dict, optional): Initialisation config.
        **legacy: Deprecated (one release): ``mlc_head``, ``swav_head``,
            ``mim_head``, ``montage_head``, ``extra_tasks``, ``distill_loss``,
            ``mlc_views``, ``teacher_momentum`` (``legacy_args.py``).
    """

    def __init__(self,
                 backbone: dict,
                 tasks: Optional[Dict[str, dict]] = None,
                 loss_weights: Optional[dict] = None,
                 teacher: Optional[dict] = None,
                 predict_task: str = 'mlc',
                 predict_with_teacher: bool = False,
                 data_preprocessor: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None,
                 **legacy) -> None:
        unknown = set(legacy) - set(LEGACY_ARGS)
        if unknown:
            raise TypeError(f'HVPMTL got unexpected arguments {sorted(unknown)}')
        legacy = {k: v for k, v in legacy.items() if v is not None}
        if legacy:
            new = tasks_from_legacy(legacy, tasks, loss_weights, teacher)
            tasks, teacher = new['tasks'], new['teacher']
        tasks = dict(tasks or {})
        weights = parse_loss_weights(loss_weights, tuple(tasks))
        for name, weight in weights.items():
            if weight > 0 and name not in tasks:
                raise ValueError(f'loss_weights.{name} > 0 but tasks has no {name!r}: '
                                 f'add tasks.{name} or set loss_weights.{name}=0')
        super().__init__(
            backbone=backbone,
            data_preprocessor=data_preprocessor,
            pretrained=pretrained,
            init_cfg=init_cfg)
        self.loss_weights = weights
        enabled = [name for name in tasks if weights[name] > 0]
        # registered in the order of ``weights`` (the known tasks', then the others'),
        # whatever order they run in: the same state-dict keys and optimizer parameters for
        # any order of ``tasks``
        for name in weights:
            module = build_module(tasks[name]) if name in enabled else None
            setattr(self, f'{name}_head', module)
        self.task_names = run_order({name: getattr(self, f'{name}_head') for name in enabled},
                                    LEGACY_RUN_ORDER)
        self.plan = plan_tasks(self.tasks, tuple(getattr(self.backbone, 'out_indices', ())))
        if not self.plan.mask and isinstance(
                getattr(self.backbone, 'mask_token', None), nn.Parameter):
            # nothing is masked: freeze the mask token, so every trainable parameter gets a
            # gradient (DDP without an unused-parameter search, find_unused_parameters=False)
            self.backbone.mask_token.requires_grad_(False)
        for name in self.plan.shadows:
            if getattr(self, name, None) is None:
                users = [t for t, n in self.plan.needs.items() if name in n.shadows]
                raise ValueError(f'tasks {users} need {name} (its task enabled) for the '
                                 'EMA teacher to copy')
        self.teacher = None
        if self.plan.teacher:
            teacher_args = dict(momentum=0.995)
            teacher_args.update(teacher or {})
            self.teacher = MomentumTeacher(self._students(), **teacher_args)
        self.predict_task = predict_task
        self.predict_with_teacher = predict_with_teacher

    @property
    def tasks(self) -> Dict[str, PretrainTask]:
        """The enabled tasks, ``{name: module}``, in the order they run."""
        return {name: getattr(self, f'{name}_head')
                for name in self.task_names}

    def _students(self) -> dict:
        """The modules the EMA teacher shadows: the backbone, those the tasks
        name (``shadows``: the decoder for distillation), each
        :class:`TeacherShadowed` task's own (montage)."""
        students = dict(backbone=self.backbone)
        students.update({name: getattr(self, name) for name in self.plan.shadows})
        for task in self.tasks.values():
            if isinstance(task, TeacherShadowed):
                students.update(task.shadowed_modules())
        return students

    @torch.no_grad()
    def after_train_step(self, before_training: bool = False) -> None:
        """The state updates that follow an optimizer step (outside forward).

        * every task's own ``after_train_step`` (SwAV: the step's embeddings
          into the queue, the iteration counter, prototypes L2-normalised in
          place; official SwAV normalises at the start of every iteration:
          the same sequence);
        * eq. (5)-(6) teacher: one EMA step ``t = m t + (1 - m) s`` from the
          student's backbone and decoder (the first call copies them).

        Needs full parameters: ``TeacherAndPrototypesHook`` calls it inside
        ``FSDP.summon_full_params`` under FSDP.

        Args:
            before_training (bool): The call before the first step: only
                what is still untouched is set up (teacher copied, prototypes
                normalised); after a resume or a load both are already
                right, and a re-normalisation would change the prototypes
                by rounding (a resumed run must equal an uninterrupted one).
        """
        for task in self.tasks.values():
            if isinstance(task, AfterTrainStep):
                task.after_train_step(before_training=before_training)
        if self.teacher is not None and not (before_training
                                             and self.teacher.initialized):
            self.teacher.update(self._students())

    def forward(self,
                inputs: Union[torch.Tensor, List[torch.Tensor]],
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        """``'tensor'``, ``'loss'`` or ``'predict'`` (multi-label scores)."""
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)

    def extract_feat(self, inputs: Union[torch.Tensor, List[torch.Tensor]]):
        """Unmasked backbone features (of the first view for a list)."""
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.backbone(inputs)

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """Weighted losses of eq. (7) plus unweighted values and diagnostics.

        Args:
            inputs (list[torch.Tensor]): Two normalised views ``[B, 3, S, S]``.
            data_samples (list[DataSample]): With ``gt_score`` ``[C]`` (soft
                multi-label targets) and ``mask`` ``[S/p, S/p]`` for view 0.

        Returns:
            dict[str, torch.Tensor]: ``loss_{task}`` (weighted) and non-loss
            logs: ``{task}_unweighted``, each task's logs as ``{task}_{key}``
            (``mlc_top1_hit``, ``mlc_map_proxy``, ``swav_cluster_usage``,
            ``swav_prototypes_frozen``, ``swav_queue_used``,
            ``montage_level_{i}``) and ``teacher_momentum``.
        """
        step = self._step(inputs, data_samples)
        raw, logs = {}, {}
        for name, task in self.tasks.items():
            raw[name], task_logs = task.task_loss(step)
            logs.update({f'{name}_{k}': v for k, v in task_logs.items()})
        if self.teacher is not None:
            logs['teacher_momentum'] = step.feats.new_full(
                (), self.teacher.momentum, dtype=torch.float32)
        losses = {f'loss_{task}': self.loss_weights[task] * value
                  for task, value in raw.items()}
        losses.update({f'{task}_unweighted': value.detach()
                       for task, value in raw.items()})
        losses.update(logs)
        return losses

    def _step(self, inputs: List[torch.Tensor],
              data_samples: List[DataSample]) -> TaskStep:
        """One student backbone pass (and the teacher's) for every task."""
        if not isinstance(inputs, Sequence) or len(inputs) != 2:
            raise ValueError('HVPMTL.loss expects a list of 2 views, got '
                             f'{type(inputs).__name__} of '
                             f'{len(inputs) if isinstance(inputs, Sequence) else "?"}')
        if self.teacher is not None and not self.teacher.initialized:
            raise RuntimeError(
                'the EMA teacher was never initialised from the student: '
                "keep default_hooks.teacher_and_prototypes=dict(type="
                "'TeacherAndPrototypesHook') in the config (every "
                'configs/pretrain config has it), or, outside a Runner, call '
                'model.after_train_step() before the first step and after '
                'every optimizer step')
        step = TaskStep(view0=inputs[0], view1=inputs[1],
                        data_samples=data_samples, teacher=self.teacher,
                        students=self._students())
        rows = [step.view0, step.view1] + [
            task.extend_batch(step) for task in self.tasks.values()
            if isinstance(task, BatchExtender)]
        images = torch.cat(rows)
        mask = None
        if self.plan.mask:
            step.mask = step.stack('mask',
                                   'MultiViewWithMask with a mask_generator')
            mask = torch.cat([step.mask, step.mask.new_zeros(
                (images.shape[0] - step.batch, *step.mask.shape[1:]))])
        step.stages = self.backbone(images, mask)
        step.feats = step.stages[-1][:2 * step.batch]
        if self.teacher is not None:
            views = self.plan.teacher_views
            with torch.no_grad():
                stages = self.teacher.backbone(torch.cat([inputs[v] for v in views])
                                               if len(views) > 1 else inputs[views[0]])
            for i, view in enumerate(views):
                step.teacher_views[view] = stages if len(views) == 1 else [
                    s[i * step.batch:(i + 1) * step.batch] for s in stages]
            step.teacher_stages = step.teacher_views.get(1)
        return step

    @torch.no_grad()
    def predict(self,
                inputs: Union[torch.Tensor, List[torch.Tensor]],
                data_samples: Optional[List[DataSample]] = None,
                use_teacher: Optional[bool] = None) -> List[DataSample]:
        """Multi-label scores ``sigmoid(logits)`` of unmasked images.

        Args:
            inputs (Tensor | list[Tensor]): ``[B, 3, S, S]``; for a list of
                views the last (unmasked) view is scored.
            data_samples (list[DataSample], optional): Filled in place.
            use_teacher (bool, optional): Score with the EMA teacher;
                defaults to ``predict_with_teacher``.

        Returns:
            list[DataSample]: With ``pred_score`` ``[C]`` (float32).
        """
        head = f'{self.predict_task}_head'
        if getattr(self, head, None) is None:
            raise RuntimeError(f'predict needs the {self.predict_task!r} task '
                               f'(loss_weights.{self.predict_task} > 0)')
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[-1]
        if use_teacher is None:
            use_teacher = self.predict_with_teacher
        if use_teacher and head not in getattr(self.teacher, 'names', ()):
            raise RuntimeError(f'use_teacher=True but the teacher keeps no {head} (no '
                               f'enabled task shadows it, e.g. loss_weights.distill == 0)')
        if use_teacher and not self.teacher.initialized:
            raise RuntimeError('use_teacher=True but the EMA teacher holds no '
                               'weights yet: load a pre-training checkpoint '
                               'or train first')
        modules = self.teacher if use_teacher else self
        logits, _ = getattr(modules, head)(modules.backbone(inputs))
        scores = logits.float().sigmoid()
        if data_samples is None:
            data_samples = [DataSample() for _ in range(scores.shape[0])]
        for sample, score in zip(data_samples, scores):
            sample.set_pred_score(score)
        return data_samples
