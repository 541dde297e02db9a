"""Weighted asymmetric loss for multi-label classification, eq. (1).

HVP-MTL (arXiv 2310.07510, eq. 1) refines the asymmetric loss (ASL, Ridnik
et al., ICCV 2021) with a positive weight ``eta``:

.. math::

    L_+ = \\eta (1 - p)^{\\gamma_+} \\log(p), \\qquad
    L_- = p_m^{\\gamma_-} \\log(1 - p_m), \\qquad p_m = \\max(p - m, 0)

where ``p = sigmoid(logit)`` and ``m`` is ASL's probability margin
(``clip``). The paper's formula has no margin; ``clip=0`` gives it exactly.
"""
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS


def _focusing_weight(base: torch.Tensor, gamma: float) -> torch.Tensor:
    """``base ** gamma`` with a finite gradient where ``base == 0``.

    ``torch.pow`` differentiates ``0 ** gamma`` as ``gamma * 0 ** (gamma - 1)``,
    which is ``inf`` for ``0 < gamma < 1`` and turns into NaN once multiplied
    by the zero gradient of the margin clamp. Positions with ``base == 0`` get
    weight 0 (or 1 when ``gamma == 0``) and zero gradient instead.
    """
    if gamma == 0:
        return torch.ones_like(base)
    positive = base > 0
    safe_base = torch.where(positive, base, torch.ones_like(base))
    return torch.where(positive, safe_base.pow(gamma), torch.zeros_like(base))


@MODELS.register_module()
class WeightedAsymmetricLoss(nn.Module):
    """Weighted asymmetric loss of HVP-MTL, eq. (1) of arXiv 2310.07510.

    For logits ``x`` and soft targets ``t`` in ``[0, 1]`` the element-wise loss
    is

    .. code-block:: text

        p     = sigmoid(x)
        p_m   = max(p - clip, 0)                   # ASL probability margin
        pos   = eta * (1 - p) ** gamma_pos * log(max(p, eps))
        neg   = p_m ** gamma_neg * log(max(1 - p_m, eps))
        loss  = -(t * pos + (1 - t) * neg)

    summed over classes and averaged over the batch (``avg_factor``), then
    multiplied by ``loss_weight``. With binary targets, ``eta=1`` this is
    exactly ASL (Alibaba-MIIL/ASL ``AsymmetricLoss`` divided by the batch
    size) and mmpretrain's ``AsymmetricLoss(use_sigmoid=True,
    reduction='mean')`` called with ``avg_factor=batch_size``.

    Soft targets: the loss is linear in ``t`` -- the expectation of eq. (1)
    over a Bernoulli(t) label. ASL/mmpretrain instead mix the focusing
    exponent and ``pt`` with ``t``, which only coincides for ``t`` in {0, 1}.

    Numerics: computed in fp32 (fp64 inputs stay fp64) with autocast
    disabled. ``log(p)`` and ``log(1 - p)`` use ``logsigmoid``, and
    ``log(max(p, eps))`` is evaluated as ``max(log p, log eps)``, which is the
    same function as ASL's clamp but never forms ``log`` of a rounded-to-zero
    probability; ``1 - p`` is ``sigmoid(-x)``. Loss and gradients stay finite
    for logits of any magnitude (tested at +-50).

    Args:
        eta (float): Positive weight ``eta`` of eq. (1). Defaults to 10.
        gamma_pos (float): Focusing parameter of positives. Defaults to 4.
        gamma_neg (float): Focusing parameter of negatives. Defaults to 1.
        clip (float): ASL probability margin for negatives; 0 disables it
            (the paper's formula). Defaults to 0.05.
        eps (float): Lower bound on the probabilities inside ``log``, as in
            ASL. Defaults to 1e-8.
        loss_weight (float): Multiplier of the reduced loss. Defaults to 1.
        disable_torch_grad_focal_loss (bool): Treat the focusing weights as
            constants (no gradient through them), ASL's option of the same
            name. Unlike ASL it uses ``torch.no_grad()``, so it never
            re-enables autograd inside a caller's ``no_grad``. Defaults to
            False.
    """

    def __init__(self,
                 eta: float = 10.,
                 gamma_pos: float = 4.,
                 gamma_neg: float = 1.,
                 clip: float = 0.05,
                 eps: float = 1e-8,
                 loss_weight: float = 1.,
                 disable_torch_grad_focal_loss: bool = False) -> None:
        super().__init__()
        if eta < 0 or gamma_pos < 0 or gamma_neg < 0:
            raise ValueError('eta, gamma_pos and gamma_neg must be >= 0, got '
                             f'{eta}, {gamma_pos}, {gamma_neg}')
        if not 0 <= clip < 1:
            raise ValueError(f'clip must be in [0, 1), got {clip}')
        if not 0 < eps < 1:
            raise ValueError(f'eps must be in (0, 1), got {eps}')
        self.eta = float(eta)
        self.gamma_pos = float(gamma_pos)
        self.gamma_neg = float(gamma_neg)
        self.clip = float(clip)
        self.eps = float(eps)
        self.loss_weight = float(loss_weight)
        self.disable_torch_grad_focal_loss = disable_torch_grad_focal_loss

    def elementwise(self, logits: torch.Tensor,
                    targets: torch.Tensor) -> torch.Tensor:
        """Unreduced loss of eq. (1).

        Args:
            logits (torch.Tensor): Class logits, shape ``[B, C]``.
            targets (torch.Tensor): Soft targets in ``[0, 1]``, ``[B, C]``.

        Returns:
            torch.Tensor: Non-negative loss per element, ``[B, C]``, in fp32
            (fp64 for fp64 logits).
        """
        if logits.shape != targets.shape:
            raise ValueError('logits and targets must have the same shape, '
                             f'got {tuple(logits.shape)} and '
                             f'{tuple(targets.shape)}')
        dtype = torch.promote_types(logits.dtype, torch.float32)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            x = logits.to(dtype)
            t = targets.to(dtype)
            log_eps = math.log(self.eps)
            prob = torch.sigmoid(x)
            # log(max(p, eps)) == max(log p, log eps), computed stably.
            log_pos = F.logsigmoid(x).clamp(min=log_eps)
            if self.clip > 0:
                # 1 - p_m = min(1 - p + clip, 1) >= clip > 0: log is safe.
                log_neg = torch.log(
                    (torch.sigmoid(-x) +
                     self.clip).clamp(max=1)).clamp(min=log_eps)
                margin_prob = (prob - self.clip).clamp(min=0)
            else:
                log_neg = F.logsigmoid(-x).clamp(min=log_eps)
                margin_prob = prob

            if self.disable_torch_grad_focal_loss:
                with torch.no_grad():
                    w_pos = _focusing_weight(torch.sigmoid(-x), self.gamma_pos)
                    w_neg = _focusing_weight(margin_prob, self.gamma_neg)
            else:
                w_pos = _focusing_weight(torch.sigmoid(-x), self.gamma_pos)
                w_neg = _focusing_weight(margin_prob, self.gamma_neg)

            loss_pos = self.eta * w_pos * log_pos
            loss_neg = w_neg * log_neg
            return -(t * loss_pos + (1 - t) * loss_neg)

    def forward(self,
                logits: torch.Tensor,
                targets: torch.Tensor,
                avg_factor: Optional[float] = None) -> torch.Tensor:
        """Reduced loss: sum over classes, mean over the batch.

        Args:
            logits (torch.Tensor): Class logits, shape ``[B, C]``.
            targets (torch.Tensor): Soft targets in ``[0, 1]``, ``[B, C]``.
            avg_factor (float, optional): Divisor of the summed loss; defaults
                to the batch size ``B`` (mmpretrain's ``MultiLabelClsHead``
                passes exactly that).

        Returns:
            torch.Tensor: Scalar loss times ``loss_weight``.
        """
        if logits.dim() != 2:
            raise ValueError('logits must have shape [B, C], got '
                             f'{tuple(logits.shape)}')
        loss = self.elementwise(logits, targets)
        if avg_factor is None:
            avg_factor = logits.size(0)
        return self.loss_weight * loss.sum() / max(avg_factor, 1)

    def extra_repr(self) -> str:
        return (f'eta={self.eta}, gamma_pos={self.gamma_pos}, '
                f'gamma_neg={self.gamma_neg}, clip={self.clip}, '
                f'eps={self.eps}, loss_weight={self.loss_weight}')
