# The demo's mmdet fine-tune:
# configs/finetune/mmdet/mask-rcnn_swin-b-p4-w7_hvp-pre_fpn_ms-crop-1x_coco.py
# (Mask R-CNN + FPN, mmpretrain Swin backbone, AdamW with layer-wise lr decay, the load check) on
# the demo world's COCO-format shapes (6 classes, 64-px images shown to the detector at 128 px).
# Deltas for a few CPU minutes: the demo's small Swin (window 4, as pre-trained), a 64-channel FPN
# and heads, fewer proposals and RoI samples, a single-scale resize, fp32, lr and schedule for
# batch 8. demo/run_demo.py sets data_root, the epochs and the checkpoint (or random init).
_base_ = '../finetune/mmdet/mask-rcnn_swin-b-p4-w7_hvp-pre_fpn_ms-crop-1x_coco.py'
custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

data_root = 'data/demo/default/coco/'
scale = (128, 128)
max_epochs = 6
checkpoint = 'work_dirs/demo/backbone.pth'
classes = ('circle', 'cross', 'hexagon', 'square', 'star', 'triangle')
width = 64  # FPN and head channels

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8]),
        img_size=64, window_size=4, drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=256, num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width, num_classes=len(classes))),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=data_root, ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), metainfo=dict(classes=classes),
                 filter_cfg=dict(filter_empty_gt=True, min_size=16), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=data_root, ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), metainfo=dict(classes=classes),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=2e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[max_epochs - 2], gamma=0.1),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
# pre-training reads only the last stage (out_indices=(3,)), so the output norms of stages 0-2
# are new here, as in any SimMIM-style Swin checkpoint
custom_hooks = [dict(type='mmpretrain.PretrainedLoadCheckHook', config_checkpoint=checkpoint,
                     ignore_missing=[r'^norm[0-2]\.'])]
auto_scale_lr = dict(enable=False, base_batch_size=8)
