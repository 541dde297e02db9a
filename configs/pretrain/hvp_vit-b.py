# HVP-MTL pre-training of ViT-B/16 (Tables 1 and 5); schedule, data and losses as Swin-B.
# The SimMIM mask keeps 32-px blocks (paper §3.2) at the ViT patch grid (16 px -> 14x14).
_base_ = './hvp_swin-b.py'
custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

model = dict(
    backbone=dict(_delete_=True, type='MaskedViT', arch='base', img_size=_base_.img_size,
                  patch_size=16, drop_path_rate=0.1, out_type='featmap', out_indices=-1,
                  final_norm=True),
    tasks=dict(mim=dict(in_channels=768, encoder_stride=16),
               swav=dict(in_channels=768),
               mlc=dict(in_channels=768)))

# the base pipeline with the mask at the ViT's 16-px patch grid
train_pipeline = [
    dict(t, mask_generator=dict(t.mask_generator, model_patch_size=16))
    if t.type == 'MultiViewWithMask' else t for t in _base_.train_pipeline
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
