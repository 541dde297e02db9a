"""The pre-trained backbone as a timm model.

Export (``tools/model_converters/hvp_to_backbone.py --format timm``)::

    {'state_dict': {'layers.0.blocks.0.attn.qkv.weight': Tensor, ...},
     'meta': {'timm': {'model': 'swin_base_patch4_window7_224', 'kwargs': {}},
              ...plain Python types only...}}

and use, with timm alone::

    model = timm.create_model('swin_base_patch4_window7_224', pretrained=False,
                              num_classes=0)
    model.load_state_dict(torch.load(path, weights_only=True)['state_dict'],
                          strict=True)

``timm`` is imported lazily: only the export and :func:`create_timm_model`
need it. The key and tensor layout is in :mod:`hvp_mtl.apis.timm_keys`.
"""
import math
import os.path as osp
import sys

import torch

from ..utils.atomic_io import atomic_torch_save
from ..utils.checkpoint_file import load_checkpoint_file
from .backbone_export import (
    build_meta,
    load_pretrain_checkpoint,
    report,
    resolve_weights,
    select_backbone,
)
from .timm_keys import UnsupportedBackboneError, swin_to_timm, vit_to_timm

__all__ = ['TIMM_MODELS', 'convert_to_timm', 'check_timm_state_dict',
           'create_timm_model', 'prepare_timm_export', 'export_timm']

#: The timm models of the pre-training configs, with their architecture.
TIMM_MODELS = {
    'swin_tiny_patch4_window7_224': dict(
        embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
        patch_size=4, mlp_ratio=4.0, img_size=224),
    'swin_small_patch4_window7_224': dict(
        embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], window_size=7,
        patch_size=4, mlp_ratio=4.0, img_size=224),
    'swin_base_patch4_window7_224': dict(
        embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=7,
        patch_size=4, mlp_ratio=4.0, img_size=224),
    'vit_base_patch16_224': dict(
        embed_dim=768, depth=12, num_heads=12, patch_size=16, img_size=224, mlp_ratio=4.0),
}
BIAS_TABLE = 'relative_position_bias_table'


def _window(rows):
    """Window size ``w`` of a ``(2w - 1)^2``-row relative-position table."""
    return (math.isqrt(rows) + 1) // 2


def swin_architecture(timm_state):
    """timm ``SwinTransformer`` kwargs read off the converted weights' shapes."""
    proj = timm_state['patch_embed.proj.weight']
    stages = sorted({int(k.split('.')[1]) for k in timm_state if k.startswith('layers.')})
    depths = [1 + max(int(k.split('.')[3]) for k in timm_state
                      if k.startswith(f'layers.{i}.blocks.')) for i in stages]
    tables = [timm_state[f'layers.{i}.blocks.0.attn.{BIAS_TABLE}'] for i in stages]
    return dict(embed_dim=proj.shape[0], depths=depths,
                num_heads=[t.shape[1] for t in tables], window_size=_window(tables[0].shape[0]),
                patch_size=proj.shape[-1],
                mlp_ratio=timm_state['layers.0.blocks.0.mlp.fc1.weight'].shape[0] / proj.shape[0])


def vit_architecture(timm_state, num_heads):
    """timm ``VisionTransformer`` kwargs read off the weights (heads: from the config)."""
    proj = timm_state['patch_embed.proj.weight']
    grid = math.isqrt(timm_state['pos_embed'].shape[1] - 1)
    depth = 1 + max(int(k.split('.')[1]) for k in timm_state if k.startswith('blocks.'))
    return dict(embed_dim=proj.shape[0], depth=depth, num_heads=num_heads,
                patch_size=proj.shape[-1], img_size=grid * proj.shape[-1],
                mlp_ratio=timm_state['blocks.0.mlp.fc1.weight'].shape[0] / proj.shape[0])


def vit_num_heads(backbone_cfg):
    """Attention heads of an mmpretrain ViT config (not visible in its weights)."""
    if not backbone_cfg:
        raise ValueError('the number of attention heads of a ViT is not visible in its '
                         'weights and the checkpoint holds no config: pass num_heads')
    arch = backbone_cfg.get('arch', 'base')
    if isinstance(arch, str):
        from mmpretrain.models import VisionTransformer
        return VisionTransformer.arch_zoo[arch.lower()]['num_heads']
    return arch['num_heads']


def timm_model_for(arch):
    """``(timm model name, kwargs)``: the name whose architecture equals ``arch``
    (kwargs empty), else the family's first name plus the differing kwargs."""
    family = [n for n, a in TIMM_MODELS.items() if set(a) == set(arch)]
    for name in family:
        if TIMM_MODELS[name] == arch:
            return name, {}
    return family[0], {k: v for k, v in arch.items() if TIMM_MODELS[family[0]][k] != v}


def convert_to_timm(backbone_state, backbone_cfg=None, num_heads=None):
    """An mmpretrain Swin / ViT backbone state dict in timm's layout.

    Args:
        backbone_state (dict[str, Tensor]): ``model.state_dict()`` of the
            backbone (keys without ``backbone.``); ``mask_token`` and
            ``relative_position_index`` are dropped.
        backbone_cfg (dict, optional): The pre-training backbone config
            (source of a ViT's ``num_heads`` and a Swin's ``img_size``,
            default 224).
        num_heads (int, optional): A ViT's heads, overriding the config.

    Returns:
        dict: ``state_dict`` (timm keys), ``dropped`` ({key: reason}),
        ``model`` (timm name) and ``kwargs`` (for ``timm.create_model``).
    """
    state = {k: v for k, v in backbone_state.items()
             if k != 'mask_token' and not k.endswith('relative_position_index')}
    if any(k.startswith('stages.') for k in state):
        timm_state, dropped = swin_to_timm(state)
        # not visible in the weights, but timm's Swin fixes its input size
        img_size = (backbone_cfg or {}).get('img_size', 224)
        arch = dict(swin_architecture(timm_state), img_size=img_size)
    elif 'pos_embed' in state and any(k.startswith('layers.') for k in state):
        timm_state, dropped = vit_to_timm(state)
        arch = vit_architecture(timm_state, num_heads or vit_num_heads(backbone_cfg))
    else:
        raise UnsupportedBackboneError(
            'neither a Swin ("stages.*") nor a ViT ("pos_embed", "layers.*") backbone')
    if 'window_size' in arch:
        check_small_map_padding(arch, backbone_cfg)
    name, kwargs = timm_model_for(arch)
    return dict(state_dict=timm_state, dropped=dropped, model=name, kwargs=kwargs)


def check_small_map_padding(arch, backbone_cfg):
    """Refuse a Swin whose ``pad_small_map=True`` makes it a function timm cannot compute.

    mmpretrain's ``ShiftWindowMSA`` with ``pad_small_map=True`` still shifts a window that
    covers the whole stage map (``min(H, W) == window``) and pads a map smaller than the
    window; timm (as the original Swin) does not shift there and shrinks the window. With
    ``pad_small_map=False`` (the paper configs) both agree. Measured: the demo config with
    ``window_size=2`` at 64 px (last stage 2x2) exports with max |diff| 0.58 on the last stage.

    Raises:
        UnsupportedBackboneError: A stage map at most the window and ``pad_small_map=True``.
    """
    if not (backbone_cfg or {}).get('pad_small_map', False):
        return
    window = arch['window_size']
    side = arch['img_size'] // arch['patch_size']
    for stage in range(len(arch['depths'])):
        if side <= window:
            raise UnsupportedBackboneError(
                f'stage {stage} map is {side}x{side}, at most the {window}x{window} window, and '
                'the backbone was trained with pad_small_map=True: mmpretrain shifts (or pads) '
                'that window, timm does not, so the timm model would compute a different '
                'function. Export with --format mmpretrain (or pre-train with '
                'pad_small_map=False or a window smaller than every stage map)')
        side //= 2


def check_timm_state_dict(state, model, src='<checkpoint>'):
    """Raise a ``ValueError`` naming each key or size ``state`` gets wrong for ``model``.

    A relative-position table of another size is reported as the window-size
    mismatch it is. Shapes only: works on a model on the ``meta`` device.
    """
    expected = {k: v.shape for k, v in model.state_dict().items()}
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        problems.append(f'missing key(s) {missing[:5]} ({len(missing)} in all)')
    if unexpected:
        problems.append(f'unexpected key(s) {unexpected[:5]} ({len(unexpected)} in all)')
    windows, sizes = [], []
    for key in sorted(set(state) & set(expected)):
        got, want = tuple(state[key].shape), tuple(expected[key])
        if got != want:
            (windows if key.endswith(BIAS_TABLE) else sizes).append((key, got, want))
    if windows:
        key, got, want = windows[0]
        have, need = _window(got[0]), _window(want[0])
        problems.append(
            f'window size mismatch: the checkpoint was trained with {have}x{have} windows '
            f'("{key}" has {got[0]} rows; {len(windows)} tables differ), the model has '
            f'{need}x{need} windows ({want[0]} rows); create it with window_size={have}')
    problems += [f'size mismatch at "{key}": checkpoint {got}, model {want}'
                 for key, got, want in sizes[:5]]
    if len(sizes) > 5:
        problems.append(f'{len(sizes) - 5} more size mismatches')
    if problems:
        raise ValueError(f'{src} does not fit timm {type(model).__name__}: '
                         + '; '.join(problems))


def _timm_model(name, kwargs, device=None):
    import timm  # lazily: only the timm export needs it
    with torch.device(device or 'cpu'):
        return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)


def create_timm_model(path, **kwargs):
    """The timm model of an exported file, its weights loaded strictly.

    Args:
        path (str): A ``--format timm`` export.
        **kwargs: More ``timm.create_model`` kwargs (e.g. ``img_size``);
            they override the file's ``meta['timm']['kwargs']``.

    Returns:
        torch.nn.Module: The timm model (train mode, as timm creates it).
    """
    ckpt = load_checkpoint_file(path)
    info = ckpt.get('meta', {}).get('timm')
    if info is None:
        raise ValueError(f'{path}: no meta["timm"]; export it with --format timm')
    model = _timm_model(info['model'], {**info['kwargs'], **kwargs})
    check_timm_state_dict(ckpt['state_dict'], model, path)
    model.load_state_dict(ckpt['state_dict'], strict=True)
    return model


def prepare_timm_export(src, weights='auto'):
    """Convert the backbone of ``src`` to timm's layout and check it against the timm model.

    Returns:
        dict: ``state_dict`` (timm keys), ``meta`` (plain types, as written by
        :func:`export_timm`), ``model`` (timm name), ``kwargs`` (``create_model`` kwargs),
        ``dropped`` ({key: reason}) and ``cfg_text`` (the stored pre-training config or None).
    """
    import timm
    from mmengine.config import Config
    ckpt, state_dict = load_pretrain_checkpoint(src)
    weights = resolve_weights(state_dict, weights)
    kept, dropped = select_backbone(state_dict, weights, src)
    cfg_text = (ckpt.get('meta') or {}).get('cfg')
    try:
        backbone_cfg = Config.fromstring(cfg_text, '.py').model.backbone if cfg_text else None
    except Exception as err:  # noqa: BLE001  (any parse error of a stored text)
        raise ValueError(f'{src}: cannot read the pre-training config stored in its '
                         f'meta["cfg"] ({type(err).__name__}: {err})') from err
    try:
        out = convert_to_timm({k[len('backbone.'):]: v for k, v in kept.items()},
                              backbone_cfg)
    except ValueError as err:
        raise ValueError(f'{src}: {err}') from err
    dropped.update({f'backbone.{k}': why for k, why in out['dropped'].items()})
    check_timm_state_dict(out['state_dict'], _timm_model(out['model'], out['kwargs'], 'meta'),
                          src)
    meta = build_meta(ckpt, src, weights, out['state_dict'], dropped)
    meta['hvp_mtl']['format'] = 'timm'
    meta['timm'] = dict(model=out['model'], kwargs=out['kwargs'], version=timm.__version__)
    return dict(out, meta=meta, dropped=dropped, cfg_text=cfg_text)


def export_timm(src, dst, weights='auto', file=sys.stdout):
    """Export ``src`` (pre-training checkpoint) to ``dst`` in timm's layout.

    The result is checked against the timm model (built on the ``meta``
    device) before it is written.

    Returns:
        dict: what was written (``state_dict`` and ``meta``).
    """
    out = prepare_timm_export(src, weights)
    written = {'state_dict': out['state_dict'], 'meta': out['meta']}
    atomic_torch_save(written, dst)
    report(out['state_dict'], out['dropped'], out['meta']['hvp_mtl']['weights'], file=file,
           layout='timm')
    kwargs = ''.join(f', {k}={v!r}' for k, v in out['kwargs'].items())
    print(f'timm model: {out["model"]}{kwargs}\n'
          f'  model = timm.create_model({out["model"]!r}, pretrained=False, num_classes=0'
          f'{kwargs})\n  model.load_state_dict(torch.load({osp.basename(dst)!r}, '
          "weights_only=True)['state_dict'], strict=True)", file=file)
    print(f'Saved {dst}', file=file)
    return written
