# A peer of the demo's HVP-MTL pre-training (docs/RESULTS.md, the evidence protocol's arms):
# mmpretrain's own SimMIM, its registered algorithm and its Swin config inherited, on the demo world
# with the demo's small Swin. Only what the demo changes for every pre-training arm changes: the
# backbone size (that of configs/demo/hvp_swin-demo_pretrain.py), 64-px images with 16-px mask
# blocks (as the HVP-MTL demo's masked view), the data (the demo's pre-training images, labels
# unused), fp32 AdamW at the HVP-MTL demo's lr, batch and iteration schedule. SimMIM's own
# augmentation (RandomResizedCrop 0.67-1, flip), mask ratio 0.6, L1 pixel loss and weight-decay
# exemptions stay. demo/run_demo.py sets data_root and the schedule length.
_base_ = 'mmpretrain::simmim/simmim_swin-base-w6_16xb128-amp-coslr-100e_in1k-192px.py'
custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

img_size = 64
data_root = 'data/demo/default/pretrain/'
max_iters = 300

model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=32, depths=[2, 2, 2, 2],
                            num_heads=[1, 2, 4, 8]),
                  img_size=img_size, drop_path_rate=0., pad_small_map=True,
                  stage_cfgs=dict(block_cfgs=dict(window_size=4))),
    neck=dict(in_channels=32 * 2**3))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.67, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='SimMIMMaskGenerator', input_size=img_size, mask_patch_size=16, model_patch_size=4,
         mask_ratio=0.6),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True,
    dataset=dict(_delete_=True, type='TencentMLImages', data_root=data_root, ann_file='train.txt',
                 dictionary_file='dictionary_and_semantic_hierarchy.txt', data_prefix='images/',
                 pipeline=train_pipeline))

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=1e-3))  # fp32: no AMP on a CPU
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', T_max=max_iters - 30, eta_min=1e-5, by_epoch=False, begin=30,
         end=max_iters),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False, window_size=10)
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=32)
