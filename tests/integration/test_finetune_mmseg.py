"""ADE20K-style UperNet fine-tuning through mmseg from a real HVP-MTL export.

Our UperNet config (Swin backbone as ``mmpretrain.SwinTransformer``,
layer-decay constructor and load check from this package) is shrunk to the
tiny pre-trained Swin and the demo world's ``ade/`` set (ADE20K layout, 7
classes after ``reduce_zero_label``), built as ``tools/train.py`` builds it,
trained 2 iterations and scored by mmseg's own ``IoUMetric`` (mIoU).
"""
import json

import pytest
import torch
from mmengine.config import Config

from tests.integration.test_finetune_mmpretrain import ROOT, build_runner, load_check
from tests.test_apis.test_export import swin_export  # noqa: F401  (session fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CFG = (ROOT / 'configs' / 'finetune' / 'mmseg' /
       'upernet_swin-b-p4-w7_hvp-pre_8xb2-160k_ade20k-512x512.py')
CROP = (64, 64)


def tiny_seg_cfg(demo_world, export):
    cfg = Config.fromfile(str(CFG))
    classes = json.loads((demo_world / 'world.json').read_text())['classes']['seg']
    pre = export['cfg'].model.backbone
    dims = pre.arch['embed_dims']
    bn = dict(type='BN', requires_grad=True)  # SyncBN needs a process group
    cfg.model.data_preprocessor.size = CROP
    cfg.model.backbone.update(arch=pre.arch, window_size=pre.window_size, img_size=CROP[0])
    cfg.model.decode_head.update(in_channels=[dims, dims * 2, dims * 4, dims * 8],
                                 channels=16, num_classes=len(classes), norm_cfg=bn)
    cfg.model.auxiliary_head.update(in_channels=dims * 4, channels=16,
                                    num_classes=len(classes), norm_cfg=bn)
    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='RandomResize', scale=(128, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
        dict(type='RandomCrop', crop_size=CROP, cat_max_ratio=0.75),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PhotoMetricDistortion'),
        dict(type='PackSegInputs')]
    test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(128, 64), keep_ratio=True),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='PackSegInputs')]
    # ADE20K's label ids: 0 (outlines) is ignored, 1..7 become 0..6 = background +
    # 6 shapes. ADE20KDataset insists on ADE's 150 names, so its generic parent
    # reads the same layout with the demo world's names.
    for split, loader, pipeline in (('training', cfg.train_dataloader, train_pipeline),
                                    ('validation', cfg.val_dataloader, test_pipeline)):
        loader.update(batch_size=2, num_workers=0, persistent_workers=False, pin_memory=False)
        loader.dataset.update(
            type='BaseSegDataset', img_suffix='.jpg', seg_map_suffix='.png',
            reduce_zero_label=True, data_root=str(demo_world / 'ade'),
            metainfo=dict(classes=classes),
            data_prefix=dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}'),
            pipeline=pipeline)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=100)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False,
                                begin=0, end=2)]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100, by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    return cfg


def test_upernet_finetune_loads_everything_trains_and_scores(swin_export, demo_world,
                                                             tmp_path):
    cfg = tiny_seg_cfg(demo_world, swin_export)
    runner = build_runner(CFG, cfg, tmp_path, f'checkpoint={swin_export["export"]}')
    runner.train()
    report = load_check(runner).report
    assert report['loaded'] == report['total'] > 0 and report['percent'] == 100.0
    exported = torch.load(swin_export['export'], weights_only=True)['state_dict']
    w = runner.model.backbone.patch_embed.projection.weight.detach()
    assert not torch.equal(w, exported['backbone.patch_embed.projection.weight'])
    metrics = runner.val()
    assert 0.0 <= metrics['mIoU'] <= 100.0, metrics
