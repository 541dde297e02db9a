"""Tiny MCL configs for CPU tests, built from the shipped MCL configs.

Only what must shrink for a 2-core CPU shrinks: backbone and head widths (a
ResNet-18 with 8 base channels for the R50 config, a 4-block Swin for the
Swin-B config), 64-px views (cell size 64 / 32 = 2, so the montage levels
r = 1, 2, 4, 8 still land one tile per cell on P5..P2), 4 images, an
iteration loop and a plain (non-AMP) optimizer wrapper.
"""
import pathlib

from mmengine.config import Config

from tests.helpers.tiny_configs import _resize_pipeline

ROOT = pathlib.Path(__file__).resolve().parents[2]
R50_CFG = ROOT / 'configs' / 'pretrain' / 'mcl_r50-fpn_32xb128-lars-coslr-100e_in1k.py'
SWIN_CFG = ROOT / 'configs' / 'pretrain' / 'mcl_swin-b-fpn_32xb32-adamw-coslr-30e_ml-images.py'
IMG_SIZE = 64
FPN = 16


def tiny_mcl_cfg(backbone, work_dir, data_root, max_iters=3, batch_size=4):
    """A CPU-sized MCL config (``backbone``: ``'r50'`` or ``'swin'``)."""
    cfg = Config.fromfile(str(R50_CFG if backbone == 'r50' else SWIN_CFG))
    model = cfg.model
    if backbone == 'r50':
        model.backbone.update(depth=18, stem_channels=8, base_channels=8)
        model.neck.in_channels = [8, 16, 32, 64]
        cfg.train_dataloader.dataset = dict(
            type='CustomDataset', data_root=str(data_root), data_prefix='images',
            ann_file='', with_label=False, pipeline=cfg.train_dataloader.dataset.pipeline)
    else:
        model.backbone.update(arch=dict(embed_dims=16, depths=[1, 1, 1, 1],
                                        num_heads=[1, 2, 2, 4]),
                              img_size=IMG_SIZE, window_size=2, drop_path_rate=0.)
        model.neck.in_channels = [16, 32, 64, 128]
        cfg.train_dataloader.dataset.data_root = str(data_root)
    model.neck.out_channels = FPN
    model.cell_head.update(in_channels=FPN, cell_size=IMG_SIZE // 32, hidden_channels=32,
                           out_channels=16)
    model.predictors.update(in_channels=16, hidden_channels=32, out_channels=16)
    _resize_pipeline(cfg.train_dataloader.dataset.pipeline, IMG_SIZE, 4)
    cfg.train_dataloader.update(batch_size=batch_size, num_workers=0, persistent_workers=False,
                                pin_memory=False,
                                sampler=dict(type='ResumableInfiniteSampler', shuffle=True))
    cfg.optim_wrapper = dict(type='OptimWrapper', optimizer=cfg.optim_wrapper.optimizer,
                             clip_grad=cfg.optim_wrapper.clip_grad,
                             paramwise_cfg=cfg.optim_wrapper.paramwise_cfg)
    if backbone == 'r50':
        cfg.optim_wrapper.optimizer.lr = 0.2
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0)]
    cfg.train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=max_iters)
    cfg.default_hooks.checkpoint = dict(type='AtomicCheckpointHook', by_epoch=False,
                                        interval=2, max_keep_ckpts=3)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_processor = dict(by_epoch=False, window_size=1)
    cfg.custom_hooks = []
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    cfg.randomness = dict(seed=0, deterministic=True)
    cfg.work_dir = str(work_dir)
    return cfg
