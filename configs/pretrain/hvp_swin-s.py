# HVP-MTL pre-training of Swin-S (Table 6 scaling row); everything else as Swin-B.
_base_ = './hvp_swin-b.py'
custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

model = dict(
    backbone=dict(arch='small', drop_path_rate=0.1),
    mlc_head=dict(in_channels=768),
    swav_head=dict(in_channels=768),
    mim_head=dict(in_channels=768))
