# A peer of the demo's HVP-MTL pre-training (docs/RESULTS.md, the evidence protocol's arms):
# mmpretrain's own SwAV, its registered algorithm, multi-crop config and SwAVHook inherited, on the
# demo world with the demo's small Swin in place of the ResNet-50. What the demo changes for every
# pre-training arm: the backbone (that of configs/demo/hvp_swin-demo_pretrain.py), 64-px crops (2 of
# 64 px and 6 of 32 px, SwAV's 224/96 ratio rounded to Swin's stride), the data (the demo's
# pre-training images, labels unused), fp32 AdamW at the HVP-MTL demo's lr, batch and iteration
# schedule (LARS at lr 0.6 is the ResNet recipe), and the sizes of the HVP-MTL demo's SwAV task:
# 32-dim codes, 32 prototypes, no queue at batch 32, prototypes frozen for the first 1/15 of the
# run (demo/run_demo.py sets it). SwAV's own augmentations stay, hue 0 (mmcv 2.1's hue shift
# overflows uint8 under numpy 2, as in the HVP-MTL demo config), as do its loss, epsilon and
# temperature.
_base_ = 'mmpretrain::swav/swav_resnet50_8xb32-mcrop-coslr-200e_in1k-224px-96px.py'
custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

img_size, small_size = 64, 32
num_crops = [2, 6]
data_root = 'data/demo/default/pretrain/'
max_iters = 300
feat_dim, num_prototypes = 32, 32

model = dict(
    backbone=dict(_delete_=True, type='SwinTransformer',
                  arch=dict(embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8]),
                  img_size=img_size, drop_path_rate=0., pad_small_map=True,
                  stage_cfgs=dict(block_cfgs=dict(window_size=4))),
    neck=dict(in_channels=256, hid_channels=256, out_channels=feat_dim),
    head=dict(loss=dict(feat_dim=feat_dim, num_prototypes=num_prototypes, num_crops=num_crops)))


# SwAV's colour distortion, blur and flip, after each crop
distortions = [
    dict(type='RandomApply', prob=0.8, transforms=[
        dict(type='ColorJitter', brightness=0.8, contrast=0.8, saturation=0.8, hue=0.)]),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.5),
    dict(type='RandomFlip', prob=0.5),
]
view_pipeline1 = [dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.14, 1.),
                       backend='pillow')] + distortions
view_pipeline2 = [dict(type='RandomResizedCrop', scale=small_size,
                       crop_ratio_range=(0.05, 0.14), backend='pillow')] + distortions
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=num_crops,
         transforms=[view_pipeline1, view_pipeline2]),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True,
    dataset=dict(_delete_=True, type='TencentMLImages', data_root=data_root, ann_file='train.txt',
                 dictionary_file='dictionary_and_semantic_hierarchy.txt', data_prefix='images/',
                 pipeline=train_pipeline))

# no paramwise_cfg, as SwAV's own config (weight decay on every parameter): SwAVNeck registers
# its norm layer twice (as neck.norm and inside neck.projection_neck), which a paramwise config
# puts into two parameter groups (torch refuses)
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', T_max=max_iters - 30, eta_min=1e-5, by_epoch=False, begin=30,
         end=max_iters),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
custom_hooks = [dict(type='SwAVHook', priority='VERY_HIGH', batch_size=32, epoch_queue_starts=0,
                     crops_for_assign=[0, 1], feat_dim=feat_dim, queue_length=0,
                     frozen_layers_cfg=dict(prototypes=20))]
log_processor = dict(by_epoch=False, window_size=10)
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=32)
