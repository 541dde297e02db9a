# HVP-MTL Swin-B with eq. (6) at ALBEF's similarity temperature T = 0.07 instead of the paper's
# T = 1 (./hvp_swin-b.py). For the same student-teacher gap it sends ~1/T^2 = 204x more gradient:
# at Swin-B initialisation with 11,166 classes distillation holds 79 % of the last-stage gradient
# (T = 1: 2 %), and on the demo it was the worst of three arms (docs/method.md, "Distillation").
_base_ = './hvp_swin-b.py'

model = dict(tasks=dict(distill=dict(loss=dict(temperature=0.07))))
