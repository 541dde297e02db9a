# HVP-MTL pre-training of Swin-S (Table 6 scaling row); everything else as Swin-B, with the
# decoder sized as for Swin-T (same stage-3 width, 768; see hvp_swin-t.py).
_base_ = './hvp_swin-t.py'
custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

model = dict(backbone=dict(arch='small', drop_path_rate=0.1))
