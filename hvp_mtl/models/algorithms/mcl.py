"""MCL: montage multi-level contrastive pre-training (arXiv 2304.02010)."""
from math import cos, pi
from typing import Dict, List, Sequence

import torch
from mmengine.logging import MessageHub
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS

from ..builder import build_module
from ..utils import (
    batch_statistics,
    check_levels,
    level_batch_sizes,
    level_embeddings,
    montage_pyramid,
)
from .momentum_teacher import MomentumTeacher

__all__ = ['MCL', 'cosine_momentum']


def cosine_momentum(base: float, end: float, iteration: int,
                    max_iters: int) -> float:
    """EMA momentum ``end - (end - base) * (cos(pi k / K) + 1) / 2`` (BYOL)."""
    return end - (end - base) * (cos(pi * iteration / max_iters) + 1) / 2


@MODELS.register_module()
class MCL(BaseSelfSupervisor):
    """Multi-Level Contrastive Learning (Guo et al., arXiv 2304.02010).

    One step, with ``L`` levels of ratios ``r_i`` and ``2L`` views of a batch
    of ``B`` images (views ``0..L-1``: query branch, ``L..2L-1``: key)::

        branch views -> montage_pyramid (level i: n_i montages of r_i x r_i
            tiles downsampled by r_i)  -> [sum n_i, 3, S, S]
        student: backbone -> FPN (P2..P5) -> level i on P_{5-i} -> cell head
            (one embedding per tile) -> predictor i -> [n_i r_i^2, D]
        teacher (EMA, no grad, batch statistics): the same images ->
            cell head on P5 of the level-0 (full) images -> targets [B, D]
        loss: MultiLevelContrastiveLoss(query predictions, key targets)
              + (key predictions, query targets)

    The EMA step happens after each optimizer step
    (``TeacherAndPrototypesHook``) with a cosine momentum schedule
    ``base_momentum -> end_momentum`` over the run's iterations.

    Args:
        backbone (dict): Backbone with four outputs (strides 4..32).
        neck (dict): FPN with four outputs (e.g. ``mmdet.FPN``, BN).
        cell_head (dict): :class:`MCLCellHead` config.
        predictors (dict): :class:`MCLPredictors` config.
        loss (dict): :class:`MultiLevelContrastiveLoss` config.
        ratios (Sequence[int]): Montage ratios ``r_i``, first 1.
        batch_divisors (Sequence[int]): ``n_i = ceil(B / d_i)``, first 1.
        base_momentum (float): EMA momentum at iteration 0 (0.99).
        end_momentum (float): EMA momentum at the last iteration (1.0).
        head_pass (str): ``'joint'``: the cells of all levels of a branch
            through the cell head in one pass (its BN statistics over all
            tiles); ``'per_level'``: one pass per level (statistics per
            pyramid level over that level's images; the official head runs
            every level over all images of the branch, docs/MCL.md).
            Defaults to ``'joint'``.
        data_preprocessor (dict, optional): ``SelfSupDataPreprocessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 cell_head: dict,
                 predictors: dict,
                 loss: dict = dict(type='MultiLevelContrastiveLoss'),
                 ratios: Sequence[int] = (1, 2, 4, 8),
                 batch_divisors: Sequence[int] = (1, 4, 16, 32),
                 base_momentum: float = 0.99,
                 end_momentum: float = 1.0,
                 head_pass: str = 'joint',
                 data_preprocessor=None,
                 init_cfg=None) -> None:
        check_levels(ratios, batch_divisors, head_pass)
        if not 0. <= base_momentum <= end_momentum <= 1.:
            raise ValueError('need 0 <= base_momentum <= end_momentum <= 1, '
                             f'got {base_momentum}, {end_momentum}')
        super().__init__(backbone=backbone, neck=neck,
                         data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.cell_head = build_module(cell_head)
        self.predictors = build_module(predictors)
        self.loss_module = build_module(loss)
        self.ratios = tuple(int(r) for r in ratios)
        self.batch_divisors = tuple(int(d) for d in batch_divisors)
        self.base_momentum = float(base_momentum)
        self.end_momentum = float(end_momentum)
        self.head_pass = head_pass
        self.teacher = MomentumTeacher(self._students(),
                                       momentum=min(base_momentum, 0.999999))

    def _students(self) -> dict:
        return dict(backbone=self.backbone, neck=self.neck,
                    cell_head=self.cell_head)

    def current_momentum(self) -> float:
        """The schedule's momentum at the Runner's iteration (base outside)."""
        hub = MessageHub.get_current_instance()
        iteration, max_iters = hub.get_info('iter'), hub.get_info('max_iters')
        if iteration is None or not max_iters:
            return self.base_momentum
        return cosine_momentum(self.base_momentum, self.end_momentum,
                               iteration, max_iters)

    @torch.no_grad()
    def after_train_step(self, before_training: bool = False) -> None:
        """EMA step after an optimizer step (the first call copies)."""
        if before_training and self.teacher.initialized:
            return
        self.teacher.momentum = self.current_momentum()
        self.teacher.update(self._students())

    def extract_feat(self, inputs):
        """FPN maps of the (first) view."""
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.neck(self.backbone(inputs))

    def _predict(self, images: torch.Tensor,
                 counts: List[int]) -> List[torch.Tensor]:
        """Student predictions per level: level i's images on P_{5-i}."""
        return level_embeddings(self.neck(self.backbone(images)), counts,
                                self.cell_head, self.predictors,
                                self.head_pass)

    @torch.no_grad()
    def _targets(self, images: torch.Tensor, batch: int) -> torch.Tensor:
        """Teacher embeddings of the full images (P5 of the first ``batch``)."""
        teacher = self.teacher
        with batch_statistics(teacher):
            maps = teacher.neck(teacher.backbone(images))
            return teacher.cell_head([maps[-1][:batch]])[0]

    def loss(self, inputs: List[torch.Tensor], data_samples=None,
             **kwargs) -> Dict[str, torch.Tensor]:
        """Both branches' multi-level losses.

        Args:
            inputs (list[Tensor]): ``2L`` views ``[B, 3, S, S]``.

        Returns:
            dict[str, Tensor]: ``loss_{q,k}_level_{i}`` and
            ``teacher_momentum``.
        """
        levels = len(self.ratios)
        if not isinstance(inputs, Sequence) or len(inputs) != 2 * levels:
            got = len(inputs) if isinstance(inputs, Sequence) else type(inputs).__name__
            raise ValueError(f'MCL.loss expects {2 * levels} views (2 x '
                             f'{levels} levels), got {got}')
        if not self.teacher.initialized:
            raise RuntimeError(
                "the momentum encoder was never initialised: keep default_hooks."
                "teacher_and_prototypes=dict(type='TeacherAndPrototypesHook') "
                'or call model.after_train_step() before the '
                'first step and after every optimizer step')
        batch = inputs[0].shape[0]
        counts = level_batch_sizes(batch, self.batch_divisors)
        branches = {}
        for name, views in (('q', inputs[:levels]), ('k', inputs[levels:])):
            images, labels, _ = montage_pyramid(views, self.ratios, counts)
            branches[name] = (self._predict(images, counts),
                              self._targets(images, batch), labels)
        losses = {}
        for name, other in (('q', 'k'), ('k', 'q')):
            predictions, _, labels = branches[name]
            per_level = self.loss_module(predictions, branches[other][1],
                                         labels)
            losses.update({f'loss_{name}_{key}': value
                           for key, value in per_level.items()})
        # the momentum of the EMA step that follows this iteration
        losses['teacher_momentum'] = inputs[0].new_full(
            (), self.current_momentum(), dtype=torch.float32)
        return losses
