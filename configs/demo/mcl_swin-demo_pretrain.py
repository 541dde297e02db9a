# The demo's MCL pre-training (issue 16's demo option): the MCL Swin + FPN config
# (configs/pretrain/mcl_swin-b-fpn_32xb32-adamw-coslr-30e_ml-images.py) shrunk like the demo's
# HVP-MTL pre-training (hvp_swin-demo_pretrain.py): the same small Swin (4 stages of 2 blocks,
# widths 32-256, window 4, 64-px images), so the demo's cls/det/seg fine-tune configs load its
# exported backbone unchanged and the columns compare backbones under one fine-tune recipe. Only
# sizes change: a 64-channel FPN, cell head and predictors (hidden 256), BN instead of SyncBN
# (one process), fp32 AdamW at the demo's lr for batch 32. MCL's method is the real one: 8 views,
# montage levels r = 1, 2, 4, 8 (64-px views: cell size 2, one tile per P5..P2 cell), the
# multi-level contrastive loss (T = 1, level weights 1/2, 1/4, 1/8, 1/8) and the momentum encoder
# (EMA 0.99 -> 1.0). demo/run_demo.py --method mcl|both sets data_root, the iterations and the
# schedule length for the chosen --size. docs/MCL.md
_base_ = '../pretrain/mcl_swin-b-fpn_32xb32-adamw-coslr-30e_ml-images.py'
custom_imports = dict(imports=['hvp_mtl', 'mmdet.models'], allow_failed_imports=False)

img_size = 64
data_root = 'data/demo/default/pretrain/'
max_iters = 300
fpn_channels = 64
bn, bn1d = dict(type='BN'), dict(type='BN1d')

model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=32, depths=[2, 2, 2, 2],
                            num_heads=[1, 2, 4, 8]),
                  img_size=img_size, window_size=4, drop_path_rate=0., pad_small_map=True),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=fpn_channels, norm_cfg=bn),
    cell_head=dict(in_channels=fpn_channels, cell_size=img_size // 32, hidden_channels=256,
                   out_channels=64, norm_cfg=bn, mlp_norm_cfg=bn1d),
    predictors=dict(in_channels=64, hidden_channels=256, out_channels=64, norm_cfg=bn1d))

_color = [
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.2, 1.0),
         interpolation='bicubic', backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply', prob=0.8,
         # hue=0: mmcv 2.1's adjust_hue overflows uint8 under numpy 2 for negative hue shifts
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.2,
                          hue=0.)]),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
]
view_pipeline1 = _color + [
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=1.0),
]
view_pipeline2 = _color + [
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.1),
    dict(type='Solarize', thr=128, prob=0.2),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=[4, 4], transforms=[view_pipeline1, view_pipeline2]),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True, pin_memory=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))

# CPU: fp32 OptimWrapper; the demo's lr for batch 32 on a few hundred steps
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
                     clip_grad=dict(max_norm=5.0),
                     paramwise_cfg=_base_.optim_wrapper.paramwise_cfg)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', T_max=max_iters - 30, eta_min=1e-5, by_epoch=False, begin=30,
         end=max_iters),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(_delete_=True, type='AtomicCheckpointHook', by_epoch=False,
                    interval=max_iters, max_keep_ckpts=1))
custom_hooks = [dict(type='CollapseMonitorHook', interval=100)]  # RankMe on 256 fixed images
log_processor = dict(by_epoch=False, window_size=10)
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=32)
