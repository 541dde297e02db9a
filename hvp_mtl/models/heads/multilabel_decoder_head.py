"""Multi-label Transformer decoder head, eq. (1) and (5)."""
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.registry import MODELS

from ..builder import build_module
from ..protocols import TaskStep
from .label_decoder_layer import LabelDecoderLayer, PositionCache

__all__ = ['MultiLabelDecoderHead']


@MODELS.register_module()
class MultiLabelDecoderHead(BaseModule):
    """Query2Label-style multi-label decoder of HVP-MTL (arXiv 2310.07510).

    Eq. (1) head: backbone features ``F0 [B, d0, H, W]`` -> linear projection
    to ``d`` -> Transformer decoder (cross-attention to the ``H*W`` tokens,
    SDPA) -> one logit per class, trained with the loss in ``loss``
    (``WeightedAsymmetricLoss``, eq. 1).

    Two modes:

    * ``'per_class'`` -- Query2Label as published: the ``C`` label
      embeddings ``Q0`` are the queries (query self-attention on by
      default), and a per-class linear classifier (Query2Label's
      ``GroupWiseLinear``) gives ``logit_c = <W_c, h_c> + b_c``. Cost grows
      with ``C`` (x ``C`` with self-attention): ~170 GMAC/image at
      ``C = 11,166``.
    * ``'grouped'`` (default) -- ML-Decoder: ``K << C`` learnable group
      queries, no query self-attention; class ``c`` belongs to group
      ``k(c) = c // g`` (``g = ceil(C / K)``) and ``logit_c = <Q0_c, h_k(c)>
      + b_c`` (the "group fully-connected" layer, one batched matmul). The
      label embeddings ``Q0`` are the per-class vectors of that layer, stored
      as ML-Decoder does, padded to ``group_weight [K, g, d]`` (the last
      ``K*g - C`` rows are never used), so no copy is made per step.

    Parameters: ``label_embeddings [C, d]`` (the queries) and
    ``class_weight [C, d]`` in per-class mode; ``group_queries [K, d]`` and
    ``group_weight [K, g, d]`` in grouped mode; ``class_bias [C]`` in both.
    :meth:`class_embeddings` returns ``Q0 [C, d]`` in either mode.

    Eq. (5), :meth:`label_similarity`: ``S(g, Q0) [B, C]``, for each class
    the cosine between its label embedding ``Q0_c`` and the decoder output
    that scores it (``similarity='scoring_token'``, default): the class's
    own token ``h_c`` in per-class mode, its group's token ``h_k(c)`` in
    grouped mode. ``similarity='mean_token'`` is the literal reading (one
    ``g [B, d]``, the mean of the output tokens, against every ``Q0_c``);
    in grouped mode it compares ``Q0_c`` with a mean over groups it was
    never trained against. See docs/method.md.

    Args:
        num_classes (int): ``C``.
        in_channels (int): Backbone feature width ``d0``.
        mode (str): ``'grouped'`` or ``'per_class'``. Defaults to
            ``'grouped'``.
        embed_dims (int): Decoder width ``d``. Defaults to 768.
        num_groups (int): ``K`` (grouped mode). Defaults to 100.
        num_layers (int): Decoder layers. Defaults to 1.
        num_heads (int): Attention heads. Defaults to 8.
        feedforward_channels (int): FFN width. Defaults to 2048.
        dropout (float): Decoder dropout. Defaults to 0.1.
        query_self_attn (bool, optional): Query self-attention; default True
            in ``per_class`` mode; must be False in ``grouped`` mode.
        norm_first (bool): Pre-norm layers. Defaults to False (post-norm, as
            Query2Label).
        with_pos_embed (bool): Add the 2-D sine position embedding to the
            keys. Defaults to True.
        bias_prior_prob (float, optional): Initialise class biases to
            ``logit(prior)`` (RetinaNet-style); None keeps them at 0.
        similarity (str): What eq. (5) compares: ``'scoring_token'`` or
            ``'mean_token'``. Defaults to ``'scoring_token'``.
        views (str): Rows :meth:`task_loss` trains eq. (1) on: ``'both'``
            views or ``'unmasked'`` (view 1).
        loss (dict): Multi-label loss config.
        init_cfg (dict, optional): Initialisation config.
    """

    MODES = ('grouped', 'per_class')
    SIMILARITIES = ('scoring_token', 'mean_token')
    VIEWS = ('both', 'unmasked')
    #: the task contract's needs (``TaskNeeds``): the view-1 tokens, for distillation
    writes = ('mlc_tokens', )

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 mode: str = 'grouped',
                 embed_dims: int = 768,
                 num_groups: int = 100,
                 num_layers: int = 1,
                 num_heads: int = 8,
                 feedforward_channels: int = 2048,
                 dropout: float = 0.1,
                 query_self_attn: Optional[bool] = None,
                 norm_first: bool = False,
                 with_pos_embed: bool = True,
                 bias_prior_prob: Optional[float] = None,
                 similarity: str = 'scoring_token',
                 views: str = 'both',
                 loss: dict = dict(type='WeightedAsymmetricLoss'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if mode not in self.MODES:
            raise ValueError(f'mode must be one of {self.MODES}, got {mode!r}')
        if similarity not in self.SIMILARITIES:
            raise ValueError(f'similarity must be one of {self.SIMILARITIES}, '
                             f'got {similarity!r}')
        if views not in self.VIEWS:
            raise ValueError(f'views must be one of {self.VIEWS}, got '
                             f'{views!r}')
        if query_self_attn is None:
            query_self_attn = mode == 'per_class'
        if mode == 'grouped' and query_self_attn:
            raise ValueError('grouped mode has no query self-attention '
                             '(ML-Decoder); set query_self_attn=False')
        self.num_classes = num_classes
        self.mode = mode
        self.similarity = similarity
        self.views = views
        self.embed_dims = embed_dims
        self.with_pos_embed = with_pos_embed
        self.bias_prior_prob = bias_prior_prob

        self.input_proj = nn.Linear(in_channels, embed_dims)
        if mode == 'grouped':
            self.num_groups = min(num_groups, num_classes)
            self.group_size = math.ceil(num_classes / self.num_groups)
            self.group_queries = nn.Parameter(
                torch.zeros(self.num_groups, embed_dims))
            self.group_weight = nn.Parameter(  # Q0, padded to [K, g, d]
                torch.zeros(self.num_groups, self.group_size, embed_dims))
        else:
            self.num_groups = num_classes
            self.group_size = 1
            self.label_embeddings = nn.Parameter(  # Q0, [C, d]
                torch.zeros(num_classes, embed_dims))
            self.class_weight = nn.Parameter(
                torch.zeros(num_classes, embed_dims))
        self.class_bias = nn.Parameter(torch.zeros(num_classes))
        self.layers = nn.ModuleList(
            LabelDecoderLayer(embed_dims, num_heads, feedforward_channels,
                              dropout, query_self_attn, norm_first)
            for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(embed_dims)
        self.loss_module = build_module(loss)
        self._positions = PositionCache()
        self._reset_parameters()

    def init_weights(self) -> None:
        """Default init unless a pretrained ``init_cfg`` is given."""
        super().init_weights()
        if not (isinstance(self.init_cfg, dict)
                and self.init_cfg.get('type') == 'Pretrained'):
            self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Xavier for decoder matrices (Query2Label), N(0, 0.02) for
        embeddings, uniform(+-1/sqrt(d)) class weights, prior biases."""
        for layer in self.layers.modules():
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        if self.mode == 'grouped':
            trunc_normal_(self.group_queries, std=.02)
            trunc_normal_(self.group_weight, std=.02)
        else:
            trunc_normal_(self.label_embeddings, std=.02)
            bound = 1. / math.sqrt(self.embed_dims)
            nn.init.uniform_(self.class_weight, -bound, bound)
        if self.bias_prior_prob is not None:
            prior = self.bias_prior_prob
            nn.init.constant_(self.class_bias, -math.log((1 - prior) / prior))

    def class_embeddings(self) -> torch.Tensor:
        """The label embeddings ``Q0``, ``[C, d]`` (a view, no copy)."""
        if self.mode == 'grouped':
            return self.group_weight.flatten(0, 1)[:self.num_classes]
        return self.label_embeddings

    def class_to_group(self) -> torch.Tensor:
        """Group index of every class, ``[C]`` (identity in per-class mode)."""
        classes = torch.arange(self.num_classes,
                               device=self.class_bias.device)
        return torch.div(classes, self.group_size, rounding_mode='floor')

    def forward(
        self, feats: Union[torch.Tensor, Sequence[torch.Tensor]]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-class logits and the mean output token ``g``.

        Args:
            feats (Tensor | Sequence[Tensor]): ``[B, d0, H, W]`` or the
                backbone's tuple (its last entry is used).

        Returns:
            tuple: ``logits [B, C]`` and ``g [B, d]``.
        """
        tokens = self.decode(feats)
        return self.classify(tokens), tokens.mean(dim=1)

    def decode(
            self, feats: Union[torch.Tensor,
                               Sequence[torch.Tensor]]) -> torch.Tensor:
        """Decoder output tokens ``[B, K, d]`` (grouped) or ``[B, C, d]``
        (per-class), after the final LayerNorm; input as :meth:`forward`."""
        if not isinstance(feats, torch.Tensor):
            feats = feats[-1]
        batch, _, height, width = feats.shape
        memory = self.input_proj(feats.flatten(2).transpose(1, 2))
        if self.with_pos_embed:
            pos = self._positions.get(height, width, self.embed_dims, memory)
        else:
            pos = memory.new_zeros(1, 1, self.embed_dims)
        if self.mode == 'grouped':
            hidden = self.group_queries[None]  # [1, K, d]
        else:
            hidden = self.label_embeddings[None]  # [1, C, d]
        for layer in self.layers:
            hidden = layer(hidden, memory, pos)
        return self.final_norm(hidden.expand(batch, -1, -1))

    def classify(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C]`` of the output tokens of :meth:`decode`."""
        if self.mode == 'grouped':
            logits = torch.einsum('bkd,kgd->bkg', tokens,
                                  self.group_weight.to(tokens.dtype))
            logits = logits.flatten(1)[:, :self.num_classes]
        else:
            logits = torch.einsum('bcd,cd->bc', tokens,
                                  self.class_weight.to(tokens.dtype))
        return logits + self.class_bias.to(logits.dtype)

    def label_similarity(
            self,
            embedding: torch.Tensor,
            label_embeddings: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Eq. (5): ``S(g, Q0)``, cosine similarities ``[B, C]``, fp32.

        * ``embedding`` = output tokens ``[B, K|C, d]`` of :meth:`decode`:
          with ``similarity='scoring_token'``, ``S_c = cos(Q0_c, h_k(c))``
          (``k(c) = c`` in per-class mode); with ``'mean_token'``, ``g`` =
          the tokens' mean, as for a 2-D input.
        * ``embedding`` = ``g [B, d]``: ``S_c = cos(Q0_c, g)`` (the literal
          reading of eq. 5, ``Q0 (x) g``, on unit vectors).

        The temperature of eq. (6) is applied by the distillation loss.

        Args:
            embedding (torch.Tensor): Tokens ``[B, K|C, d]`` or ``g [B, d]``.
            label_embeddings (torch.Tensor, optional): ``Q0 [C, d]`` (e.g.
                detached); defaults to this head's :meth:`class_embeddings`.

        Returns:
            torch.Tensor: ``[B, C]`` in ``[-1, 1]``.
        """
        if label_embeddings is None:
            label_embeddings = self.class_embeddings()
        if embedding.dim() == 3 and self.similarity == 'mean_token':
            embedding = embedding.mean(dim=1)
        with torch.autocast(device_type=embedding.device.type, enabled=False):
            h = F.normalize(embedding.float(), dim=-1)
            q0 = F.normalize(label_embeddings.float(), dim=-1)
            if h.dim() == 2:
                return h @ q0.t()
            if self.mode == 'per_class':
                return torch.einsum('bcd,cd->bc', h, q0)
            padding = self.num_groups * self.group_size - self.num_classes
            q0 = F.pad(q0, (0, 0, 0, padding)).view(self.num_groups,
                                                    self.group_size, -1)
            sim = torch.einsum('bkd,kgd->bkg', h, q0)
            return sim.flatten(1)[:, :self.num_classes]

    def loss(self, logits: torch.Tensor,
             targets: torch.Tensor) -> torch.Tensor:
        """Eq. (1) loss of ``logits [B, C]`` against soft ``targets [B, C]``."""
        return self.loss_module(logits, targets)

    def task_loss(self, step: TaskStep
                  ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The task contract: eq. (1) on the rows of :attr:`views`.

        Leaves the view-1 tokens in ``step.shared['mlc_tokens']`` for
        distillation; logs :meth:`diagnostics` of the view-1 rows.
        """
        targets = step.stack('gt_score',
                             'soft targets of TencentMLImages').float()
        batch, both = step.batch, self.views == 'both'
        tokens = self.decode(step.feats if both else step.feats[batch:])
        logits = self.classify(tokens)
        loss = self.loss(logits,
                         torch.cat([targets, targets]) if both else targets)
        if both:  # view-1 rows: diagnostics and distillation
            logits, tokens = logits[batch:], tokens[batch:]
        step.shared['mlc_tokens'] = tokens
        return loss, self.diagnostics(logits.detach(), targets)

    @staticmethod
    @torch.no_grad()
    def diagnostics(logits: torch.Tensor, targets: torch.Tensor,
                    max_rank: int = 32) -> Dict[str, torch.Tensor]:
        """Cheap training metrics, as device tensors (no host sync).

        ``top1_hit``: share of images whose top-scored class is positive.
        ``map_proxy``: mean R-precision (precision within the top ``R``
        scores, ``R`` = number of positives, capped at ``max_rank``), a
        standard per-image proxy of average precision.
        """
        positive = targets > 0
        top1 = logits.argmax(dim=1, keepdim=True)
        top1_hit = positive.gather(1, top1).float().mean()
        rank = min(max_rank, logits.shape[1])
        top = logits.topk(rank, dim=1).indices
        hits = positive.gather(1, top)
        num_pos = positive.sum(dim=1, keepdim=True).clamp(max=rank)
        within = torch.arange(rank, device=logits.device)[None] < num_pos
        precision = (hits & within).sum(1) / num_pos[:, 0].clamp(min=1)
        has_pos = (num_pos[:, 0] > 0).float()
        map_proxy = (precision * has_pos).sum() / has_pos.sum().clamp(min=1)
        return dict(top1_hit=top1_hit, map_proxy=map_proxy)
