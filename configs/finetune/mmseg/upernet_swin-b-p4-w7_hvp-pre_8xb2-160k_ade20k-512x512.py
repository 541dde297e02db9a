# UperNet with an HVP-MTL Swin-B backbone on ADE20K (arXiv 2310.07510, Table 4:
# 50.6 mIoU): 160k iterations, 512x512 crops, batch 16 (8 GPUs x 2 images),
# following the BEiT protocol the paper cites: AdamW with layer-wise lr decay,
# 1500-iteration linear warm-up, then poly decay.
#
# Backbone, optimizer and load check: ../_base_/hvp-swin-b_downstream.py.
_base_ = [
    'mmseg::swin/swin-base-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
    '../_base_/hvp-swin-b_downstream.py',
]

custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

model = dict(backbone=dict(_delete_=True, **_base_.hvp_swin_b_backbone))

optim_wrapper = dict(_delete_=True, **_base_.layer_decay_optim_wrapper)

# lr 1e-4 is stated for 8 x 2 = 16 images (`--auto-scale-lr` rescales it).
auto_scale_lr = dict(base_batch_size=16)
