"""Check the timm export numerically: our backbone and the timm model, same input.

Used by ``tools/model_converters/check_timm_export.py`` (the table in
docs/FINETUNE.md) and the tests. The backbone is built from a pre-training
config exactly as the pre-trainer builds it (``cfg.model.backbone``, the
masked Swin / ViT with its ``out_indices`` and output norms), its weights are
randomised (so that every tensor's layout matters: a zero-initialised
relative-position table or a unit norm would hide a wrong permutation), then
converted with :func:`hvp_mtl.apis.timm_export.convert_to_timm` and loaded
into the real ``timm.create_model(NAME, pretrained=False, num_classes=0)``
with ``strict=True``.
"""
import torch

from .timm_export import check_timm_state_dict, convert_to_timm

__all__ = ['backbone_from_config', 'randomize_', 'timm_last_stage', 'compare_with_timm']


def backbone_from_config(config, **overrides):
    """The pre-training backbone of ``config`` (a path), with ``overrides``
    (e.g. a smaller ``arch``) applied. Returns ``(backbone, backbone_cfg)``."""
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    import hvp_mtl  # noqa: F401  (registers the masked backbones)
    cfg = Config.fromfile(str(config)).model.backbone
    cfg.update(overrides)
    return MODELS.build(cfg), cfg


@torch.no_grad()
def randomize_(model, seed=0):
    """Fill every float tensor of ``model`` with seeded random values in place.

    Norm weights ~ 1 + 0.1 N(0, 1), relative-position tables ~ 0.5 N(0, 1)
    (large enough to change the attention), everything else ~ 0.05 N(0, 1).
    """
    gen = torch.Generator().manual_seed(seed)
    for name, tensor in model.state_dict(keep_vars=True).items():
        if not tensor.is_floating_point():
            continue
        noise = torch.randn(tensor.shape, generator=gen)
        is_norm_weight = tensor.dim() == 1 and name.endswith('weight')
        scale = 0.5 if name.endswith('relative_position_bias_table') else (
            0.1 if is_norm_weight else 0.05)
        tensor.copy_(noise * scale + (1. if is_norm_weight else 0.))
    return model


def timm_last_stage(timm_model, images):
    """timm's ``forward_features`` as ``[B, C, H, W]`` (our last-stage layout).

    Swin returns NHWC; ViT returns ``[B, 1 + H*W, C]`` (class token first).
    """
    feats = timm_model.forward_features(images)
    if feats.dim() == 4:
        return feats.permute(0, 3, 1, 2)
    grid = timm_model.patch_embed.grid_size
    tokens = feats[:, timm_model.num_prefix_tokens:]
    return tokens.transpose(1, 2).reshape(feats.shape[0], -1, *grid)


@torch.no_grad()
def compare_with_timm(backbone, backbone_cfg, images):
    """Convert ``backbone``, load it strictly into timm, compare last-stage outputs.

    Args:
        backbone (torch.nn.Module): The mmpretrain backbone (any weights).
        backbone_cfg (dict): Its config (a ViT's ``num_heads``, a Swin's
            ``img_size``).
        images (torch.Tensor): ``[B, 3, H, W]``, fp32, at the config's
            ``img_size``.

    Returns:
        dict: ``model`` and ``kwargs`` (what the export records),
        ``max_abs_diff`` (float) and ``shape`` of the compared features.
    """
    import timm
    converted = convert_to_timm(backbone.state_dict(), backbone_cfg)
    timm_model = timm.create_model(converted['model'], pretrained=False, num_classes=0,
                                   **converted['kwargs'])
    check_timm_state_dict(converted['state_dict'], timm_model)
    timm_model.load_state_dict(converted['state_dict'], strict=True)
    backbone.eval()  # (mmpretrain's Swin.train() returns None: no chaining)
    timm_model.eval()
    ours = backbone(images)[-1]
    theirs = timm_last_stage(timm_model, images)
    if ours.shape != theirs.shape:
        raise ValueError(f'output shapes differ: ours {tuple(ours.shape)}, '
                         f'timm {tuple(theirs.shape)}')
    return dict(model=converted['model'], kwargs=converted['kwargs'],
                max_abs_diff=(ours - theirs).abs().max().item(), shape=tuple(ours.shape))
