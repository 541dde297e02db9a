# Swin-B fine-tuned on ImageNet-1K at 384 px with 12x12 windows from an HVP-MTL backbone that was
# pre-trained with 7x7 windows at 224 px: the 224-px recipe of
# ./swin-base-w7_hvp-pre_8xb256-coslr-100e_in1k.py with only the image and window sizes changed.
# The relative-position bias tables (13x13 -> 23x23 offsets) are resized while the backbone loads
# (bicubic spline, hvp_mtl.compat.patch_swin_table_resize); the load check lists them as resized.
# 8 GPUs x 256 images = 2048 as at 224 px; if 256 images at 384 px do not fit a GPU, keep the
# total batch with more GPUs or pass --auto-scale-lr with a smaller train_dataloader.batch_size.
_base_ = './swin-base-w7_hvp-pre_8xb256-coslr-100e_in1k.py'

custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

img_size = 384
window_size = 12

train_pipeline = [
    dict(t, scale=img_size) if t['type'] == 'RandomResizedCrop' else t
    for t in _base_.train_pipeline
]
# mmpretrain's 384-px Swin evaluation: resize to 384 x 384, no crop
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_size, backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

model = dict(backbone=dict(img_size=img_size,
                           stage_cfgs=dict(block_cfgs=dict(window_size=window_size))))
