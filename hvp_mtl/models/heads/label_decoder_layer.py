"""Building blocks of the multi-label Transformer decoder (Query2Label style)."""
import math
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['SDPAttention', 'LabelDecoderLayer', 'sine_position_embedding']


def sine_position_embedding(height: int, width: int, embed_dims: int,
                            device: torch.device,
                            temperature: float = 10000.) -> torch.Tensor:
    """DETR / Query2Label 2-D sine position embedding (``normalize=True``).

    Args:
        height (int): Rows of the feature map.
        width (int): Columns of the feature map.
        embed_dims (int): Output width, even; half per axis (y first).
        device (torch.device): Device of the result.
        temperature (float): Frequency base. Defaults to 1e4.

    Returns:
        torch.Tensor: ``[H*W, embed_dims]`` float32, row-major positions.
    """
    if embed_dims % 2:
        raise ValueError(f'embed_dims must be even, got {embed_dims}')
    num_feats = embed_dims // 2
    scale, eps = 2 * math.pi, 1e-6
    y_embed = torch.arange(1, height + 1, dtype=torch.float32,
                           device=device) / (height + eps) * scale
    x_embed = torch.arange(1, width + 1, dtype=torch.float32,
                           device=device) / (width + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = temperature**(2 * torch.div(dim_t, 2, rounding_mode='floor') /
                          num_feats)
    pos_x = x_embed[:, None] / dim_t  # [W, F]
    pos_y = y_embed[:, None] / dim_t  # [H, F]
    pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()),
                        dim=2).flatten(1)
    pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()),
                        dim=2).flatten(1)
    pos = torch.cat((pos_y[:, None, :].expand(height, width, num_feats),
                     pos_x[None, :, :].expand(height, width, num_feats)),
                    dim=2)
    return pos.reshape(height * width, embed_dims)


class SDPAttention(nn.Module):
    """Multi-head attention on ``F.scaled_dot_product_attention``.

    A query batch of 1 is broadcast against a larger key batch after its
    projection, so input-independent queries (label embeddings) are
    projected once per step, not once per image.

    Args:
        embed_dims (int): Width ``d``.
        num_heads (int): Heads; ``d`` must be divisible by it.
        dropout (float): Attention-probability dropout. Defaults to 0.
    """

    def __init__(self, embed_dims: int, num_heads: int,
                 dropout: float = 0.) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by '
                             f'num_heads {num_heads}')
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dims, embed_dims)
        self.k_proj = nn.Linear(embed_dims, embed_dims)
        self.v_proj = nn.Linear(embed_dims, embed_dims)
        self.out_proj = nn.Linear(embed_dims, embed_dims)

    def _heads(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        b, length, dims = x.shape
        x = x.view(b, length, self.num_heads, dims // self.num_heads)
        return x.transpose(1, 2).expand(batch, -1, -1, -1)

    def forward(self, query: torch.Tensor, key: torch.Tensor,
                value: torch.Tensor) -> torch.Tensor:
        """Attend ``query`` ``[Bq, Lq, d]`` to ``key``/``value`` ``[B, L, d]``.

        ``Bq`` is ``B`` or 1 (broadcast). Returns ``[max(Bq, B), Lq, d]``.
        """
        batch = max(query.shape[0], key.shape[0])
        q = self._heads(self.q_proj(query), batch)
        k = self._heads(self.k_proj(key), batch)
        v = self._heads(self.v_proj(value), batch)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.)
        out = out.transpose(1, 2).reshape(batch, query.shape[1], -1)
        return self.out_proj(out)


class LabelDecoderLayer(nn.Module):
    """One Transformer decoder layer over label (or group) queries.

    Optional query self-attention, cross-attention from the queries to the
    projected spatial features (keys carry the sine position embedding,
    values do not, as Query2Label/DETR), then a ReLU FFN. ``norm_first=False``
    is Query2Label's post-norm; ``True`` the pre-norm variant.

    Args:
        embed_dims (int): Width ``d``.
        num_heads (int): Attention heads.
        feedforward_channels (int): FFN hidden width.
        dropout (float): Dropout on attention and residual branches.
        self_attn (bool): Query self-attention (Query2Label as published).
        norm_first (bool): Pre-norm instead of post-norm.
    """

    def __init__(self, embed_dims: int, num_heads: int,
                 feedforward_channels: int, dropout: float, self_attn: bool,
                 norm_first: bool) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = SDPAttention(embed_dims, num_heads,
                                      dropout) if self_attn else None
        self.norm_self = nn.LayerNorm(embed_dims) if self_attn else None
        self.cross_attn = SDPAttention(embed_dims, num_heads, dropout)
        self.norm_cross = nn.LayerNorm(embed_dims)
        self.ffn = nn.Sequential(
            nn.Linear(embed_dims, feedforward_channels), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(feedforward_channels, embed_dims))
        self.norm_ffn = nn.LayerNorm(embed_dims)
        self.drop = nn.Dropout(dropout)

    def _block(self, x, norm, fn):
        if self.norm_first:
            return x + self.drop(fn(norm(x)))
        return norm(x + self.drop(fn(x)))

    def forward(self, queries: torch.Tensor, memory: torch.Tensor,
                memory_pos: torch.Tensor) -> torch.Tensor:
        """Update the queries.

        Args:
            queries (torch.Tensor): ``[Bq, Q, d]``, ``Bq`` = 1 or B.
            memory (torch.Tensor): Projected features ``[B, N, d]``.
            memory_pos (torch.Tensor): Position embedding ``[1, N, d]``.

        Returns:
            torch.Tensor: ``[B, Q, d]``.
        """
        if self.self_attn is not None:
            queries = self._block(queries, self.norm_self,
                                  lambda y: self.self_attn(y, y, y))
        keys = memory + memory_pos
        queries = self._block(queries, self.norm_cross,
                              lambda y: self.cross_attn(y, keys, memory))
        if queries.shape[0] != memory.shape[0]:
            queries = queries.expand(memory.shape[0], -1, -1)
        return self._block(queries, self.norm_ffn, self.ffn)


class PositionCache:
    """Per-shape cache of :func:`sine_position_embedding` (not state)."""

    def __init__(self) -> None:
        self._cache: Dict[Tuple, torch.Tensor] = {}

    def get(self, height: int, width: int, embed_dims: int,
            like: torch.Tensor) -> torch.Tensor:
        key = (height, width, embed_dims, like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = sine_position_embedding(
                height, width, embed_dims, like.device).to(like.dtype)[None]
        return self._cache[key]
