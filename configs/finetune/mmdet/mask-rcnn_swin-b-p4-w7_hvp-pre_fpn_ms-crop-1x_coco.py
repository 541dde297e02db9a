# Mask R-CNN with an HVP-MTL Swin-B backbone on COCO (arXiv 2310.07510, Table 3:
# 47.9 box AP): 1x schedule (12 epochs, lr steps at 8 and 11), batch 16
# (8 GPUs x 2 images), AdamW, and the Swin multi-scale training recipe
# (480-800 multi-scale resize with the DETR random crop) of mmdet's Swin config.
#
# Backbone, optimizer and load check: ../_base_/hvp-swin-b_downstream.py.
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
    '../_base_/hvp-swin-b_downstream.py',
]

custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

model = dict(
    backbone=dict(_delete_=True, **_base_.hvp_swin_b_backbone),
    neck=dict(in_channels=[128, 256, 512, 1024]))

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1)
]

# the shared AdamW with layer decay replaces the base's optimizer and parameter groups
optim_wrapper = dict(
    _base_.layer_decay_optim_wrapper,
    optimizer=dict(_delete_=True, **_base_.layer_decay_optim_wrapper.optimizer),
    paramwise_cfg=dict(_delete_=True, **_base_.layer_decay_optim_wrapper.paramwise_cfg))
