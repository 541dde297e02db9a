# The demo's HVP-MTL pre-training: the Swin-T config (configs/pretrain/hvp_swin-t.py) shrunk to
# run on a laptop CPU on the generated demo world (64 classes, 64-px images). Only sizes change; the
# four objectives, their loss functions, the two-view pipeline with the SimMIM mask on view 0, the
# AdamW settings and the EMA teacher are the real ones. demo/run_demo.py sets data_root, the number
# of iterations and the schedule length for the chosen --size.
_base_ = '../pretrain/hvp_swin-t.py'
custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

num_classes = 64  # the demo world's class dictionary
img_size = 64
data_root = 'data/demo/default/pretrain/'
max_iters = 300
# A small Swin: 4 stages of 2 blocks, widths 32-256, window 4 (every demo config uses window 4,
# so the relative-position tables load unchanged downstream).
demo_arch = dict(_delete_=True, embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8])

model = dict(
    backbone=dict(arch=demo_arch, img_size=img_size, window_size=4, drop_path_rate=0.,
                  pad_small_map=True),
    tasks=dict(
        mim=dict(in_channels=256),
        swav=dict(in_channels=256, hidden_channels=256, out_channels=32, num_prototypes=32,
                  freeze_prototypes_iters=20, queue_length=0),  # 32 rows: no queue
        mlc=dict(num_classes=num_classes, in_channels=256, embed_dims=64, num_groups=8,
                 num_heads=4, feedforward_channels=128, dropout=0.,
                 similarity='scoring_token')),
    # eq. (1) sums over classes: the paper's alpha_1 = 0.001 is for 11,166 classes. Keeping
    # alpha_1 * C (about 11) as with the paper gives 11166 * 0.001 / 64 = 0.17 for 64 classes.
    loss_weights=dict(mlc=0.17),
    # Distillation: eq. (6) at T = 1, the paper configs' value. Measured on this config (300
    # iterations, 3 seeds, docs/results/distillation_demo_300iters*.json), student mAP: 36.5
    # (scoring token, T = 1), 37.2 (mean token, T = 1), 32.5 without distillation, 28.5 at ALBEF's
    # T = 0.07, whose gradient dominates at alpha_4 = 10 (docs/method.md).
    # the teacher must follow a student that changes fast in a few hundred steps
    teacher=dict(momentum=0.99))

view_pipeline = [
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.35, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply', prob=0.8,
         # hue=0: mmcv 2.1's adjust_hue overflows uint8 under numpy 2 for negative hue shifts
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.2,
                          hue=0.)]),
]
# the base pipeline (../pretrain/_base_/two_view_pipeline.py) with these views and 16-px mask
# blocks: 32-px ones (the paper's, for 224 px) leave a 2x2 grid at 64 px
train_pipeline = [
    dict(t, transforms=[view_pipeline, view_pipeline],
         mask_generator=dict(t.mask_generator, input_size=img_size, mask_patch_size=16))
    if t.type == 'MultiViewWithMask' else t for t in _base_.train_pipeline
]
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True, pin_memory=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))

# CPU: fp32 OptimWrapper (AMP needs an accelerator); lr for batch 32 on a few hundred steps.
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
                     clip_grad=dict(max_norm=5.0),
                     paramwise_cfg=_base_.optim_wrapper.paramwise_cfg)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', T_max=max_iters - 30, eta_min=1e-5, by_epoch=False, begin=30,
         end=max_iters),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
# no multi-label validation loop during the demo's few minutes (the fine-tunes are the
# evaluation); each objective against its trivial baseline on the held-out val.txt instead (64
# images, about 2 s per evaluation on one core; demo/run_demo.py sets the interval)
# (demo/run_demo.py sets the interval of custom_hooks[0]); each task's share of the clipped
# gradient norm every 100 iterations
custom_hooks = [dict(type='ObjectiveMetricsHook', interval=100, val_ann_file='val.txt',
                     batch_size=64),
                dict(type='TaskGradientShareHook', interval=100),
                # RankMe / top-5 share of student and teacher features on 256 fixed images
                dict(type='CollapseMonitorHook', interval=100)]
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None
log_processor = dict(by_epoch=False, window_size=10)
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=32)
