"""Momentum distillation as a task of its own, eq. (5)-(6)."""
from typing import Dict, Tuple

import torch
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..builder import build_module
from ..protocols import TaskStep

__all__ = ['MomentumDistillationHead']


@MODELS.register_module()
class MomentumDistillationHead(BaseModule):
    """Eq. (6) between the student's and the EMA teacher's ``S(., Q0)``.

    The fourth task of HVP-MTL. It has no weights: it reads the multi-label
    decoder's output tokens of the clean view 1 (left in
    ``step.shared['mlc_tokens']`` ``[B, K|C, d]`` by
    ``MultiLabelDecoderHead.task_loss``, which therefore runs first), the
    student decoder ``step.students['mlc_head']`` and its EMA copy
    ``step.teacher.mlc_head``, and the teacher backbone's view-1 outputs
    ``step.teacher_stages``::

        S(h, Q0)   [B, C]  student tokens h vs label embeddings Q0   (eq. 5)
        S(h', Q0)  [B, C]  teacher tokens h' (no grad) vs Q0 detached
        loss = SymmetricKL(S(h, Q0) / T, S(h', Q0) / T)               (eq. 6)

    Both similarities use the student's ``Q0`` (eq. 5 writes one ``Q0`` for
    both sides; the teacher side is detached).

    Args:
        loss (dict): Eq. (6) loss config.
        init_cfg (dict, optional): Initialisation config.
    """

    #: the task contract's needs (``TaskNeeds``): the EMA teacher (on view 1) with a copy of
    #: the multi-label decoder, whose view-1 tokens an earlier task leaves in ``step.shared``
    needs_teacher = True
    shadows = ('mlc_head', )
    reads = ('mlc_tokens', )

    def __init__(self,
                 loss: dict = dict(type='SymmetricKLDistillationLoss',
                                   temperature=1.0),
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.loss_module = build_module(loss)

    def similarities(self, step: TaskStep
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Eq. (5) of both sides: student ``S(h, Q0)`` and teacher
        ``S(h', Q0)`` (no grad), each ``[B, C]`` fp32."""
        student = step.students['mlc_head']
        label_embeddings = student.class_embeddings()
        with torch.no_grad():
            teacher_tokens = step.teacher.mlc_head.decode(step.teacher_stages)
            teacher_sim = student.label_similarity(teacher_tokens,
                                                   label_embeddings.detach())
        student_sim = student.label_similarity(step.shared['mlc_tokens'],
                                               label_embeddings)
        return student_sim, teacher_sim

    def task_loss(self, step: TaskStep
                  ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Eq. (6) of one step; no logs."""
        return self.loss_module(*self.similarities(step)), {}
