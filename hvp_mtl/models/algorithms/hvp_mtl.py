"""HVP-MTL: four pre-training objectives on one backbone, eq. (7)."""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from ..builder import build_module
from mmpretrain.structures import DataSample

from .loss_weights import parse_loss_weights
from .momentum_teacher import MomentumTeacher

__all__ = ['HVPMTL']



@MODELS.register_module()
class HVPMTL(BaseSelfSupervisor):
    """Heuristic Vision Pre-training with Multi-Task Learning (arXiv 2310.07510).

    Eq. (7): ``L = a1 L_mcls + a2 L_cl + a3 L_mim + a4 L_mom`` with
    ``loss_weights = dict(mlc=a1, swav=a2, mim=a3, distill=a4)`` (paper:
    0.001, 0.02, 1.0, 10.0). A task whose weight is 0 is not built and costs
    nothing (Table 5 ablations); distillation needs the multi-label decoder.
    A fifth task, ``montage`` (default 0), adds MCL's montage contrast
    (:class:`MontageContrastiveHead`; its montages join the backbone batch,
    it reads all four stages, the other tasks the last one; docs/MCL.md).

    Data flow of one step (``inputs`` = two augmented views, ``mask``
    applies to view 0)::

        [view0 (masked) ; view1] --one student backbone pass, batch 2B-->
            F [2B, d0, h, w] (last stage)
            F[:B] -> MIM decoder -> L1 on masked pixels of view0   (eq. 4)
            F     -> SwAV head: view0 vs view1 swapped codes       (eq. 2-3)
            F     -> multi-label decoder, gt_score of both views   (eq. 1)
                     (``mlc_views='unmasked'``: F[B:] only)
                     output tokens h of view1 -> S(h, Q0)           (eq. 5)
        view1 (clean) --EMA teacher (no_grad, eval)--> h' -> S(h', Q0)
        symmetric KL(S(h, Q0) / T, S(h', Q0) / T)                   (eq. 6)

    ``S`` compares each class's label embedding with the decoder token that
    scores it (``MultiLabelDecoderHead.similarity``); ``T`` is the
    ``distill_loss`` temperature (0.07, ALBEF's).

    The two views share one backbone call; rows of view 1 get an all-zero
    mask, which leaves them exactly unmasked. ``forward`` changes no weight:
    the EMA teacher step and the SwAV prototype normalisation happen in
    :meth:`update_teacher_and_prototypes`, after every optimizer step that
    was taken (``TeacherAndPrototypesHook``, in every pre-training config's
    ``default_hooks``), which also makes them work under FSDP. See
    docs/method.md.

    Args:
        backbone (dict): ``MaskedSwinTransformer`` / ``MaskedViT`` config
            (ViT with ``out_type='featmap'``).
        mlc_head (dict, optional): ``MultiLabelDecoderHead`` config.
        swav_head (dict, optional): ``SwAVClusteringHead`` config.
        mim_head (dict, optional): ``MIMLinearDecoderHead`` config.
        montage_head (dict, optional): ``MontageContrastiveHead`` config;
            needs ``backbone.out_indices=(0, 1, 2, 3)``.
        loss_weights (dict): Task weights, missing keys take the paper's.
        distill_loss (dict): Eq. (6) loss config.
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
                 loss_weights: Optional[dict] = None,
                 distill_loss: dict = dict(
                     type='SymmetricKLDistillationLoss', temperature=0.07),
                 teacher_momentum: float = 0.995,
                 predict_with_teacher: bool = False,
                 mlc_views: str = 'both',
                 data_preprocessor: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None) -> None:
        weights = parse_loss_weights(loss_weights)
        super().__init__(
            backbone=backbone,
            data_preprocessor=data_preprocessor,
            pretrained=pretrained,
            init_cfg=init_cfg)
        self.loss_weights = weights
        heads = dict(mlc=mlc_head, swav=swav_head, mim=mim_head,
                     montage=montage_head)
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
        self.teacher, self.distill_loss = None, None
        if weights['distill'] > 0 or self.montage_head is not None:
            self.teacher = MomentumTeacher(self._students(),
                                           momentum=teacher_momentum)
        if weights['distill'] > 0:
            self.distill_loss = build_module(distill_loss)
        self.predict_with_teacher = predict_with_teacher
        if mlc_views not in ('both', 'unmasked'):
            raise ValueError("mlc_views must be 'both' or 'unmasked', got "
                             f'{mlc_views!r}')
        self.mlc_views = mlc_views

    def _students(self) -> dict:
        """The modules the EMA teacher shadows (distillation, montage)."""
        students = dict(backbone=self.backbone)
        if self.loss_weights['distill'] > 0:
            students['mlc_head'] = self.mlc_head
        if self.montage_head is not None:
            students.update(self.montage_head.shadowed_modules())
        return students

    @torch.no_grad()
    def update_teacher_and_prototypes(self, before_training: bool = False
                                      ) -> None:
        """The state updates that follow an optimizer step (outside forward).

        * SwAV: prototypes L2-normalised in place (official SwAV does it at
          the start of every iteration: the same sequence);
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
        if self.swav_head is not None and not (
                before_training and self.swav_head.trained_steps > 0):
            self.swav_head.normalize_prototypes()
        if self.teacher is not None and not (before_training
                                             and self.teacher.initialized):
            self.teacher.update(self._students())

    @staticmethod
    def _stack(data_samples: List[DataSample], field: str,
               producer: str) -> torch.Tensor:
        """Stack one field of every data sample, or say what is missing."""
        missing = [i for i, s in enumerate(data_samples) if field not in s]
        if missing:
            raise KeyError(f'HVPMTL needs data_sample.{field} ({producer}); '
                           f'missing in samples {missing[:5]} of the batch')
        return torch.stack([s.get(field) for s in data_samples])

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
            dict[str, torch.Tensor]: ``loss_{mlc,swav,mim,distill,montage}``
            and non-loss logs: ``{task}_unweighted``, ``mlc_top1_hit``,
            ``mlc_map_proxy``, ``swav_cluster_usage``,
            ``swav_prototypes_frozen``, ``swav_queue_used``,
            ``teacher_momentum``.
        """
        if not isinstance(inputs, Sequence) or len(inputs) != 2:
            raise ValueError('HVPMTL.loss expects a list of 2 views, got '
                             f'{type(inputs).__name__} of '
                             f'{len(inputs) if isinstance(inputs, Sequence) else "?"}')
        view0, view1 = inputs
        batch = view0.shape[0]
        if self.teacher is not None and not self.teacher.initialized:
            raise RuntimeError(
                'the EMA teacher was never initialised from the student: '
                "keep default_hooks.teacher_and_prototypes=dict(type="
                "'TeacherAndPrototypesHook') in the config (every "
                'configs/pretrain config has it), or, outside a Runner, call '
                'model.update_teacher_and_prototypes() before the first step '
                'and after every optimizer step')

        images = torch.cat([view0, view1])
        if self.montage_head is not None:  # rows B..: view1, then montages
            pyramid, labels, counts = self.montage_head.build_images(view1)
            images = torch.cat([view0, pyramid])
        mask = None
        if self.mim_head is not None:
            mask0 = self._stack(data_samples, 'mask',
                                'MultiViewWithMask with a mask_generator')
            mask = torch.cat([mask0, mask0.new_zeros(
                (images.shape[0] - batch, *mask0.shape[1:]))])
        stages = self.backbone(images, mask)
        feats = stages[-1][:2 * batch]
        teacher_stages = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher_stages = self.teacher.backbone(view1)

        raw, logs = {}, {}
        if self.mim_head is not None:
            raw['mim'] = self.mim_head.loss(feats[:batch], view0, mask0)
        if self.swav_head is not None:
            raw['swav'], diagnostics = self.swav_head.loss(feats)
            logs.update({f'swav_{k}': v for k, v in diagnostics.items()})
        if self.mlc_head is not None:
            targets = self._stack(data_samples, 'gt_score',
                                  'soft targets of TencentMLImages').float()
            both = self.mlc_views == 'both'
            tokens = self.mlc_head.decode(feats if both else feats[batch:])
            logits = self.mlc_head.classify(tokens)
            raw['mlc'] = self.mlc_head.loss(
                logits, torch.cat([targets, targets]) if both else targets)
            if both:  # view-1 rows: diagnostics and distillation
                logits, tokens = logits[batch:], tokens[batch:]
            diagnostics = self.mlc_head.diagnostics(logits.detach(), targets)
            logs.update({f'mlc_{k}': v for k, v in diagnostics.items()})
        if self.distill_loss is not None:
            raw['distill'] = self._distill(tokens, teacher_stages)
        if self.montage_head is not None:
            raw['montage'], levels = self.montage_head.loss(
                [s[batch:] for s in stages], counts, labels, self.teacher,
                teacher_stages)
            logs.update({f'montage_{k}': v for k, v in levels.items()})
        if self.teacher is not None:
            logs['teacher_momentum'] = feats.new_full(
                (), self.teacher.momentum, dtype=torch.float32)

        losses = {f'loss_{task}': self.loss_weights[task] * value
                  for task, value in raw.items()}
        losses.update({f'{task}_unweighted': value.detach()
                       for task, value in raw.items()})
        losses.update(logs)
        return losses

    def _distill(self, student_tokens: torch.Tensor,
                 teacher_stages: Sequence[torch.Tensor]) -> torch.Tensor:
        """Eq. (6) between the student's and the teacher's ``S(., Q0)``.

        Args:
            student_tokens (torch.Tensor): Decoder tokens of the clean view,
                ``[B, K|C, d]``.
            teacher_stages (Sequence[torch.Tensor]): The teacher backbone's
                outputs for the unmasked view (no mask, no grad).

        Both similarities use the student's label embeddings ``Q0`` (eq. 5
        writes one ``Q0`` for both sides; the teacher side is detached).
        """
        label_embeddings = self.mlc_head.class_embeddings()
        with torch.no_grad():
            teacher_tokens = self.teacher.mlc_head.decode(teacher_stages)
            teacher_sim = self.mlc_head.label_similarity(
                teacher_tokens, label_embeddings.detach())
        student_sim = self.mlc_head.label_similarity(student_tokens,
                                                     label_embeddings)
        return self.distill_loss(student_sim, teacher_sim)

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
