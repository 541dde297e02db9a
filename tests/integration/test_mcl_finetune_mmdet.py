"""MCL transfer: a real tiny MCL pre-training run, exported with
``hvp_to_backbone.py --format mmdet-mcl``, fine-tunes our Mask R-CNN
4conv1fc config (shrunk) for 2 iterations with 100 % of the backbone, FPN and
box-head conv tensors loaded; a missing FPN key stops the run with a listing.
"""
import json

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from tests.helpers.exporter import export_in_process
from tests.helpers.mcl_tiny import tiny_mcl_cfg
from tests.helpers.resume_runs import train
from tests.integration.test_finetune_mmpretrain import ROOT, build_runner

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CFG = (ROOT / 'configs' / 'finetune' / 'mmdet' /
       'mask-rcnn_r50-mcl-pre_fpn-4conv1fc-syncbn_1x_coco.py')
SCALE = (64, 64)
FPN = 16


@pytest.fixture(scope='module')
def mcl_export(demo_world, tmp_path_factory):
    work = tmp_path_factory.mktemp('mcl_pretrain')
    runner = train(tiny_mcl_cfg('r50', work, demo_world / 'pretrain', max_iters=2))
    assert runner.iter == 2
    init_default_scope('mmpretrain')
    out = work / 'detector.pth'
    error, stdout = export_in_process('--format', 'mmdet-mcl', work / 'iter_2.pth', out)
    assert error is None, error
    return dict(path=out, stdout=stdout,
                state=torch.load(out, weights_only=True)['state_dict'])


def tiny_det_cfg(coco_root):
    cfg = Config.fromfile(str(CFG))
    bn = dict(type='BN', requires_grad=True)  # one CPU process: no SyncBN
    model = cfg.model
    model.backbone.update(depth=18, stem_channels=8, base_channels=8, norm_cfg=bn)
    model.neck.update(in_channels=[8, 16, 32, 64], out_channels=FPN, norm_cfg=bn)
    model.rpn_head.update(in_channels=FPN, feat_channels=FPN)
    classes = tuple(c['name'] for c in json.loads(
        (coco_root / 'annotations' / 'instances_train.json').read_text())['categories'])
    roi = model.roi_head
    roi.bbox_roi_extractor.out_channels = FPN
    roi.mask_roi_extractor.out_channels = FPN
    roi.bbox_head.update(in_channels=FPN, conv_out_channels=FPN, fc_out_channels=32,
                         norm_cfg=bn, num_classes=len(classes))
    roi.mask_head.update(in_channels=FPN, conv_out_channels=FPN, num_classes=len(classes))
    model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=64)
    model.train_cfg.rcnn.sampler.num = 32
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='Resize', scale=SCALE, keep_ratio=True),
        dict(type='PackDetInputs')]
    loader = cfg.train_dataloader
    loader.update(batch_size=2, num_workers=0, persistent_workers=False, pin_memory=False)
    loader.dataset.update(data_root=str(coco_root), metainfo=dict(classes=classes),
                          ann_file='annotations/instances_train.json',
                          data_prefix=dict(img='train/'), pipeline=pipeline,
                          filter_cfg=dict(filter_empty_gt=True, min_size=4))
    for key in ('val_dataloader', 'val_evaluator', 'val_cfg', 'test_dataloader',
                'test_evaluator', 'test_cfg'):
        cfg[key] = None
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2)
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0)]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_processor = dict(by_epoch=False)
    return cfg


def _checks(runner):
    return {h.module_name: h for h in runner.hooks
            if type(h).__name__ == 'PretrainedLoadCheckHook'}


def test_mask_rcnn_loads_every_exported_tensor_and_trains(mcl_export, demo_world, tmp_path,
                                                          one_torch_thread):
    exported = mcl_export['state']
    groups = {k.split('.')[0] for k in exported}
    assert groups == {'backbone', 'neck', 'roi_head'}
    # 4 shared convs, each conv weight + BN (2 parameters + 3 buffers)
    assert sum(k.startswith('roi_head.bbox_head.shared_convs.') for k in exported) == 4 * 6
    runner = build_runner(CFG, tiny_det_cfg(demo_world / 'coco'), tmp_path,
                          f'checkpoint={mcl_export["path"]}')
    runner.train()
    checks = _checks(runner)
    assert set(checks) == {'backbone', 'neck', 'roi_head'}
    loaded = 0
    for name, check in checks.items():
        report = check.report
        assert report['percent'] == 100.0 and report['loaded'] == report['total'] > 0, name
        assert not report['unused'], (name, report['unused'])
        loaded += report['total']
    assert loaded == len(exported)  # 100 % of the file's tensors went somewhere
    exempt = checks['roi_head'].report['exempt']
    assert exempt and all(k.startswith(('bbox_head.shared_fcs', 'bbox_head.fc_', 'mask_head.'))
                          for k in exempt)
    init_default_scope('mmpretrain')


def test_missing_neck_key_stops_the_run_with_a_listing(mcl_export, demo_world, tmp_path):
    ckpt = torch.load(mcl_export['path'], weights_only=True)
    ckpt['state_dict'].pop('neck.lateral_convs.1.conv.weight')
    bad = tmp_path / 'no_lateral1.pth'
    torch.save(ckpt, bad)
    runner = build_runner(CFG, tiny_det_cfg(demo_world / 'coco'), tmp_path / 'work',
                          f'checkpoint={bad}')
    with pytest.raises(RuntimeError, match=r'model\.neck[\s\S]*1 of \d+ tensors are missing'
                                           r'[\s\S]*lateral_convs: 1 keys '
                                           r'\(lateral_convs\.1\.conv\.weight\)'):
        runner.train()
    init_default_scope('mmpretrain')


def test_default_export_is_the_online_encoder_as_the_official_converter(mcl_export):
    """``--weights auto`` takes MCL's online encoder (official ``encoder_q``), not the momentum
    encoder, for the backbone, the FPN and the head convs; the report says so."""
    full = torch.load(mcl_export['path'].parent / 'iter_2.pth', map_location='cpu',
                      weights_only=True)['state_dict']
    sources = (('backbone.', 'backbone.'), ('neck.', 'neck.'),
               ('roi_head.bbox_head.shared_convs.', 'cell_head.convs.'))
    differs = 0
    for key, value in mcl_export['state'].items():
        prefix, src = next((p, s) for p, s in sources if key.startswith(p))
        name = src + key[len(prefix):]
        assert torch.equal(value, full[name]), key
        differs += not torch.equal(value, full['teacher.' + name])
    assert differs > 0, 'online and momentum encoders are identical: the test proves nothing'
    assert 'Exported student backbone' in mcl_export['stdout']


def test_exporting_a_checkpoint_without_mcl_parts_names_what_is_missing(mcl_export, tmp_path):
    """A backbone-only algorithm (no FPN / cell head) is refused with the missing prefix."""
    ckpt = torch.load(mcl_export['path'].parent / 'iter_2.pth', map_location='cpu',
                      weights_only=True)
    ckpt['state_dict'] = {k: v for k, v in ckpt['state_dict'].items()
                          if k.startswith(('backbone.', 'teacher.backbone.', 'teacher.steps'))}
    src = tmp_path / 'backbone_only.pth'
    torch.save(ckpt, src)
    error, _ = export_in_process('--format', 'mmdet-mcl', src, tmp_path / 'out.pth')
    assert error and 'no teacher neck (no "teacher.neck.*" key)' in error, error
    assert not (tmp_path / 'out.pth').exists()
    error, _ = export_in_process('--format', 'mmdet-mcl', '--weights', 'student', src,
                                 tmp_path / 'out.pth')
    assert error and 'no student neck (no "neck.*" key)' in error, error
