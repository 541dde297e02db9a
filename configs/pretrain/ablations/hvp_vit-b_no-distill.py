# Without momentum distillation (no EMA teacher is built); Table 5 ablation of arXiv 2310.07510
# on ViT-B.
_base_ = '../hvp_vit-b.py'
custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

model = dict(loss_weights=dict(distill=0.0))
