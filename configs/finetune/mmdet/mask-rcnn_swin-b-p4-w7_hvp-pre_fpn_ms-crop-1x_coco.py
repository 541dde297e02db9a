# Mask R-CNN with an HVP-MTL Swin-B backbone on COCO (arXiv 2310.07510, Table 3:
# 47.9 box AP): 1x schedule (12 epochs, lr steps at 8 and 11), batch 16
# (8 GPUs x 2 images), AdamW, and the Swin multi-scale training recipe
# (480-800 multi-scale resize with the DETR random crop) of mmdet's Swin config.
#
# The backbone is mmpretrain's SwinTransformer (scoped type): it takes the
# exported mmpretrain-layout keys as they are. mmdet's own SwinTransformer with
# convert_weights=True would silently load nothing from such a file.
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'

custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

# Exported by tools/model_converters/hvp_to_backbone.py; override with
# --cfg-options checkpoint=PATH (or model.backbone.init_cfg.checkpoint=PATH).
checkpoint = 'work_dirs/hvp_swin-b/backbone.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.SwinTransformer',
        arch='base',
        img_size=224,
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        pad_small_map=True,
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
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

# AdamW with layer-wise lr decay over the Swin blocks (neck and heads at the
# full lr); no weight decay on norms, biases and position tables.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    constructor='mmpretrain.BackboneLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True,
        layer_decay_rate=0.9,
        custom_keys={
            '.norm': dict(decay_mult=0.0),
            '.bias': dict(decay_mult=0.0),
            '.absolute_pos_embed': dict(decay_mult=0.0),
            '.relative_position_bias_table': dict(decay_mult=0.0)
        }))

# Stops the run unless every backbone tensor is loaded from `checkpoint`.
# HVP-MTL pre-training reads only the last stage (out_indices=(3, )), so the
# output norms of stages 0-2 are new here, like the FPN; if the checkpoint has
# them they must load like every other key.
custom_hooks = [
    dict(
        type='mmpretrain.PretrainedLoadCheckHook',
        config_checkpoint=checkpoint,
        ignore_missing=[r'^norm[0-2]\.'])
]
