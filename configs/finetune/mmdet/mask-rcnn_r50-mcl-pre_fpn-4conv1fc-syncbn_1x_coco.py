# Mask R-CNN R50-FPN 1x on COCO from an MCL pre-training (arXiv 2304.02010: 42.5 box AP / 38.3 mask
# AP after 100 epochs on ImageNet): MCL's transfer carries the backbone, the FPN and the 4 convs of
# its cell head into a 4conv1fc box head, with SyncBN in backbone, FPN and box head (the official
# transfer uses Detectron2's coco_R_50_FPN_CONV_1x_moco.yaml). Standard mmdet 1x schedule:
# 12 epochs, SGD lr 0.02 at batch 16, steps at 8 and 11.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

# Exported by tools/model_converters/hvp_to_backbone.py --format mmdet-mcl; override with
# --cfg-options checkpoint=PATH.
checkpoint = 'work_dirs/mcl_r50/detector.pth'
norm_cfg = dict(type='SyncBN', requires_grad=True)

model = dict(
    backbone=dict(
        frozen_stages=-1, norm_cfg=norm_cfg, norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(norm_cfg=norm_cfg,
              init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='neck.')),
    roi_head=dict(
        bbox_head=dict(_delete_=True, type='Shared4Conv1FCBBoxHead', conv_out_channels=256,
                       norm_cfg=norm_cfg, in_channels=256, fc_out_channels=1024,
                       roi_feat_size=7, num_classes=80,
                       bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                       target_stds=[0.1, 0.1, 0.2, 0.2]),
                       reg_class_agnostic=False,
                       loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False,
                                     loss_weight=1.0),
                       loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        # only bbox_head.shared_convs come from the file (prefix 'roi_head.')
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='roi_head.')))

# Stop the run unless every pre-trained tensor is loaded: the backbone, the FPN and the box head's
# shared convs; the box head's fc / classifier / regressor and the mask head are new.
custom_hooks = [
    dict(type='mmpretrain.PretrainedLoadCheckHook', module='backbone',
         config_checkpoint=checkpoint),
    dict(type='mmpretrain.PretrainedLoadCheckHook', module='neck', config_checkpoint=checkpoint),
    dict(type='mmpretrain.PretrainedLoadCheckHook', module='roi_head',
         config_checkpoint=checkpoint,
         ignore_missing=[r'^bbox_head\.(shared_fcs|fc_cls|fc_reg)\.', r'^mask_head\.']),
]
