"""COCO-style Mask R-CNN fine-tuning through mmdet from a real HVP-MTL export.

Our Mask R-CNN config (Swin backbone as ``mmpretrain.SwinTransformer``,
layer-decay constructor and load check from this package) is shrunk to the
tiny pre-trained Swin and the demo world's ``coco/`` set, built as
``tools/train.py`` builds it, trained 2 iterations and scored by mmdet's own
``CocoMetric`` (bbox and segm AP).
"""
import json

import pytest
import torch
from mmengine.config import Config

from tests.integration.test_finetune_mmpretrain import ROOT, build_runner, load_check
from tests.test_apis.test_export import swin_export  # noqa: F401  (session fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CFG = (ROOT / 'configs' / 'finetune' / 'mmdet' /
       'mask-rcnn_swin-b-p4-w7_hvp-pre_fpn_ms-crop-1x_coco.py')
SCALE = (96, 96)


def tiny_det_cfg(coco_root, export):
    cfg = Config.fromfile(str(CFG))
    pre = export['cfg'].model.backbone
    classes = tuple(c['name'] for c in json.loads(
        (coco_root / 'annotations' / 'instances_train.json').read_text())['categories'])
    dims = pre.arch['embed_dims']
    cfg.model.backbone.update(arch=pre.arch, window_size=pre.window_size, img_size=SCALE[0])
    cfg.model.neck.update(in_channels=[dims, dims * 2, dims * 4, dims * 8], out_channels=32)
    cfg.model.rpn_head.feat_channels = 32
    cfg.model.rpn_head.in_channels = 32
    roi = cfg.model.roi_head
    roi.bbox_roi_extractor.out_channels = 32
    roi.mask_roi_extractor.out_channels = 32
    roi.bbox_head.update(in_channels=32, fc_out_channels=64, num_classes=len(classes))
    roi.mask_head.update(in_channels=32, conv_out_channels=32, num_classes=len(classes))
    # few proposals: Mask R-CNN on CPU
    cfg.model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=64)
    cfg.model.train_cfg.rcnn.sampler.num = 32
    cfg.model.test_cfg.rpn.update(nms_pre=200, max_per_img=64)
    cfg.model.test_cfg.rcnn.max_per_img = 20

    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='RandomChoiceResize', scales=[(80, 80), SCALE], keep_ratio=True),
        dict(type='PackDetInputs')]
    test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=SCALE, keep_ratio=True),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                              'scale_factor'))]
    for split, loader, pipeline in (('train', cfg.train_dataloader, train_pipeline),
                                    ('val', cfg.val_dataloader, test_pipeline)):
        loader.update(batch_size=2, num_workers=0, persistent_workers=False, pin_memory=False)
        loader.dataset.update(data_root=str(coco_root), metainfo=dict(classes=classes),
                              ann_file=f'annotations/instances_{split}.json',
                              data_prefix=dict(img=f'{split}/'), pipeline=pipeline)
    cfg.train_dataloader.dataset.filter_cfg = dict(filter_empty_gt=True, min_size=4)
    cfg.val_evaluator.ann_file = str(coco_root / 'annotations' / 'instances_val.json')
    cfg.test_dataloader, cfg.test_evaluator = cfg.val_dataloader, cfg.val_evaluator
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=100)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False,
                                begin=0, end=2)]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_processor = dict(by_epoch=False)
    return cfg


def test_mask_rcnn_finetune_loads_everything_trains_and_scores(swin_export, demo_world,
                                                                 tmp_path):
    cfg = tiny_det_cfg(demo_world / 'coco', swin_export)
    runner = build_runner(CFG, cfg, tmp_path, f'checkpoint={swin_export["export"]}')
    runner.train()
    report = load_check(runner).report
    assert report['loaded'] == report['total'] > 0 and report['percent'] == 100.0
    # norm0-2 are new in detection (pre-training reads the last stage only);
    # the relative_position_index buffers are rebuilt by the model
    assert {k for k in report['exempt'] if 'relative_position_index' not in k} == {
        f'norm{i}.{p}' for i in range(3) for p in ('weight', 'bias')}
    exported = torch.load(swin_export['export'], weights_only=True)['state_dict']
    blocks = runner.model.backbone.stages[0].blocks[0]
    assert not torch.equal(blocks.ffn.layers[1].weight.detach(),
                           exported['backbone.stages.0.blocks.0.ffn.layers.1.weight'])
    metrics = runner.val()
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert key in metrics and -1.0 <= metrics[key] <= 1.0, metrics


def test_mmdet_run_stops_on_a_missing_stage(swin_export, demo_world, tmp_path):
    ckpt = torch.load(swin_export['export'], weights_only=True)
    ckpt['state_dict'] = {k: v for k, v in ckpt['state_dict'].items()
                          if not k.startswith('backbone.stages.2.')}
    bad = tmp_path / 'no_stage2.pth'
    torch.save(ckpt, bad)
    cfg = tiny_det_cfg(demo_world / 'coco', swin_export)
    runner = build_runner(CFG, cfg, tmp_path / 'work', f'checkpoint={bad}')
    with pytest.raises(RuntimeError, match=r'missing from the file[\s\S]*stages\.2:'):
        runner.train()
