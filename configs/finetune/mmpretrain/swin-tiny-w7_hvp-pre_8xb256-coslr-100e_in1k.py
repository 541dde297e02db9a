# Swin-T fine-tuned on ImageNet-1K from an HVP-MTL backbone (arXiv 2310.07510,
# Table 6): the Swin-B recipe of ./swin-base-w7_hvp-pre_8xb256-coslr-100e_in1k.py
# (100 epochs, 224 px, batch 2048, layer decay 0.9, drop path 0.1).
_base_ = './swin-base-w7_hvp-pre_8xb256-coslr-100e_in1k.py'

checkpoint = 'work_dirs/hvp_swin-t/backbone.pth'

model = dict(
    backbone=dict(
        arch='tiny',
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    head=dict(in_channels=768))

custom_hooks = [
    dict(type='PretrainedLoadCheckHook', config_checkpoint=checkpoint)
]
