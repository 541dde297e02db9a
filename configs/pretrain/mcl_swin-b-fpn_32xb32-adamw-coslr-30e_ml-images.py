# MCL pre-training of Swin-B + FPN on the project's data (Tencent ML-Images), the MCL method of
# mcl_r50-fpn_32xb128-lars-coslr-100e_in1k.py with the optimisation of HVP-MTL's Swin-B recipe
# (hvp_swin-b.py: AdamW lr 1e-4 wd 0.05 at a total batch of 1024, 5-epoch warm-up, cosine,
# 30 epochs, bf16, clip 5): LARS is a ResNet recipe. 32 GPUs x 32 images; montage levels
# [32, 8, 2, 1] per GPU. Swin's stages (strides 4..32) give the same 56/28/14/7 maps as ResNet
# at 224 px. docs/MCL.md
_base_ = './mcl_r50-fpn_32xb128-lars-coslr-100e_in1k.py'

model = dict(
    backbone=dict(_delete_=True, type='SwinTransformer', arch='base', img_size=224,
                  drop_path_rate=0.1, out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[128, 256, 512, 1024]))

train_dataloader = dict(
    batch_size=32,
    dataset=dict(_delete_=True, type='TencentMLImages', data_root='data/ml-images/',
                 ann_file='train.txt', dictionary_file='dictionary_and_semantic_hierarchy.txt',
                 data_prefix='images/', pipeline={{_base_.train_pipeline}}))

optim_wrapper = dict(
    _delete_=True,
    type='GuardedAmpOptimWrapper', dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=5.0),
    paramwise_cfg=dict(custom_keys={
        'norm': dict(decay_mult=0.), 'bn': dict(decay_mult=0.), 'bias': dict(decay_mult=0.),
        'absolute_pos_embed': dict(decay_mult=0.),
        'relative_position_bias_table': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=25, eta_min=1e-7, by_epoch=True, begin=5, end=30,
         convert_to_iter_based=True),
]
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=30)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=1000))
# collapse monitor: RankMe / top-5 share of the online encoder's pooled last stage, 256 images
custom_hooks = [dict(type='EffectiveBatchHook', paper_batch_size=1024),
                dict(type='CollapseMonitorHook', interval=1000)]
auto_scale_lr = dict(base_batch_size=1024)
