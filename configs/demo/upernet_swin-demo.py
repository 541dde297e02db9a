# The demo's mmseg fine-tune:
# configs/finetune/mmseg/upernet_swin-b-p4-w7_hvp-pre_8xb2-160k_ade20k-512x512.py
# (UperNet + auxiliary FCN head, mmpretrain Swin backbone, AdamW with layer-wise lr decay, the load
# check) on the demo world's ADE20K-layout shape segmentation (background + 6 shapes, label 0 =
# object outlines, ignored by reduce_zero_label as in ADE20K). Deltas for a few CPU minutes: the
# demo's small Swin (window 4, as pre-trained), 64-px crops, 64/32-channel heads, fp32, lr and
# schedule for batch 8. demo/run_demo.py sets data_root, the iterations and the checkpoint.
_base_ = '../finetune/mmseg/upernet_swin-b-p4-w7_hvp-pre_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

data_root = 'data/demo/default/ade/'
crop_size = (64, 64)
max_iters = 400
checkpoint = 'work_dirs/demo/backbone.pth'
metainfo = dict(
    classes=('background', 'circle', 'cross', 'hexagon', 'square', 'star', 'triangle'),
    palette=[[120, 120, 120], [220, 40, 40], [40, 180, 60], [40, 80, 220], [235, 210, 40],
             [200, 50, 200], [40, 200, 210]])
norm_cfg = dict(type='BN', requires_grad=True)  # one process: plain BN

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8]),
        img_size=64, window_size=4, drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    decode_head=dict(in_channels=[32, 64, 128, 256], channels=64, num_classes=7,
                     norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=128, channels=32, num_classes=7, norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(128, 64), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    dataset=dict(_delete_=True, **dataset, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))
val_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    dataset=dict(_delete_=True, **dataset, pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/validation',
                                  seg_map_path='annotations/validation')))
test_dataloader = val_dataloader

# lr 2e-3 and 400 iterations: at 5e-4 and 200 iterations (the first demo recipe) the model still
# predicted background on every pixel for both initialisations (mIoU = IoU(background) / 7 =
# 12.22); tests/integration/test_demo_seg_recipe.py runs this recipe and requires objects
# to be predicted
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=20, end=max_iters, by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
# pre-training reads only the last stage (out_indices=(3,)), so the output norms of stages 0-2
# are new here, as in any SimMIM-style Swin checkpoint
custom_hooks = [dict(type='mmpretrain.PretrainedLoadCheckHook', config_checkpoint=checkpoint,
                     ignore_missing=[r'^norm[0-2]\.'])]
auto_scale_lr = dict(enable=False, base_batch_size=8)
