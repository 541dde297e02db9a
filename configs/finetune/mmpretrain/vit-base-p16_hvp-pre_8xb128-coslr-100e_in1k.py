# ViT-B/16 fine-tuned on ImageNet-1K from an HVP-MTL backbone (arXiv 2310.07510,
# Table 1: 84.2 top-1): 100 epochs at 224 px with mmpretrain's MAE fine-tuning
# recipe (AdamW lr 2e-3 at batch 1024, layer-wise lr decay 0.65, drop path 0.1,
# RandAugment, Mixup 0.8 / CutMix 1.0, label smoothing 0.1, random erasing,
# 5-epoch warm-up then cosine). 8 GPUs x 128 images = 1024.
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py'

custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

# Exported by tools/model_converters/hvp_to_backbone.py; override with
# --cfg-options checkpoint=PATH (or model.backbone.init_cfg.checkpoint=PATH).
checkpoint = 'work_dirs/hvp_vit-b/backbone.pth'

# HVP-MTL pre-trains the ViT with its final norm `ln1` on the patch tokens
# (out_type='featmap'), so it is kept (final_norm=True) and loaded; the
# classifier pools the patch tokens and normalises them with a new `ln2`.
model = dict(
    backbone=dict(
        final_norm=True,
        out_type='avg_featmap',
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))

# Stops the run unless every backbone tensor is loaded from `checkpoint`;
# `ln2` (the pooled-feature norm) is new at fine-tuning.
custom_hooks = [
    dict(
        type='PretrainedLoadCheckHook',
        config_checkpoint=checkpoint,
        ignore_missing=[r'^ln2\.'])
]
