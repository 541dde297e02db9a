# The demo's mmpretrain fine-tune:
# configs/finetune/mmpretrain/swin-tiny-w7_hvp-pre_8xb256-coslr-100e_in1k.py on the demo world's
# 6-class shape classification (ImageNet layout, 64 px), with the demo's small Swin. Deltas for a
# few CPU minutes: the backbone size, 64-px crops, no Mixup/CutMix/RandAugment/RandomErasing
# (regularisers for 100 ImageNet epochs that only slow a few-epoch run down), fp32, lr and schedule
# for batch 32. demo/run_demo.py sets data_root, the epochs and the checkpoint (HVP-MTL init) or
# removes the Pretrained init_cfg and its check hook (random init).
_base_ = '../finetune/mmpretrain/swin-tiny-w7_hvp-pre_8xb256-coslr-100e_in1k.py'
custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

data_root = 'data/demo/default/cls/'
img_size = 64
max_epochs = 4
checkpoint = 'work_dirs/demo/backbone.pth'
classes = ['circle', 'cross', 'hexagon', 'square', 'star', 'triangle']

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8]),
        img_size=img_size, drop_path_rate=0.1, pad_small_map=True,
        stage_cfgs=dict(block_cfgs=dict(window_size=4)),  # as pre-trained
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    head=dict(num_classes=len(classes), in_channels=256),
    train_cfg=dict(_delete_=True))  # no Mixup / CutMix
data_preprocessor = dict(num_classes=len(classes))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.5, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 ann_file='meta/train.txt', data_prefix='train', classes=classes,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64, num_workers=1, persistent_workers=True,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root, ann_file='meta/val.txt',
                 data_prefix='val', classes=classes, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, eta_min=1e-5, by_epoch=True, begin=1,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
custom_hooks = [dict(type='PretrainedLoadCheckHook', config_checkpoint=checkpoint)]
auto_scale_lr = dict(enable=False, base_batch_size=32)
