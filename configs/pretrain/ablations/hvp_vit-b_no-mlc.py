# Without multi-label classification. Distillation needs the multi-label decoder, so it goes too
# (the row measures training without labels); Table 5 ablation of arXiv 2310.07510 on ViT-B.
_base_ = '../hvp_vit-b.py'
custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

model = dict(loss_weights=dict(mlc=0.0, distill=0.0))
