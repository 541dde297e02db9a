"""Window attention of mmpretrain's Swin, computed with ``F.scaled_dot_product_attention``."""
from copy import deepcopy
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmpretrain.models.utils.attention import WindowMSA

__all__ = ['SDPAWindowMSA', 'use_sdpa_window_attention']


class SDPAWindowMSA(WindowMSA):
    """mmpretrain ``WindowMSA`` whose attention runs in one fused SDPA call.

    Parameters and buffers are the parent's (same names, same shapes), so
    checkpoints are interchangeable with ``SwinTransformer``. The relative
    position bias and the shifted-window mask are added as a float
    ``attn_mask``; the result equals the parent's up to float rounding
    (about 1e-6 in fp32). Every SDPA call gets 4-D q/k/v (the fused flash /
    memory-efficient kernels take nothing else), so on a GPU the
    ``[B*nW, heads, N, N]`` attention map is never materialised, in the
    regular and in the shifted-window blocks alike.
    """

    def forward(self,
                x: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Window attention.

        Args:
            x (torch.Tensor): Window tokens ``[B*nW, N, C]``, N = Wh*Ww.
            mask (torch.Tensor, optional): Shift mask ``[nW, N, N]`` with
                values in ``(-inf, 0]``.

        Returns:
            torch.Tensor: ``[B*nW, N, C]``.
        """
        num_windows_batch, num_tokens, channels = x.shape
        head_dims = channels // self.num_heads
        qkv = self.qkv(x).reshape(num_windows_batch, num_tokens, 3,
                                  self.num_heads,
                                  head_dims).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)  # each [B*nW, heads, N, hd]

        bias = self.relative_position_bias_table[
            self.relative_position_index.view(-1)].view(
                num_tokens, num_tokens, -1).permute(2, 0, 1)  # [heads, N, N]
        if mask is None:
            attn_mask = bias.unsqueeze(0).to(query.dtype)  # [1, heads, N, N]
        else:
            # Shifted windows: each window has its own mask, so fold the
            # windows into the head axis (windows are batch-major: index =
            # b * nW + w) and keep q/k/v 4-D, [B, nW*heads, N, hd]: the
            # fused kernels take 4-D inputs only, and the mask
            # [1, nW*heads, N, N] broadcasts over the batch without being
            # materialised per image.
            num_windows = mask.shape[0]
            attn_mask = (bias.unsqueeze(0) + mask.unsqueeze(1)).to(
                query.dtype).reshape(1, num_windows * self.num_heads,
                                     num_tokens, num_tokens)
            shape = (num_windows_batch // num_windows,
                     num_windows * self.num_heads, num_tokens, head_dims)
            query, key, value = (t.reshape(shape) for t in (query, key, value))
        out = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attn_mask,
            dropout_p=self.attn_drop.p if self.training else 0.,
            scale=self.scale)
        out = out.reshape(num_windows_batch, self.num_heads, num_tokens,
                          head_dims).transpose(1, 2).reshape(
                              num_windows_batch, num_tokens, channels)
        return self.proj_drop(self.proj(out))


def _with_window_msa(block_cfg: dict) -> dict:
    block_cfg = deepcopy(block_cfg)
    attn_cfgs = dict(block_cfg.get('attn_cfgs', dict()))
    attn_cfgs.setdefault('window_msa', SDPAWindowMSA)
    block_cfg['attn_cfgs'] = attn_cfgs
    return block_cfg


def use_sdpa_window_attention(
        stage_cfgs: Union[dict, Sequence[dict]]) -> Union[dict, list]:
    """Return ``stage_cfgs`` with every block's window attention set to SDPA.

    A ``window_msa`` a user already put in ``attn_cfgs`` is kept.

    Args:
        stage_cfgs (dict | Sequence[dict]): ``SwinTransformer.stage_cfgs``.

    Returns:
        dict | list: A new config of the same structure.
    """

    def one_stage(stage_cfg: dict) -> dict:
        stage_cfg = dict(deepcopy(stage_cfg))
        block_cfgs = stage_cfg.get('block_cfgs', dict())
        if isinstance(block_cfgs, Sequence):
            stage_cfg['block_cfgs'] = [_with_window_msa(c) for c in block_cfgs]
        else:
            stage_cfg['block_cfgs'] = _with_window_msa(block_cfgs)
        return stage_cfg

    if isinstance(stage_cfgs, Sequence):
        return [one_stage(c) for c in stage_cfgs]
    return one_stage(stage_cfgs)
