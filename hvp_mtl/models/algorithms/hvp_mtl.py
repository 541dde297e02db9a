"""HVP-MTL: pre-training tasks on one backbone, a weighted sum, eq. (7)."""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..builder import build_module
from ..protocols import AfterTrainStep, BatchExtender, PretrainTask, TaskStep, TeacherShadowed
from .loss_weights import parse_loss_weights
from .momentum_teacher import MomentumTeacher

__all__ = ['HVPMTL']

#: the built-in tasks in the order they run (distillation reads the
#: multi-label decoder's tokens); ``extra_tasks`` run after them
TASKS = ('mim', 'swav', 'mlc', 'distill', 'montage')


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
    docs/MCL.md). More tasks: ``extra_tasks`` (docs/ARCHITECTURE.md).

    Data flow of one step (``inputs`` = two augmented views, ``mask``
    applies to view 0)::

        [view0 (masked) ; view1 ; extra rows] --one student pass, batch 2B+-->
            F [2B, d0, h, w] (last stage of the two views)
            mim:     F[:B] -> MIM decoder -> L1 on masked pixels   (eq. 4)
            swav:    F -> view0 vs view1 swapped codes             (eq. 2-3)
            mlc:     F -> multi-label decoder, gt_score of both    (eq. 1)
                     views (``mlc_views='unmasked'``: F[B:] only);
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
        mlc_head (dict, optional): ``MultiLabelDecoderHead`` config.
        swav_head (dict, optional): ``SwAVClusteringHead`` config.
        mim_head (dict, optional): ``MIMLinearDecoderHead`` config.
        montage_head (dict, optional): ``MontageContrastiveHead`` config;
            needs ``backbone.out_indices=(0, 1, 2, 3)``.
        extra_tasks (dict, optional): ``{name: head config}`` of further
            tasks (any module with ``task_loss``), built as ``{name}_head``
            with weight ``loss_weights[name]`` (default 1.0).
        loss_weights (dict): Task weights, missing keys take the paper's.
        distill_loss (dict): Eq. (6) loss config
            (:class:`MomentumDistillationHead`'s ``loss``).
        teacher_momentum (float): EMA momentum. Defaults to 0.995.
        predict_with_teacher (bool): :meth:`predict` uses the teacher.
        mlc_views (str): Rows the multi-label decoder and eq. (1) see:
            ``'both'`` (the masked view 0 and the clean view 1) or
            ``'unmasked'`` (view 1 only: no targets for 60 %-masked
            images, half the decoder cost). Distillation always uses view 1.
        data_preprocessor (dict, optional): Defaults to
            ``SelfSupDataPreprocessor``.
        pretrained (str, optional): Checkpoint for the whole model.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 backbone: dict,
                 mlc_head: Optional[dict] = None,
                 swav_head: Optional[dict] = None,
                 mim_head: Optional[dict] = None,
                 montage_head: Optional[dict] = None,
                 extra_tasks: Optional[Dict[str, dict]] = None,
                 loss_weights: Optional[dict] = None,
                 distill_loss: dict = dict(
                     type='SymmetricKLDistillationLoss', temperature=1.0),
                 teacher_momentum: float = 0.995,
                 predict_with_teacher: bool = False,
                 mlc_views: str = 'both',
                 data_preprocessor: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None) -> None:
        extra_tasks = dict(extra_tasks or {})
        weights = parse_loss_weights(loss_weights, extra=tuple(extra_tasks))
        if mlc_views not in ('both', 'unmasked') or mlc_head and (
                mlc_head.get('views', mlc_views) != mlc_views):
            raise ValueError("mlc_views must be 'both' or 'unmasked' (and "
                             f'mlc_head.views, if set, the same), got '
                             f'{mlc_views!r}')
        super().__init__(
            backbone=backbone,
            data_preprocessor=data_preprocessor,
            pretrained=pretrained,
            init_cfg=init_cfg)
        self.loss_weights = weights
        self.mlc_views = mlc_views
        heads = dict(mlc=mlc_head and dict(mlc_head, views=mlc_views),
                     swav=swav_head, mim=mim_head,
                     distill=dict(type='MomentumDistillationHead',
                                  loss=distill_loss),
                     montage=montage_head, **extra_tasks)
        self.task_names = tuple(
            name for name in TASKS + tuple(extra_tasks) if weights[name] > 0)
        for task, cfg in heads.items():
            module = None
            if weights[task] > 0:
                if cfg is None:
                    raise ValueError(f'loss_weights.{task} > 0 needs '
                                     f'{task}_head')
                module = build_module(cfg)
            setattr(self, f'{task}_head', module)
        if self.mim_head is None and isinstance(
                getattr(self.backbone, 'mask_token', None), nn.Parameter):
            # nothing is masked without MIM: freeze the mask token, so every
            # trainable parameter gets a gradient (DDP without an unused-
            # parameter search, find_unused_parameters=False)
            self.backbone.mask_token.requires_grad_(False)
        if self.montage_head is not None and tuple(getattr(
                self.backbone, 'out_indices', ())) != (0, 1, 2, 3):
            raise ValueError('loss_weights.montage > 0 needs all four stages: '
                             'set backbone.out_indices=(0, 1, 2, 3) (a Swin)')
        self.teacher = None
        if self.distill_head is not None or any(
                isinstance(t, TeacherShadowed) for t in self.tasks.values()):
            self.teacher = MomentumTeacher(self._students(),
                                           momentum=teacher_momentum)
        self.predict_with_teacher = predict_with_teacher

    @property
    def tasks(self) -> Dict[str, PretrainTask]:
        """The enabled tasks, ``{name: module}``, in the order they run."""
        return {name: getattr(self, f'{name}_head')
                for name in self.task_names}

    def _students(self) -> dict:
        """The modules the EMA teacher shadows: the backbone, the decoder
        for distillation, each :class:`TeacherShadowed` task's (montage)."""
        students = dict(backbone=self.backbone)
        if self.distill_head is not None:
            students['mlc_head'] = self.mlc_head
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
        if self.mim_head is not None:
            step.mask = step.stack('mask',
                                   'MultiViewWithMask with a mask_generator')
            mask = torch.cat([step.mask, step.mask.new_zeros(
                (images.shape[0] - step.batch, *step.mask.shape[1:]))])
        step.stages = self.backbone(images, mask)
        step.feats = step.stages[-1][:2 * step.batch]
        if self.teacher is not None:
            with torch.no_grad():
                step.teacher_stages = self.teacher.backbone(step.view1)
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
        if self.mlc_head is None:
            raise RuntimeError('predict needs the multi-label decoder '
                               '(loss_weights.mlc > 0)')
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[-1]
        if use_teacher is None:
            use_teacher = self.predict_with_teacher
        if use_teacher and 'mlc_head' not in getattr(self.teacher, 'names',
                                                     ()):
            raise RuntimeError('use_teacher=True but no teacher decoder is '
                               'built (loss_weights.distill == 0)')
        if use_teacher and not self.teacher.initialized:
            raise RuntimeError('use_teacher=True but the EMA teacher holds no '
                               'weights yet: load a pre-training checkpoint '
                               'or train first')
        modules = self.teacher if use_teacher else self
        logits, _ = modules.mlc_head(modules.backbone(inputs))
        scores = logits.float().sigmoid()
        if data_samples is None:
            data_samples = [DataSample() for _ in range(scores.shape[0])]
        for sample, score in zip(data_samples, scores):
            sample.set_pred_score(score)
        return data_samples
