"""Cost of one MCL training step against a 2-view BYOL step on the same backbone.

Both cases are timed interleaved round-robin in one process (the helpers of
``tools/perf/step.py``), after warm-up:

* ``mcl``  -- ``MCL.train_step`` of ``configs/pretrain/mcl_*.py``: 8 views of
  ``B`` images, the montage pyramid of both branches (``B + B/4 + B/16 +
  B/32`` images each), student backbone + FPN + cell head + predictors on both
  branches, the momentum encoder on both (no grad), the loss, backward, the
  config's optimizer (LARS for R50) and the EMA update that
  ``TeacherAndPrototypesHook`` runs after the step;
* ``byol`` -- mmpretrain's own ``BYOL`` (its R50 config's neck, predictor and
  loss; EMA inside its forward) on the same backbone with 2 views of ``B``
  images, the same optimizer.

It prints ms/step, images through an encoder per step, the step's peak
memory, and the paired ratio ``mcl / byol`` per round (median [p10, p90]).

Usage::

    python tools/perf/mcl_step.py --backbone tiny --batch 8 --device cpu
    python tools/perf/mcl_step.py --backbone r50 --batch 8 --iters 3
    python tools/perf/mcl_step.py --backbone r50 --batch 128 --device cuda \\
        --dtype fp16                                   # the paper's per-GPU batch
"""
import argparse
import copy
import json
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.logging import MessageHub, MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import hvp_mtl  # noqa: F401  (registers MCL)
from hvp_mtl.models.utils.montage import level_batch_sizes
from hvp_mtl.perf.peak_memory import step_peak_bytes
from hvp_mtl.perf.timing import fmt, paired, quantiles, time_interleaved

PRETRAIN = Path(__file__).resolve().parents[2] / 'configs' / 'pretrain'
TINY = dict(backbone=dict(depth=18, stem_channels=8, base_channels=8),
            neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
            cell_head=dict(in_channels=16, cell_size=2, hidden_channels=32,
                           out_channels=16),
            predictors=dict(in_channels=16, hidden_channels=32, out_channels=16))
PRESETS = {
    'tiny': dict(config='mcl_r50-fpn_32xb128-lars-coslr-100e_in1k.py', size=64,
                 override=TINY, feat=64),
    'r50': dict(config='mcl_r50-fpn_32xb128-lars-coslr-100e_in1k.py', size=224, feat=2048),
    'swin-b': dict(config='mcl_swin-b-fpn_32xb32-adamw-coslr-30e_ml-images.py', size=224,
                   feat=1024),
}


def byol_model(cfg: Config, feat: int) -> dict:
    """mmpretrain's BYOL (its R50 recipe's neck/head) on MCL's backbone."""
    backbone = copy.deepcopy(cfg.model.backbone)
    backbone.out_indices = (3, )
    return dict(
        type='BYOL', base_momentum=0.01, backbone=backbone,
        data_preprocessor=copy.deepcopy(cfg.model.data_preprocessor),
        neck=dict(type='NonLinearNeck', in_channels=feat, hid_channels=4096,
                  out_channels=256, num_layers=2, with_bias=True, with_last_bn=False,
                  with_avg_pool=True),
        head=dict(type='LatentPredictHead', loss=dict(type='CosineSimilarityLoss'),
                  predictor=dict(type='NonLinearNeck', in_channels=256, hid_channels=4096,
                                 out_channels=256, num_layers=2, with_bias=True,
                                 with_last_bn=False, with_avg_pool=False)))


def build_case(model_cfg: dict, cfg: Config, views: int, args):
    """(step function, images through an encoder per step)."""
    model = MODELS.build(model_cfg).to(args.device).train()
    wrapper = copy.deepcopy(cfg.optim_wrapper)
    wrapper.pop('dtype', None)
    wrapper.pop('loss_scale', None)
    wrapper['type'] = 'OptimWrapper'
    if args.dtype != 'fp32':
        wrapper.update(type='AmpOptimWrapper',
                       dtype='float16' if args.dtype == 'fp16' else 'bfloat16')
    wrapper = build_optim_wrapper(model, wrapper)
    gen = torch.Generator().manual_seed(0)
    data = dict(inputs=[torch.randint(0, 256, (args.batch, 3, args.size, args.size),
                                      dtype=torch.uint8, generator=gen)
                        for _ in range(views)],
                data_samples=[DataSample() for _ in range(args.batch)])
    after_step = getattr(model, 'after_train_step', None)
    if after_step is not None:
        after_step(before_training=True)

    def step():
        model.train_step(data, wrapper)
        if after_step is not None:
            after_step()

    step()
    if views == 2:  # BYOL: online and target network on both views
        return step, 4 * args.batch
    per_branch = sum(level_batch_sizes(args.batch, model.batch_divisors))
    return step, 4 * per_branch  # student and momentum encoder, both branches


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--backbone', choices=list(PRESETS), default='tiny')
    parser.add_argument('--batch', type=int, default=8, help='images per view')
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', choices=['fp32', 'fp16', 'bf16'], default='fp32')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--clock', choices=['wall', 'cpu'], default='wall')
    parser.add_argument('--out', help='write the results as JSON here')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = PRESETS[args.backbone]
    args.size = preset['size']
    cfg = Config.fromfile(str(PRETRAIN / preset['config']))
    for key, value in preset.get('override', {}).items():
        cfg.model[key].update(copy.deepcopy(value))
    init_default_scope('mmpretrain')
    MMLogger.get_instance('mcl_step_benchmark', log_level='WARNING')
    hub = MessageHub.get_current_instance()  # both EMA schedules read the run length
    hub.update_info('max_iters', 10**6)
    hub.update_info('iter', 0)

    cases = {'mcl': build_case(cfg.model, cfg, 8, args),
             'byol': build_case(byol_model(cfg, preset['feat']), cfg, 2, args)}
    times = time_interleaved({k: v[0] for k, v in cases.items()}, args.iters,
                             args.warmup, args.device, args.clock)
    peaks = {k: step_peak_bytes(v[0], args.device) for k, v in cases.items()}
    print(f'\nMCL vs BYOL step: backbone={args.backbone} batch={args.batch} '
          f'size={args.size} device={args.device} dtype={args.dtype} '
          f'threads={torch.get_num_threads()} iters={args.iters} warmup={args.warmup} '
          f'clock={args.clock} (interleaved)')
    print('| case | ms/step median | p10-p90 ms | encoder images/step | '
          'ms per encoder image | step peak MiB |')
    print('|---|---:|---:|---:|---:|---:|')
    for name, (_, images) in cases.items():
        med, lo, hi = quantiles(times[name])
        print(f'| {name} | {med * 1e3:.1f} | {lo * 1e3:.1f}-{hi * 1e3:.1f} | {images} | '
              f'{med * 1e3 / images:.2f} | {peaks[name] / 2**20:.0f} |')
    ratio = paired(times, 'mcl', 'byol')
    image_ratio = cases['mcl'][1] / cases['byol'][1]
    print(f'mcl / byol step time (paired per round): {fmt(ratio)}; '
          f'encoder images ratio {image_ratio:.2f}')
    if args.out:
        Path(args.out).write_text(json.dumps(dict(
            args=vars(args), times=times, peaks=peaks, ratio=ratio,
            encoder_images={k: v[1] for k, v in cases.items()}), indent=1))


if __name__ == '__main__':
    main()
