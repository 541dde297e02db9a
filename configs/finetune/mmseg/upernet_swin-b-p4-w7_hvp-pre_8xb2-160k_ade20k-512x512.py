# UperNet with an HVP-MTL Swin-B backbone on ADE20K (arXiv 2310.07510, Table 4:
# 50.6 mIoU): 160k iterations, 512x512 crops, batch 16 (8 GPUs x 2 images),
# following the BEiT protocol the paper cites: AdamW with layer-wise lr decay,
# 1500-iteration linear warm-up, then poly decay.
#
# The backbone is mmpretrain's SwinTransformer (scoped type): it takes the
# exported mmpretrain-layout keys as they are.
_base_ = 'mmseg::swin/swin-base-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'  # noqa

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
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))

# AdamW with layer-wise lr decay over the Swin blocks (decode heads at the
# full lr); no weight decay on norms, biases and position tables.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='mmpretrain.BackboneLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
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

# lr 1e-4 is stated for 8 x 2 = 16 images (`--auto-scale-lr` rescales it).
auto_scale_lr = dict(base_batch_size=16)
