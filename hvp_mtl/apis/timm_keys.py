"""Key and tensor layout of an mmpretrain Swin / ViT backbone in timm (>= 0.9).

Pure tensor bookkeeping (no timm import): ``swin_to_timm`` and ``vit_to_timm``
take a backbone state dict without prefix (``patch_embed.projection.weight``,
...; as :func:`hvp_mtl.apis.backbone_export.select_backbone` keeps it, minus
``backbone.``) and return the state dict of timm's ``SwinTransformer`` /
``VisionTransformer`` with ``num_classes=0``.

Swin, mmpretrain -> timm:

* stage ``i``'s patch merging runs at the *end* of ``stages.i`` in mmpretrain
  and at the *start* of ``layers.{i+1}`` in timm;
* mmpretrain merges 2x2 patches with ``nn.Unfold``: channel ``c * 4 + 2 * dy
  + dx`` of the ``4C`` vector; timm concatenates ``x0..x3`` = (dy, dx) in
  (0, 0), (1, 0), (0, 1), (1, 1): channel ``(2 * dx + dy) * C + c``. The merge
  norm and the reduction's input columns are permuted accordingly;
* ``attn.w_msa.{qkv,proj,relative_position_bias_table}`` -> ``attn.*`` (same
  ``[3, heads, head_dim]`` qkv split, same ``(2w-1)^2 x heads`` table and the
  same index order); ``ffn.layers.0.0`` / ``ffn.layers.1`` -> ``mlp.fc1`` /
  ``mlp.fc2``;
* ``norm{last}`` (the output norm of the last stage) -> ``norm``; the other
  stage norms (``out_indices`` of dense tasks) have no timm counterpart.

ViT: ``layers.i.{ln1,ln2}`` -> ``blocks.i.{norm1,norm2}``, the final ``ln1``
-> ``norm``; ``cls_token`` and ``pos_embed`` (class token first) as they are.
"""
import re
from collections import OrderedDict

import torch

__all__ = ['swin_to_timm', 'vit_to_timm', 'unfold_to_timm_merge_order',
           'UnsupportedBackboneError']


class UnsupportedBackboneError(ValueError):
    """A backbone key with no counterpart in the timm model."""


SWIN_RULES = (
    (r'patch_embed\.projection\.(.+)', r'patch_embed.proj.\1'),
    (r'patch_embed\.norm\.(.+)', r'patch_embed.norm.\1'),
    (r'stages\.(\d+)\.blocks\.(\d+)\.norm([12])\.(.+)', r'layers.\1.blocks.\2.norm\3.\4'),
    (r'stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.(qkv|proj)\.(.+)',
     r'layers.\1.blocks.\2.attn.\3.\4'),
    (r'stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.relative_position_bias_table',
     r'layers.\1.blocks.\2.attn.relative_position_bias_table'),
    (r'stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.0\.0\.(.+)', r'layers.\1.blocks.\2.mlp.fc1.\3'),
    (r'stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.1\.(.+)', r'layers.\1.blocks.\2.mlp.fc2.\3'),
)
VIT_RULES = (
    (r'(cls_token|pos_embed)', r'\1'),
    (r'patch_embed\.projection\.(.+)', r'patch_embed.proj.\1'),
    (r'layers\.(\d+)\.ln([12])\.(.+)', r'blocks.\1.norm\2.\3'),
    (r'layers\.(\d+)\.attn\.(qkv|proj)\.(.+)', r'blocks.\1.attn.\2.\3'),
    (r'layers\.(\d+)\.ffn\.layers\.0\.0\.(.+)', r'blocks.\1.mlp.fc1.\2'),
    (r'layers\.(\d+)\.ffn\.layers\.1\.(.+)', r'blocks.\1.mlp.fc2.\2'),
    (r'ln1\.(.+)', r'norm.\1'),
)


def _rename(key, rules, family):
    for pattern, repl in rules:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, repl, key)
    raise UnsupportedBackboneError(
        f'backbone key "{key}" has no counterpart in timm\'s {family} (supported: '
        f'the mmpretrain {family} as the pre-training configs build it)')


def unfold_to_timm_merge_order(channels):
    """Index ``perm`` with ``timm_vector = unfold_vector[perm]`` (length ``4C``).

    Args:
        channels (int): ``C``, channels of the stage before merging.

    Returns:
        torch.Tensor: ``perm[(2 * dx + dy) * C + c] = c * 4 + 2 * dy + dx``.
    """
    t = torch.arange(4 * channels)
    block, c = t // channels, t % channels
    dx, dy = block // 2, block % 2
    return c * 4 + 2 * dy + dx


def swin_to_timm(state):
    """mmpretrain ``SwinTransformer`` weights -> timm ``SwinTransformer`` weights.

    Args:
        state (dict[str, Tensor]): Backbone state dict, keys without prefix,
            ``relative_position_index`` and ``mask_token`` already removed.

    Returns:
        tuple[OrderedDict, dict[str, str]]: timm state dict and
        ``{dropped key: reason}``.
    """
    stages = {int(m.group(1)) for k in state for m in [re.match(r'stages\.(\d+)\.', k)] if m}
    if not stages:
        raise UnsupportedBackboneError('no "stages.*" key: not a Swin backbone')
    last = max(stages)
    out, dropped = OrderedDict(), {}
    for key, value in state.items():
        merge = re.fullmatch(r'stages\.(\d+)\.downsample\.(norm|reduction)\.(.+)', key)
        norm = re.fullmatch(r'norm(\d+)\.(.+)', key)
        if merge:
            stage, part, leaf = int(merge.group(1)), merge.group(2), merge.group(3)
            if part == 'norm':  # over the 4C merged vector
                value = value[unfold_to_timm_merge_order(value.shape[0] // 4)]
            elif leaf == 'weight':  # [2C, 4C]: permute the input columns
                value = value[:, unfold_to_timm_merge_order(value.shape[1] // 4)]
            out[f'layers.{stage + 1}.downsample.{part}.{leaf}'] = value.contiguous()
        elif norm and int(norm.group(1)) == last:
            out[f'norm.{norm.group(2)}'] = value
        elif norm:
            dropped[key] = ('stage norm with no timm counterpart (timm normalises '
                            'the last stage only)')
        else:
            out[_rename(key, SWIN_RULES, 'SwinTransformer')] = value
    return out, dropped


def vit_to_timm(state):
    """mmpretrain ``VisionTransformer`` weights -> timm ``VisionTransformer`` weights.

    Args:
        state (dict[str, Tensor]): Backbone state dict, keys without prefix,
            ``mask_token`` already removed.

    Returns:
        tuple[OrderedDict, dict[str, str]]: timm state dict and
        ``{dropped key: reason}`` (always empty: every key has a home).
    """
    out = OrderedDict(
        (_rename(key, VIT_RULES, 'VisionTransformer'), value) for key, value in state.items())
    return out, {}
