# HVP-MTL pre-training of Swin-T (Table 6 scaling row); everything else as Swin-B.
_base_ = './hvp_swin-b.py'
custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

model = dict(
    backbone=dict(arch='tiny', drop_path_rate=0.1),
    # the decoder sized with the backbone: ML-Decoder's 768/2048 (Swin-B) would be 12 % (Swin-T) /
    # 6 % (Swin-S) of the backbone FLOPs; 384/1024 is 3.2 % / 1.7 % (Swin-B: 3.5 %). docs/method.md
    tasks=dict(mim=dict(in_channels=768),
               swav=dict(in_channels=768),
               mlc=dict(in_channels=768, embed_dims=384, feedforward_channels=1024)))
