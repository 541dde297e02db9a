# What the mmdet and mmseg fine-tunes of an HVP-MTL Swin-B share: the backbone loaded from the
# export, AdamW with layer-wise lr decay, and the hook that stops a run unless the backbone loaded.
# A config lists this file after its toolkit's base and takes the blocks by name
# (`_base_.hvp_swin_b_backbone`, `_base_.layer_decay_optim_wrapper`); `checkpoint` and
# `custom_hooks` it inherits as they are.
#
# The backbone is mmpretrain's SwinTransformer (scoped type): it takes the exported
# mmpretrain-layout keys as they are. mmdet's own SwinTransformer with convert_weights=True would
# silently load nothing from such a file.

# Exported by tools/model_converters/hvp_to_backbone.py; override with
# --cfg-options checkpoint=PATH (or model.backbone.init_cfg.checkpoint=PATH).
checkpoint = 'work_dirs/hvp_swin-b/backbone.pth'

hvp_swin_b_backbone = dict(
    type='mmpretrain.SwinTransformer',
    arch='base',
    img_size=224,
    drop_path_rate=0.3,
    out_indices=(0, 1, 2, 3),
    pad_small_map=True,
    init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.'))

# AdamW with layer-wise lr decay over the Swin blocks (neck and heads at the full lr); no weight
# decay on norms, biases and position tables.
layer_decay_optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
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
