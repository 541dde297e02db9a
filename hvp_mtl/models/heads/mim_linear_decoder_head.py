"""SimMIM linear decoder head for masked image modelling, eq. (4)."""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..builder import build_module
from ..protocols import TaskStep

__all__ = ['MIMLinearDecoderHead']


@MODELS.register_module()
class MIMLinearDecoderHead(BaseModule):
    """MIM decoder of HVP-MTL (arXiv 2310.07510, §3.2), as SimMIM.

    A 1x1 convolution to ``stride**2 * 3`` channels followed by
    ``PixelShuffle(stride)`` maps the last-stage features ``[B, C, H/s,
    W/s]`` back to an image ``[B, 3, H, W]`` (``stride`` = 32 for Swin, 16
    for ViT). :meth:`loss` compares it with the normalised input on the
    masked pixels only (``MaskedReconstructionLoss``, eq. 4); the
    patch-level mask is up-sampled to pixels here.

    Args:
        in_channels (int): Feature width.
        encoder_stride (int): Total stride of the features.
        out_channels (int): Image channels. Defaults to 3.
        loss (dict): Reconstruction loss config.
        init_cfg (dict, optional): Initialisation config.
    """

    #: the task contract's needs (``TaskNeeds``): view 0 masked in the student's pass
    needs_mask = True

    def __init__(self,
                 in_channels: int,
                 encoder_stride: int,
                 out_channels: int = 3,
                 loss: dict = dict(type='MaskedReconstructionLoss'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.encoder_stride = encoder_stride
        self.decoder = nn.Sequential(
            nn.Conv2d(in_channels, encoder_stride**2 * out_channels, 1),
            nn.PixelShuffle(encoder_stride))
        self.loss_module = build_module(loss)

    def forward(
        self, feats: Union[torch.Tensor, Sequence[torch.Tensor]]
    ) -> torch.Tensor:
        """Reconstruction ``[B, 3, H, W]`` of features ``[B, C, H/s, W/s]``
        (or the backbone's tuple; its last entry is used)."""
        if not isinstance(feats, torch.Tensor):
            feats = feats[-1]
        return self.decoder(feats)

    def loss(self, feats: Union[torch.Tensor, Sequence[torch.Tensor]],
             target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Eq. (4) on the masked pixels.

        Args:
            feats (Tensor | Sequence[Tensor]): Masked-pass features.
            target (torch.Tensor): Normalised input ``[B, 3, H, W]``.
            mask (torch.Tensor): Patch mask ``[B, H/p, W/p]``, 1 = masked.

        Returns:
            torch.Tensor: Scalar loss.
        """
        pred = self.forward(feats)
        height, width = target.shape[-2:]
        if height % mask.shape[-2] or width % mask.shape[-1]:
            raise ValueError(f'mask {tuple(mask.shape[-2:])} does not tile '
                             f'the image {(height, width)}')
        pixel_mask = mask.repeat_interleave(
            height // mask.shape[-2], 1).repeat_interleave(
                width // mask.shape[-1], 2)
        return self.loss_module(pred, target, pixel_mask)

    def task_loss(self, step: TaskStep
                  ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The task contract: eq. (4) on view 0's rows, no logs."""
        return self.loss(step.feats[:step.batch], step.view0, step.mask), {}
