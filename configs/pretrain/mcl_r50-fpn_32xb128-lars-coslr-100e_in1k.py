# MCL pre-training of ResNet-50 + FPN on ImageNet-1k (arXiv 2304.02010; official GuoQiushan/MCL
# configs/selfsup/MCL/MCL.py): 8 views per image, montage levels r = 1, 2, 4, 8 with 128/32/8/4
# images per GPU, 32 GPUs x 128 = 4096, LARS lr 16.0 wd 1e-5 (BN and biases excluded from decay and
# adaptation), 100 epochs, 3127 linear warm-up iterations, cosine, SyncBN, fp16, gradient clip 500,
# EMA momentum 0.99 -> 1.0 (cosine over the run's iterations). docs/MCL.md
_base_ = './_base_/pretrain_runtime.py'
custom_imports = dict(imports=['hvp_mtl', 'mmdet.models'], allow_failed_imports=False)

img_size = 224
fpn_channels = 256
# SyncBN in every BatchNorm of the network (backbone, FPN, head convs and MLPs, predictors; the
# momentum encoder copies them). Not `sync_bn = 'torch'`: it cannot convert the momentum encoder,
# whose weights are buffers.
norm_cfg = dict(type='SyncBN')

model = dict(
    type='MCL',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True,
        non_blocking=True),
    backbone=dict(type='ResNet', depth=50, out_indices=(0, 1, 2, 3), zero_init_residual=False,
                  norm_cfg=norm_cfg),
    neck=dict(type='mmdet.FPN', in_channels=[256, 512, 1024, 2048], out_channels=fpn_channels,
              num_outs=4, norm_cfg=norm_cfg),
    # 4 x (conv3x3 + BN + ReLU) per 7x7 cell, avg-pool, MLP 256 -> 2048 (BN, ReLU) -> 256, BN1d
    cell_head=dict(type='MCLCellHead', in_channels=fpn_channels, num_convs=4,
                   cell_size=img_size // 32, hidden_channels=2048, out_channels=256,
                   norm_cfg=norm_cfg, mlp_norm_cfg=norm_cfg),
    predictors=dict(type='MCLPredictors', num_levels=4, in_channels=256, hidden_channels=2048,
                    out_channels=256, norm_cfg=norm_cfg),
    loss=dict(type='MultiLevelContrastiveLoss', level_weights=[1 / 2, 1 / 4, 1 / 8, 1 / 8],
              temperature=1.0),
    ratios=[1, 2, 4, 8],
    batch_divisors=[1, 4, 16, 32],  # 128 -> [128, 32, 8, 4] images per level and GPU
    base_momentum=0.99,
    end_momentum=1.0)

# data: views 0-3 with BYOL's first augmentation set (blur 1.0, no solarize), views 4-7 with the
# second (blur 0.1, solarize 0.2); query branch = views 0-3, key branch = views 4-7
_color = [
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.2, 1.0),
         interpolation='bicubic', backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply', prob=0.8,
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.2,
                          hue=0.1)]),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
]
view_pipeline1 = _color + [
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=1.0),
    dict(type='Solarize', thr=128, prob=0.0),
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
    batch_size=128, num_workers=8, persistent_workers=True, pin_memory=True, drop_last=True,
    sampler=dict(type='ResumableDefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageNet', data_root='data/imagenet/', split='train',
                 pipeline=train_pipeline))

# optimisation: LARS, BN and biases out of weight decay and LARS adaptation, fp16, clip 500
optim_wrapper = dict(
    type='GuardedAmpOptimWrapper', dtype='float16', loss_scale='dynamic',
    optimizer=dict(type='LARS', lr=16.0, momentum=0.9, weight_decay=1e-5),
    clip_grad=dict(max_norm=500.0),
    paramwise_cfg=dict(custom_keys={
        'bn': dict(decay_mult=0, lars_exclude=True),
        'bias': dict(decay_mult=0, lars_exclude=True),
        'downsample.1': dict(decay_mult=0, lars_exclude=True)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=False, begin=0, end=3127),
    dict(type='CosineAnnealingLR', T_max=100, eta_min=1e-4, by_epoch=True, begin=0, end=100,
         convert_to_iter_based=True),
]
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=100)
default_hooks = dict(
    checkpoint=dict(_delete_=True, type='AtomicCheckpointHook', by_epoch=True, interval=4,
                    max_keep_ckpts=3),
    resume_state=dict(type='ResumeStateHook'),  # RNG states + sampler position: exact resume
    # EMA step of the momentum encoder after each optimizer step (required)
    teacher_and_prototypes=dict(type='TeacherAndPrototypesHook'),
    logger=dict(type='LoggerHook', interval=50))
# collapse monitor: RankMe / top-5 share of the online encoder's pooled C5 on 256 fixed images
custom_hooks = [dict(type='EffectiveBatchHook', paper_batch_size=4096),
                dict(type='CollapseMonitorHook', interval=1000)]
# every student parameter is used each step; the momentum encoder is buffers kept per rank
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=False,
                         broadcast_buffers=False)
auto_scale_lr = dict(base_batch_size=4096)
