"""Swin Transformer with a SimMIM mask token, correct for every output stage."""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models import SwinTransformer
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS

from .sdpa_window_msa import use_sdpa_window_attention

__all__ = ['MaskedSwinTransformer', 'blend_mask_token']


def blend_mask_token(tokens: torch.Tensor, mask: torch.Tensor,
                     mask_token: torch.Tensor,
                     hw_shape: Tuple[int, int]) -> torch.Tensor:
    """Replace the masked patch tokens by the mask token (SimMIM).

    Args:
        tokens (torch.Tensor): Patch tokens ``[B, H*W, C]``.
        mask (torch.Tensor): 1 = masked, 0 = visible, ``[B, H, W]`` at the
            patch-token resolution.
        mask_token (torch.Tensor): ``[1, 1, C]``.
        hw_shape (tuple): ``(H, W)`` of the patch grid.

    Returns:
        torch.Tensor: ``tokens * (1 - m) + mask_token * m``, ``[B, H*W, C]``.
        Rows whose mask is all zero are returned unchanged.
    """
    batch, length, _ = tokens.shape
    if mask.dim() != 3 or tuple(mask.shape) != (batch, *hw_shape):
        raise ValueError(
            f'mask must have shape [B, H, W] = {(batch, *hw_shape)} (the '
            f'patch-token grid of this input), got {tuple(mask.shape)}')
    weight = mask.reshape(batch, length, 1).to(tokens.dtype)
    return tokens * (1. - weight) + mask_token.to(tokens.dtype) * weight


@MODELS.register_module()
class MaskedSwinTransformer(SwinTransformer):
    """mmpretrain ``SwinTransformer`` plus a learnable SimMIM mask token.

    * ``forward(x)`` / ``forward(x, mask=None)`` is exactly the parent's
      forward (same weights -> same outputs, every ``out_indices``).
    * ``forward(x, mask)`` replaces masked patch tokens by ``mask_token``
      right after the patch embedding and otherwise runs the parent's stage
      loop unchanged: stage ``i`` is normalised by ``norm{i}`` on its
      pre-downsample output (as the parent does), so every stage of
      ``out_indices=(0, 1, 2, 3)`` is right. (mmpretrain's
      ``SimMIMSwinTransformer`` takes the post-downsample output and only
      works for ``out_indices=(3,)``.)
    * The state dict is the parent's plus ``mask_token``, so the backbone
      loads into ``mmpretrain.SwinTransformer`` (minus that key) downstream.
    * ``use_sdpa=True`` swaps the window attention for
      :class:`SDPAWindowMSA` (same parameters, fused attention).
    * Gradient checkpointing: the parent's ``with_cp``.

    Args:
        stage_cfgs (dict | Sequence[dict]): As the parent's.
        use_sdpa (bool): Use ``F.scaled_dot_product_attention`` in the window
            attention. Defaults to True.
        **kwargs: Every other ``SwinTransformer`` argument (``arch``,
            ``img_size``, ``out_indices``, ``with_cp``, ...).
    """

    def __init__(self,
                 stage_cfgs: Union[dict, Sequence[dict]] = dict(),
                 use_sdpa: bool = True,
                 **kwargs) -> None:
        if use_sdpa:
            stage_cfgs = use_sdpa_window_attention(stage_cfgs)
        super().__init__(stage_cfgs=stage_cfgs, **kwargs)
        self.use_sdpa = use_sdpa
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))

    def init_weights(self) -> None:
        """Parent init, then SimMIM's: truncated normal for the mask token
        and Linear layers, unit LayerNorms (skipped for pretrained init)."""
        super().init_weights()
        if (isinstance(self.init_cfg, dict)
                and self.init_cfg.get('type') == 'Pretrained'):
            return
        trunc_normal_(self.mask_token, mean=0., std=.02)
        self.apply(self._init_simmim_weights)

    @staticmethod
    def _init_simmim_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=.02)
            if module.bias is not None:
                nn.init.constant_(module.bias, 0)
        elif isinstance(module, nn.LayerNorm):
            nn.init.constant_(module.bias, 0)
            nn.init.constant_(module.weight, 1.0)

    def forward(self,
                x: torch.Tensor,
                mask: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, ...]:
        """Multi-stage features of (optionally masked) images.

        Args:
            x (torch.Tensor): Images ``[B, 3, H0, W0]``.
            mask (torch.Tensor, optional): ``[B, H0/p, W0/p]`` (p = patch
                size, 4), 1 = replace the patch by the mask token. ``None``
                runs the parent's forward.

        Returns:
            tuple[torch.Tensor]: One ``[B, C_i, H_i, W_i]`` per
            ``out_indices`` entry.
        """
        if mask is None:
            return super().forward(x)

        x, hw_shape = self.patch_embed(x)
        x = blend_mask_token(x, mask, self.mask_token, hw_shape)
        if self.use_abs_pos_embed:
            x = x + resize_pos_embed(self.absolute_pos_embed,
                                     self.patch_resolution, hw_shape,
                                     self.interpolate_mode,
                                     self.num_extra_tokens)
        x = self.drop_after_pos(x)

        outs = []
        for i, stage in enumerate(self.stages):
            x, hw_shape = stage(
                x, hw_shape, do_downsample=self.out_after_downsample)
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(x)
                out = out.view(-1, *hw_shape, self.num_features[i]).permute(
                    0, 3, 1, 2).contiguous()
                outs.append(out)
            if stage.downsample is not None and not self.out_after_downsample:
                x, hw_shape = stage.downsample(x, hw_shape)
        return tuple(outs)
