# HVP-MTL pre-training of Swin-B on Tencent ML-Images (arXiv 2310.07510, §3.3):
# 16 images/GPU x 64 GPUs = 1024, 30 epochs, AdamW lr 1e-4 wd 0.05, 5-epoch linear warm-up,
# cosine to 1e-7, bf16 AMP, gradient clipping, two 224-px views (view 0 masked for MIM).
_base_ = ['./_base_/pretrain_runtime.py', './_base_/two_view_pipeline.py']
custom_imports = dict(imports=['hvp_mtl'], allow_failed_imports=False)

num_classes = 11166
img_size = _base_.img_size  # the pipeline's

model = dict(
    type='HVPMTL',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True,
        non_blocking=True),
    backbone=dict(type='MaskedSwinTransformer', arch='base', img_size=img_size,
                  drop_path_rate=0.1, out_indices=(3, ), use_sdpa=True),
    # the tasks, in the order they run; each is built as `{name}_head` and weighted by
    # loss_weights[name] (docs/ARCHITECTURE.md)
    tasks=dict(
        mim=dict(type='MIMLinearDecoderHead', in_channels=1024, encoder_stride=32,
                 loss=dict(type='MaskedReconstructionLoss')),
        swav=dict(type='SwAVClusteringHead', in_channels=1024, hidden_channels=2048,
                  out_channels=128, num_prototypes=3000, norm_cfg=dict(type='BN1d'),
                  freeze_prototypes_iters=313,
                  # a queue of 3,840 embeddings over all GPUs (60 per process at 64 GPUs; set
                  # 3840 // num_gpus on others), filled from 7.5 % of training as official
                  # SwAV's batch-256 recipe (epoch 15 of 200): 1,024 rows against 3,000
                  # prototypes spread each code over ~300 prototypes, with the queue ~160
                  # (tools/analysis_tools/swav_queue.py, docs/method.md)
                  queue_length=60, queue_start_iter=38_800,
                  loss=dict(type='SwappedPredictionLoss', temperature=0.1, epsilon=0.05,
                            sinkhorn_iterations=3, t_max=10.)),
        mlc=dict(type='MultiLabelDecoderHead', num_classes=num_classes, in_channels=1024,
                 mode='grouped', num_groups=100, embed_dims=768, num_layers=1,
                 feedforward_channels=2048, views='both',
                 # focusing weights (1-p)^g+, p_m^g- as constants, as the Query2Label and
                 # ML-Decoder recipes train ASL (docs/method.md)
                 loss=dict(type='WeightedAsymmetricLoss', eta=10., gamma_pos=4.,
                           gamma_neg=1., clip=0.05, disable_torch_grad_focal_loss=True)),
        # eq. (6) as written: a KL between softmaxed cosine vectors, no temperature (T = 1).
        # ALBEF's T = 0.07 is ./hvp_swin-b_distill-t0.07.py; what each does to the task
        # balance: docs/method.md
        distill=dict(type='MomentumDistillationHead',
                     loss=dict(type='SymmetricKLDistillationLoss', temperature=1.0))),
    loss_weights=dict(mlc=0.001, swav=0.02, mim=1.0, distill=10.0),
    teacher=dict(momentum=0.995))

# data: the two-view pipeline of ./_base_/two_view_pipeline.py (view 0 masked for MIM)
train_dataloader = dict(
    batch_size=16, num_workers=8, persistent_workers=True, pin_memory=True,
    sampler=dict(type='ResumableDefaultSampler', shuffle=True),  # O(1) mid-epoch resume
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='TencentMLImages', data_root='data/ml-images/', ann_file='train.txt',
                 dictionary_file='dictionary_and_semantic_hierarchy.txt',
                 data_prefix='images/', pipeline=_base_.train_pipeline))

# optimisation
optim_wrapper = dict(
    # bf16 AMP without a loss scaler; skips and counts non-finite steps (fp16: dtype='float16',
    # dynamic loss scaling by default)
    type='GuardedAmpOptimWrapper', dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05, fused=True),
    clip_grad=dict(max_norm=5.0),
    paramwise_cfg=dict(custom_keys={
        'norm': dict(decay_mult=0.), 'bias': dict(decay_mult=0.),
        'absolute_pos_embed': dict(decay_mult=0.), 'pos_embed': dict(decay_mult=0.),
        'relative_position_bias_table': dict(decay_mult=0.), 'cls_token': dict(decay_mult=0.),
        'mask_token': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=25, eta_min=1e-7, by_epoch=True, begin=5, end=30,
         convert_to_iter_based=True),
]
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=30)  # no replay on resume
# atomic checkpoints every 1000 iterations (an epoch is ~17.2k at batch 1024); a truncated
# latest checkpoint falls back to the previous one on --resume
default_hooks = dict(checkpoint=dict(_delete_=True, type='AtomicCheckpointHook', by_epoch=False,
                                     interval=1000, max_keep_ckpts=3),
                     # every rank's RNG states, sampler position and SwAV queue in each
                     # checkpoint, handed back to the loop on resume (exact resume)
                     resume_state=dict(type='ResumeStateHook'),
                     # EMA teacher step + SwAV prototype normalisation after each optimizer step
                     # (outside forward; FSDP-safe). Required: training stops at once without it.
                     teacher_and_prototypes=dict(type='TeacherAndPrototypesHook'))
custom_hooks = [
    dict(type='EffectiveBatchHook'),  # logs per-GPU batch x world size, warns != 1024
    # the epoch-based loop validates at epoch ends only (an epoch is ~17.2k iterations):
    # also every 2000
    dict(type='IterIntervalValHook', interval=2000),
    # each task's share of the clipped gradient norm (scalars task_grad/*, one log line, a warning
    # when one task holds > 80 %): one forward + one backward per task on one micro-batch
    dict(type='TaskGradientShareHook', interval=1000),
    # a collapse monitor: RankMe and the top-5 PC share of the student's and teacher's pooled
    # features on 256 fixed training images (scalars collapse/*; one warning when RankMe falls
    # below max(2, 2 % of min(images, dims)))
    dict(type='CollapseMonitorHook', interval=1000),
]
# DDP: every parameter gets a gradient each step (frozen SwAV prototypes stay in the graph,
# their gradient is cleared after backward; without MIM the mask token is frozen), so no
# unused-parameter search. Buffers are never broadcast: the EMA teacher and each rank's SwAV
# queue are buffers (TeacherAndPrototypesHook refuses broadcast_buffers=True).
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=False,
                         broadcast_buffers=False)
auto_scale_lr = dict(base_batch_size=1024)

# evaluation: multi-label mAP / CP..OF1 on a fixed 5000-image subset of val.txt during training,
# all 88,739 images after the last iteration (docs/EVALUATION.md)
val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size * 256 // 224, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
val_dataloader = dict(
    batch_size=64, num_workers=8, persistent_workers=True, pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='TencentMLImages', data_root='data/ml-images/', ann_file='val.txt',
                 dictionary_file='dictionary_and_semantic_hierarchy.txt',
                 data_prefix='images/', pipeline=val_pipeline, test_mode=True))
val_evaluator = [
    dict(type='SoftTargetAveragePrecision', target_thr=0.5),
    dict(type='SoftTargetMultiLabelMetric', thr=0.5, target_thr=0.5),
]
val_cfg = dict(type='MultiLabelValLoop', subset_size=5000, full_at_end=True, use_teacher=False)
test_dataloader = val_dataloader
test_evaluator = val_evaluator
test_cfg = dict(type='TestLoop')
