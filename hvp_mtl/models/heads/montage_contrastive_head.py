"""HVP-MTL's fifth task: MCL's montage multi-level contrast on the clean view.

MCL (arXiv 2304.02010) as a task head of :class:`~hvp_mtl.models.algorithms.HVPMTL`,
built from MCL's own parts (``montage_pyramid``, ``MCLCellHead``,
``MCLPredictors``, ``MultiLevelContrastiveLoss``) with **one branch**: the
montage levels are cut from HVP-MTL's clean view 1 (level 0 is view 1 itself),
and the targets are the EMA teacher's P5 embeddings of view 1 (docs/MCL.md,
"HVP-MTL's fifth task").
"""
from typing import Dict, List, Sequence, Tuple

import torch
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..builder import build_module
from ..protocols import TaskStep
from ..utils import (
    batch_statistics,
    check_levels,
    level_batch_sizes,
    level_embeddings,
    montage_pyramid,
)

__all__ = ['MontageContrastiveHead']


@MODELS.register_module()
class MontageContrastiveHead(BaseModule):
    """Light FPN over the backbone's four stages, MCL's cell head and loss.

    One step (``B`` clean images, levels ``r_i`` with ``n_i`` montages)::

        view1 -> build_images -> [view1 ; montages]  [B + sum_{i>0} n_i, 3, S, S]
            (appended to the student's backbone batch, never masked)
        student stages of those rows -> neck -> level i on P_{5-i}
            -> cell head -> predictor i                    (predict)
        teacher stages of view1 -> teacher neck -> teacher cell head on P5
            (no grad, batch statistics) -> targets [B, D]  (targets)
        sum_i MultiLevelContrastiveLoss(predictions, targets, labels)

    The neck and the cell head are shadowed by the EMA teacher (HVPMTL adds
    them to its ``MomentumTeacher`` as ``montage_neck`` /
    ``montage_cell_head``); the predictors are the student's only.

    Args:
        neck (dict): FPN with four outputs (e.g. ``mmdet.FPN``).
        cell_head (dict): :class:`MCLCellHead` config.
        predictors (dict): :class:`MCLPredictors` config.
        loss (dict): :class:`MultiLevelContrastiveLoss` config.
        ratios (Sequence[int]): Montage ratios, first 1.
        batch_divisors (Sequence[int]): ``n_i = ceil(B / d_i)``, first 1.
        head_pass (str): ``'joint'`` or ``'per_level'`` (as ``MCL``).
        init_cfg (dict, optional): Initialisation config.
    """

    #: the task contract's needs (``TaskNeeds``): all four stages, the EMA teacher on view 1
    #: (its neck and cell head: :meth:`shadowed_modules`)
    needs_stages = (0, 1, 2, 3)
    needs_teacher = True

    def __init__(self, neck: dict, cell_head: dict, predictors: dict,
                 loss: dict = dict(type='MultiLevelContrastiveLoss'),
                 ratios: Sequence[int] = (1, 2, 4, 8),
                 batch_divisors: Sequence[int] = (1, 4, 16, 32),
                 head_pass: str = 'joint', init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        check_levels(ratios, batch_divisors, head_pass)
        self.neck = build_module(neck)
        self.cell_head = build_module(cell_head)
        self.predictors = build_module(predictors)
        self.loss_module = build_module(loss)
        self.ratios = tuple(int(r) for r in ratios)
        self.batch_divisors = tuple(int(d) for d in batch_divisors)
        self.head_pass = head_pass

    def build_images(self, view: torch.Tensor
                     ) -> Tuple[torch.Tensor, List[torch.Tensor], List[int]]:
        """The montage pyramid of one view ``[B, 3, S, S]``.

        Returns:
            tuple: images ``[B + sum_{i>0} n_i, 3, S, S]`` (the first ``B``
            rows are ``view`` itself), tile labels per level, counts ``n_i``.
        """
        counts = level_batch_sizes(view.shape[0], self.batch_divisors)
        return montage_pyramid([view] * len(self.ratios), self.ratios, counts)

    def extend_batch(self, step: TaskStep) -> torch.Tensor:
        """The montages (levels ``i > 0``) for the student's backbone pass;
        level 0 is view 1, already in it."""
        pyramid, labels, counts = self.build_images(step.view1)
        step.shared['montage'] = (labels, counts)
        return pyramid[step.batch:]

    def task_loss(self, step: TaskStep
                  ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The task contract: :meth:`loss` of the rows from view 1 on;
        logs ``level_{i}``."""
        labels, counts = step.shared['montage']
        return self.loss([s[step.batch:] for s in step.stages], counts,
                         labels, step.teacher, step.teacher_stages)

    def predict(self, stages: Sequence[torch.Tensor],
                counts: List[int]) -> List[torch.Tensor]:
        """Student predictions per level from the stages of the pyramid rows."""
        return level_embeddings(self.neck(tuple(stages)), counts,
                                self.cell_head, self.predictors,
                                self.head_pass)

    @staticmethod
    @torch.no_grad()
    def targets(neck: torch.nn.Module, cell_head: torch.nn.Module,
                stages: Sequence[torch.Tensor]) -> torch.Tensor:
        """Teacher embeddings ``[B, D]`` of full images (P5), batch statistics
        in the teacher's norms (as MCL's momentum encoder)."""
        with batch_statistics(neck), batch_statistics(cell_head):
            return cell_head([neck(tuple(stages))[-1]])[0]

    def shadowed_modules(self) -> Dict[str, torch.nn.Module]:
        """The modules the EMA teacher copies, under the teacher's names."""
        return dict(montage_neck=self.neck, montage_cell_head=self.cell_head)

    def loss(self, stages: Sequence[torch.Tensor], counts: List[int],
             labels: List[torch.Tensor], teacher: torch.nn.Module,
             teacher_stages: Sequence[torch.Tensor]
             ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The montage loss of one step.

        Args:
            stages (Sequence[Tensor]): The student's four stages of the
                :meth:`build_images` rows.
            counts (list[int]): ``n_i``; labels (list[Tensor]): tile labels.
            teacher (MomentumTeacher): With ``montage_neck`` and
                ``montage_cell_head`` (:meth:`shadowed_modules`).
            teacher_stages (Sequence[Tensor]): The teacher's four stages of
                the full clean images ``[B, ...]``.

        Returns:
            tuple: the sum over levels (weighted by the loss's level weights)
            and the per-level values ``level_{i}`` (detached).
        """
        predictions = self.predict(stages, counts)
        targets = self.targets(teacher.montage_neck, teacher.montage_cell_head,
                               teacher_stages)
        per_level = self.loss_module(predictions, targets, labels)
        return sum(per_level.values()), {
            key: value.detach() for key, value in per_level.items()}
