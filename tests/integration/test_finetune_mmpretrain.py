"""ImageNet-style fine-tuning through mmpretrain from a real HVP-MTL export.

Tiny Swin pre-trained for 2 iterations on the demo world, exported, then our
fine-tuning config (shrunk to that backbone and the demo world's 6-class
``cls/`` set) is run by mmpretrain's runner as ``tools/train.py`` builds it:
the load check must report 100 % of the backbone loaded, training runs, and
mmpretrain's ``Accuracy`` gives a top-1. Broken checkpoints stop the run.
"""
import importlib.util
import pathlib

import pytest
import torch
from mmengine.config import Config

from tests.helpers.tiny_configs import TINY_SWIN_ARCH, TINY_VIT_ARCH
from tests.test_apis.test_export import swin_export, vit_export  # noqa: F401  (session fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = ROOT / 'configs' / 'finetune' / 'mmpretrain'
SWIN_CFG = CONFIGS / 'swin-base-w7_hvp-pre_8xb256-coslr-100e_in1k.py'
VIT_CFG = CONFIGS / 'vit-base-p16_hvp-pre_8xb128-coslr-100e_in1k.py'
IMG = 64


def train_tool():
    """``tools/train.py`` as a module (its argument merge and runner builder)."""
    spec = importlib.util.spec_from_file_location('hvp_train_tool', ROOT / 'tools' / 'train.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_runner(cfg_path, cfg, work_dir, *cfg_options):
    """Build the runner exactly as ``tools/train.py CONFIG --work-dir W --cfg-options ...``."""
    tool = train_tool()
    args = tool.parse_args([str(cfg_path), '--work-dir', str(work_dir),
                            *(['--cfg-options', *cfg_options] if cfg_options else [])])
    return tool.build_runner(tool.merge_args(cfg, args))


def load_check(runner):
    return next(h for h in runner.hooks if type(h).__name__ == 'PretrainedLoadCheckHook')


def tiny_cls_cfg(cfg_path, cls_root, backbone_update, in_channels, checkpoint=None):
    """Our config, shrunk: tiny backbone, demo ``cls/`` data, 2 iterations, CPU."""
    cfg = Config.fromfile(str(cfg_path))
    classes = (cls_root / 'classes.txt').read_text().split()
    cfg.model.backbone.update(backbone_update)
    if checkpoint is not None:
        cfg.model.backbone.init_cfg.checkpoint = str(checkpoint)
    cfg.model.head.update(num_classes=len(classes), in_channels=in_channels)
    cfg.data_preprocessor.num_classes = len(classes)
    for split, loader in (('train', cfg.train_dataloader), ('val', cfg.val_dataloader)):
        pipeline = loader.dataset.pipeline
        for t in pipeline:
            if t['type'] == 'RandomResizedCrop':
                t['scale'] = IMG
            elif t['type'] == 'ResizeEdge':
                t['scale'] = IMG
            elif t['type'] == 'CenterCrop':
                t['crop_size'] = IMG
        loader.update(batch_size=4, num_workers=0, persistent_workers=False, pin_memory=False)
        loader.dataset = dict(type='CustomDataset', data_root=str(cls_root),
                              ann_file=f'meta/{split}.txt', data_prefix=split,
                              classes=classes, pipeline=pipeline)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.optim_wrapper.type = 'OptimWrapper'  # the recipe's AMP needs a GPU
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False,
                                begin=0, end=2)]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=100)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_processor = dict(by_epoch=False)
    return cfg


def swin_update(export):
    pre = export['cfg'].model.backbone
    return dict(arch=pre.arch, img_size=IMG,
                stage_cfgs=dict(block_cfgs=dict(window_size=pre.window_size)))


def test_swin_finetune_loads_everything_trains_and_scores(swin_export, demo_world, tmp_path):
    assert swin_export['cfg'].model.backbone.arch == TINY_SWIN_ARCH
    cfg = tiny_cls_cfg(SWIN_CFG, demo_world / 'cls', swin_update(swin_export),
                       in_channels=TINY_SWIN_ARCH['embed_dims'] * 8)
    # point the config at the export through its top-level variable, as
    # `--cfg-options checkpoint=PATH` does
    runner = build_runner(SWIN_CFG, cfg, tmp_path, f'checkpoint={swin_export["export"]}')
    runner.train()
    report = load_check(runner).report
    assert report['checkpoint'] == str(swin_export['export'])
    assert report['loaded'] == report['total'] > 0 and report['percent'] == 100.0
    # the backbone really left its pre-trained point (2 optimizer steps)
    exported = torch.load(swin_export['export'], weights_only=True)['state_dict']
    w = runner.model.backbone.patch_embed.projection.weight.detach()
    assert not torch.equal(w, exported['backbone.patch_embed.projection.weight'])
    metrics = runner.val()
    top1 = metrics['accuracy/top1']
    assert 0.0 <= top1 <= 100.0


def test_vit_finetune_loads_everything(vit_export, demo_world, tmp_path):
    pre = vit_export['cfg'].model.backbone
    assert pre.arch == TINY_VIT_ARCH
    cfg = tiny_cls_cfg(VIT_CFG, demo_world / 'cls', dict(arch=pre.arch, img_size=IMG),
                       in_channels=TINY_VIT_ARCH['embed_dims'], checkpoint=vit_export['export'])
    runner = build_runner(VIT_CFG, cfg, tmp_path)
    runner.train()
    report = load_check(runner).report
    assert report['loaded'] == report['total'] > 0
    assert report['exempt'] == ['ln2.bias', 'ln2.weight']  # new pooled-feature norm
    assert 0.0 <= runner.val()['accuracy/top1'] <= 100.0


def _broken(export, tmp_path, name, edit):
    ckpt = torch.load(export, weights_only=True)
    ckpt['state_dict'] = edit(ckpt['state_dict'])
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize('case, edit, expected', [
    ('wrong_prefix', lambda sd: {'encoder.' + k[len('backbone.'):]: v for k, v in sd.items()},
     ["no key of", "starts with the prefix 'backbone.'", "'encoder.'"]),
    ('double_prefix', lambda sd: {'backbone.' + k: v for k, v in sd.items()},
     ['tensors are missing from the file', 'stages.0:', 'stages.3:', 'patch_embed:']),
    ('missing_stage', lambda sd: {k: v for k, v in sd.items()
                                  if not k.startswith('backbone.stages.3.')},
     ['tensors are missing from the file', 'stages.3:', 'stages.3.blocks.0.']),
])
def test_broken_checkpoint_stops_the_run_with_a_listing(case, edit, expected, swin_export,
                                                        demo_world, tmp_path):
    bad = _broken(swin_export['export'], tmp_path, f'{case}.pth', edit)
    cfg = tiny_cls_cfg(SWIN_CFG, demo_world / 'cls', swin_update(swin_export),
                       in_channels=TINY_SWIN_ARCH['embed_dims'] * 8, checkpoint=bad)
    runner = build_runner(SWIN_CFG, cfg, tmp_path / 'work')
    with pytest.raises(RuntimeError) as info:
        runner.train()
    message = str(info.value)
    for part in expected:
        assert part in message, message
    if case == 'missing_stage':
        assert 'stages.2:' not in message.split('missing from the file')[1]
    assert runner.iter == 0  # stopped before the first step
