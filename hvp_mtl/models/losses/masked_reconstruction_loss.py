"""SimMIM masked reconstruction loss, eq. (4)."""
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS


@MODELS.register_module()
class MaskedReconstructionLoss(nn.Module):
    """Masked image modelling loss of HVP-MTL, eq. (4) of arXiv 2310.07510.

    ``L_mim = ||y - x||_1 / Omega(x)`` restricted to masked pixels, as in
    SimMIM: the L1 error summed over masked pixels and channels, divided by
    (number of masked pixels x channels), i.e. the mean absolute error per
    masked pixel per channel. The target ``x`` is the normalised input image
    itself (no per-patch normalisation).

    This equals mmpretrain's ``SimMIMHead`` + ``PixelReconstructionLoss(
    criterion='L1', channel=3)`` whenever at least one pixel is masked. The
    denominator is clamped at 1 (instead of SimMIM's ``+ 1e-5``), so a batch
    without masked pixels gives 0 (with a graph) rather than NaN.

    Computed in fp32 with autocast disabled.
    """

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """Mean L1 error over masked pixels and channels.

        Args:
            pred (torch.Tensor): Reconstruction ``[B, C, H, W]``.
            target (torch.Tensor): Normalised input image ``[B, C, H, W]``.
            mask (torch.Tensor): 1 for masked pixels, 0 elsewhere, at pixel
                resolution: ``[B, H, W]`` (or ``[B, 1, H, W]``).

        Returns:
            torch.Tensor: Scalar loss.
        """
        if pred.dim() != 4 or pred.shape != target.shape:
            raise ValueError('pred and target must have the same shape '
                             f'[B, C, H, W], got {tuple(pred.shape)} and '
                             f'{tuple(target.shape)}')
        if mask.dim() == 4 and mask.size(1) == 1:
            mask = mask[:, 0]
        batch, channels, height, width = pred.shape
        if tuple(mask.shape) != (batch, height, width):
            raise ValueError(
                f'mask must have shape [B, H, W] = {(batch, height, width)} '
                f'(pixel resolution), got {tuple(mask.shape)}; up-sample a '
                'patch-level mask with repeat_interleave first')
        with torch.autocast(device_type=pred.device.type, enabled=False):
            dtype = torch.promote_types(pred.dtype, torch.float32)
            mask = mask.to(dtype).unsqueeze(1)
            error = (pred.to(dtype) - target.to(dtype)).abs()
            num_masked = mask.sum().clamp(min=1)
            return (error * mask).sum() / num_masked / channels
