# mmpretrain's own SimMIM on a tiny Swin, CPU-sized: the baseline the HVP-MTL step is compared with
# (tools/perf) and the smallest real pre-training run of the stack
# (tests/integration/test_foundation.py).
_base_ = 'mmpretrain::simmim/simmim_swin-base-w6_8xb256-amp-coslr-100e_in1k-192px.py'
custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

img_size = 64
data_root = 'data/demo/simmim/'

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=32, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8]),
        img_size=img_size,
        pad_small_map=True,
        stage_cfgs=dict(block_cfgs=dict(window_size=4))),
    neck=dict(in_channels=32 * 2**3, encoder_stride=32))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.67, 1.0),
         aspect_ratio_range=(3. / 4., 4. / 3.)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='SimMIMMaskGenerator', input_size=img_size, mask_patch_size=32,
         model_patch_size=4, mask_ratio=0.6),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root, data_prefix='',
                 ann_file='', with_label=False, pipeline=train_pipeline))

optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
                     clip_grad=dict(max_norm=5.0))
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0)]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=4)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False, max_keep_ckpts=2))
log_processor = dict(by_epoch=False, window_size=1)
randomness = dict(seed=0, deterministic=False)
