"""Vision Transformer with a SimMIM mask token and optional checkpointing."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS

from .masked_swin import blend_mask_token

__all__ = ['MaskedViT']


@MODELS.register_module()
class MaskedViT(VisionTransformer):
    """mmpretrain ``VisionTransformer`` plus a learnable SimMIM mask token.

    * ``forward(x)`` / ``forward(x, mask=None)`` equals the parent's forward
      for the same weights, for every ``out_indices`` and ``out_type``.
    * ``forward(x, mask)`` replaces masked patch tokens by ``mask_token``
      after the patch embedding, *before* the class token and the position
      embedding are added (as SimMIM's ViT), then runs the parent's layers.
    * The state dict is the parent's plus ``mask_token``.
    * Attention is mmpretrain's ``MultiheadAttention``, which already calls
      ``F.scaled_dot_product_attention``.
    * ``with_cp=True`` checkpoints every encoder layer during training (the
      parent has no such option).

    For HVP-MTL use ``out_type='featmap'``: the heads need the spatial map
    ``[B, C, H/16, W/16]``.

    Args:
        with_cp (bool): Gradient checkpointing of each layer. Defaults to
            False.
        **kwargs: Every ``VisionTransformer`` argument.
    """

    def __init__(self, with_cp: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.with_cp = with_cp
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))

    def init_weights(self) -> None:
        """Parent init, then a truncated-normal mask token (skipped for a
        pretrained init)."""
        super().init_weights()
        if (isinstance(self.init_cfg, dict)
                and self.init_cfg.get('type') == 'Pretrained'):
            return
        trunc_normal_(self.mask_token, mean=0., std=.02)

    def forward(self,
                x: torch.Tensor,
                mask: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, ...]:
        """Features of (optionally masked) images.

        Args:
            x (torch.Tensor): Images ``[B, 3, H0, W0]``.
            mask (torch.Tensor, optional): ``[B, H0/p, W0/p]`` (p = patch
                size), 1 = replace the patch by the mask token.

        Returns:
            tuple[torch.Tensor]: One output per ``out_indices`` entry, in the
            parent's ``out_type`` format.
        """
        if mask is None and not (self.with_cp and self.training):
            return super().forward(x)

        batch = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        if mask is not None:
            x = blend_mask_token(x, mask, self.mask_token, patch_resolution)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(batch, -1, -1), x), dim=1)
        x = x + resize_pos_embed(
            self.pos_embed,
            self.patch_resolution,
            patch_resolution,
            mode=self.interpolate_mode,
            num_extra_tokens=self.num_extra_tokens)
        x = self.drop_after_pos(x)
        x = self.pre_norm(x)

        outs = []
        for i, layer in enumerate(self.layers):
            if self.with_cp and self.training and x.requires_grad:
                x = cp.checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
            if i == len(self.layers) - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, patch_resolution))
        return tuple(outs)
