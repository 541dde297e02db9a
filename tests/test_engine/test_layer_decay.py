"""Layer-wise lr decay for Swin inside the real mmdet / mmseg / mmpretrain runners.

The optim wrapper is built by each toolkit's Runner from our fine-tuning config
(shrunk to a tiny Swin); every parameter group must carry
``base_lr * rate ** (L - 1 - layer_id)`` with the layer id derived here, by
hand, from the parameter name.
"""
import pathlib
import re

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

ROOT = pathlib.Path(__file__).resolve().parents[2]
FINETUNE = ROOT / 'configs' / 'finetune'
TINY_SWIN = dict(embed_dims=32, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])
CONFIGS = {
    'mmdet': FINETUNE / 'mmdet' / 'mask-rcnn_swin-b-p4-w7_hvp-pre_fpn_ms-crop-1x_coco.py',
    'mmseg': FINETUNE / 'mmseg' / 'upernet_swin-b-p4-w7_hvp-pre_8xb2-160k_ade20k-512x512.py',
    'mmpretrain': FINETUNE / 'mmpretrain' / 'swin-base-w7_hvp-pre_8xb256-coslr-100e_in1k.py',
}


def expected_layer_id(name, depths):
    """Layer id of a full parameter name for a Swin with ``depths`` (SimMIM rule)."""
    num_layers = sum(depths) + 2
    m = re.match(r'backbone\.stages\.(\d+)\.(blocks\.(\d+)|downsample)\.', name)
    if name.startswith('backbone.patch_embed.'):
        return 0
    if m and m.group(3) is not None:
        return sum(depths[:int(m.group(1))]) + int(m.group(3)) + 1
    if m:  # patch merging closes its stage
        return sum(depths[:int(m.group(1)) + 1])
    return num_layers - 1  # output norms, neck, heads


def tiny_cfg(kind, work_dir):
    cfg = Config.fromfile(str(CONFIGS[kind]))
    cfg.model.backbone.arch = TINY_SWIN
    cfg.model.backbone.stage_cfgs = dict(block_cfgs=dict(window_size=4))
    cfg.model.backbone.init_cfg = None
    if kind == 'mmdet':
        cfg.model.neck.in_channels = [32, 64, 128, 256]
    elif kind == 'mmseg':
        cfg.model.decode_head.update(in_channels=[32, 64, 128, 256], channels=16)
        cfg.model.auxiliary_head.update(in_channels=128, channels=16)
        cfg.norm_cfg = dict(type='BN', requires_grad=True)
        cfg.model.decode_head.norm_cfg = cfg.norm_cfg
        cfg.model.auxiliary_head.norm_cfg = cfg.norm_cfg
    else:
        cfg.model.head.in_channels = 256
        cfg.optim_wrapper.type = 'OptimWrapper'  # the recipe's AMP needs a GPU
    cfg.custom_hooks = []
    cfg.work_dir = str(work_dir)
    return cfg


@pytest.mark.parametrize('kind', ['mmdet', 'mmseg', 'mmpretrain'])
def test_layer_decay_groups_in_real_runner(kind, tmp_path):
    cfg = tiny_cfg(kind, tmp_path)
    runner = Runner.from_cfg(cfg)
    wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    base_lr = cfg.optim_wrapper.optimizer.lr
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    depths = TINY_SWIN['depths']
    num_layers = sum(depths) + 2
    groups = wrapper.optimizer.param_groups
    model = runner.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {g['param_name'] for g in groups} == trainable
    seen_ids = set()
    for group in groups:
        layer_id = expected_layer_id(group['param_name'], depths)
        seen_ids.add(layer_id)
        assert group['layer_id'] == layer_id, group['param_name']
        assert group['lr'] == pytest.approx(base_lr * rate**(num_layers - 1 - layer_id)), \
            group['param_name']
    assert seen_ids == set(range(num_layers))  # every depth is present
    # the stem learns slowest, the heads at the full lr
    by_name = {g['param_name']: g for g in groups}
    assert by_name['backbone.patch_embed.projection.weight']['lr'] == pytest.approx(
        base_lr * rate**(num_layers - 1))
    head = next(n for n in by_name if not n.startswith('backbone.'))
    assert by_name[head]['lr'] == pytest.approx(base_lr)
    # no weight decay on norms, biases and relative position tables
    for name, group in by_name.items():
        if re.search(r'\.(norm\d?|bias|relative_position_bias_table)', name):
            assert group['weight_decay'] == 0.0, name


def test_constructor_reachable_from_mmdet_and_mmseg_scopes():
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, DefaultScope

    import hvp_mtl  # noqa: F401
    for scope in ('mmdet', 'mmseg'):
        with DefaultScope.overwrite_default_scope(scope):
            cls = OPTIM_WRAPPER_CONSTRUCTORS.get(
                'mmpretrain.BackboneLayerDecayOptimWrapperConstructor')
        assert cls is not None and cls.__name__ == 'BackboneLayerDecayOptimWrapperConstructor'


def test_backbone_without_layer_depth_is_refused():
    import torch.nn as nn

    from hvp_mtl.engine.optimizers import BackboneLayerDecayOptimWrapperConstructor

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Conv2d(3, 4, 3)

    constructor = BackboneLayerDecayOptimWrapperConstructor(
        dict(optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05)),
        dict(layer_decay_rate=0.9))
    with pytest.raises(NotImplementedError, match='get_layer_depth'):
        constructor(Detector())
