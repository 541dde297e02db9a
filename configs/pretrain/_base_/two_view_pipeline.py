# The HVP-MTL pre-training pipeline (arXiv 2310.07510, §3.2): two global views of each image, each
# augmented by `view_pipeline`; the SimMIM mask (32-px blocks, ratio 0.6, at the backbone's patch
# grid: 4 px for Swin) applies to view 0; the soft targets travel as `gt_score`.
# Inherited by every HVP-MTL pre-training config; a config that changes a size or the views
# replaces only those values of the `MultiViewWithMask` step (see hvp_vit-b.py).
img_size = 224

view_pipeline = [
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.2, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply', prob=0.8,
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.2,
                          hue=0.1)]),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiViewWithMask', transforms=[view_pipeline, view_pipeline], masked_view=0,
         mask_generator=dict(type='SimMIMMaskGenerator', input_size=img_size,
                             mask_patch_size=32, model_patch_size=4, mask_ratio=0.6)),
    dict(type='PackInputs'),
]
