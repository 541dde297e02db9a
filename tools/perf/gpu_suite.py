"""One-shot GPU suite of the HVP-MTL pre-training path (run by gpu_suite.sh).

(a) Swin-B, 224 px, bf16 (``GuardedAmpOptimWrapper``, no loss scaler),
    batch 64: the full HVP-MTL step, its backbone floor and mmpretrain's
    SimMIM step (:mod:`hvp_mtl.perf.step_cases`), eager and with ``torch.compile``:
    ms/step, images/s, peak memory, full/floor (paired per round); eager only, the cost of
    an iteration on which ``TaskGradientShareHook`` or ``CollapseMonitorHook`` (256 images)
    measures, as ratios to the full step;
(b) which ``scaled_dot_product_attention`` kernels one full eager step ran
    (``torch.profiler`` op names; any math-kernel attention is flagged) and
    the q/k/v ranks of every SDPA call;
(c) ``configs/pretrain/hvp_swin-b.py`` trained by the mmengine Runner on a
    generated ML-Images-format set (:mod:`hvp_mtl.perf.gpu_suite_training`): loss finite,
    no skipped step, the EMA teacher moved;
(d) the projected hours of the paper's run (30 epochs x 17.6M images on 64
    such GPUs) from (a) and (c).

Prints ``SUITE key=value`` lines and writes everything to
``RESULTS/gpu_suite.json``. ``--device cpu`` (tiny models, 64 px, a few
iterations, no compile) is the dry run the test suite executes.
"""
import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from argparse import Namespace

import torch

from hvp_mtl.perf.gpu_suite_training import run_training
from hvp_mtl.perf.peak_memory import step_peak_bytes
from hvp_mtl.perf.step_cases import TINY, build_case, load_config, make_batch
from hvp_mtl.perf.timing import PAPER_GPUS, PAPER_IMAGES, quantiles, time_interleaved

STEP_CASES = ('full', 'floor', 'simmim')
HOOK_CASES = ('grad-share', 'collapse-monitor')  # eager only
SDPA_OPS = {'aten::_scaled_dot_product_flash_attention': 'flash',
            'aten::_scaled_dot_product_efficient_attention': 'mem_efficient',
            'aten::_scaled_dot_product_cudnn_attention': 'cudnn',
            'aten::_scaled_dot_product_attention_math': 'MATH',
            'aten::_scaled_dot_product_flash_attention_for_cpu': 'cpu_flash'}


def hours(images_per_s: float) -> float:
    """Projected wall hours of the paper's run on 64 devices at this rate."""
    return PAPER_IMAGES / (PAPER_GPUS * images_per_s) / 3600


def part_a(args, cfg, batch, compiled: bool, deadline: float) -> tuple:
    """Time full / floor / simmim; returns ({case: stats}, {case: Case})."""
    ns = Namespace(size=args.size, batch=args.batch, num_classes=args.num_classes,
                   device=args.device, dtype='bf16', compile=compiled,
                   fused=args.device == 'cuda', channels_last=False,
                   monitor_images=256 if args.device == 'cuda' else 4)
    # a compiled build takes minutes: start one only with time left for it
    reserve = 100 if compiled else 0
    built, out = {}, {}
    for name in STEP_CASES + (() if compiled else HOOK_CASES):
        if time.time() > deadline - reserve:
            out[name] = dict(skipped='time budget')
            continue
        start = time.time()
        built[name] = build_case(name, cfg, batch, ns)  # runs (compiles) one step
        out[name] = dict(build_s=round(time.time() - start, 1))
    times = time_interleaved({n: c.step for n, c in built.items()}, args.iters,
                             args.warmup, args.device, 'wall')
    for name, case in built.items():
        med, lo, hi = quantiles(times[name])
        out[name].update(ms_per_step=med * 1e3, p10_ms=lo * 1e3, p90_ms=hi * 1e3,
                         images_per_s=args.batch / med,
                         peak_mib=step_peak_bytes(case.step, args.device) / 2**20,
                         persistent_mib=case.persistent_bytes / 2**20)
    if 'full' in times and 'floor' in times:
        ratio = quantiles([a / b for a, b in zip(times['full'], times['floor'])])
        out['full/floor'] = dict(zip(('median', 'p10', 'p90'), ratio))
    for name in HOOK_CASES:
        if 'full' in times and name in times:
            ratio = quantiles([a / b for a, b in zip(times[name], times['full'])])
            out[f'{name}/full'] = dict(zip(('median', 'p10', 'p90'), ratio))
    return out, built


def part_b(args, full_step) -> dict:
    """SDPA ops and q/k/v ranks of one full step, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if args.device == 'cuda' else [])
    with profile(activities=activities, record_shapes=True) as prof:
        full_step()
    kernels, ranks, attention_kernels = {}, {}, set()
    for event in prof.events():
        if event.name in SDPA_OPS:
            kind = SDPA_OPS[event.name]
            kernels[kind] = kernels.get(kind, 0) + 1
        if event.name == 'aten::scaled_dot_product_attention' and event.input_shapes:
            rank = len(event.input_shapes[0])
            ranks[rank] = ranks.get(rank, 0) + 1
        if args.device == 'cuda' and event.device_type == torch.autograd.DeviceType.CUDA \
                and any(k in event.name.lower() for k in ('fmha', 'flash', 'attention')):
            attention_kernels.add(event.name[:90])
    return dict(sdpa_backends=kernels, qkv_rank_counts=ranks,
                math_attention_calls=kernels.get('MATH', 0),
                attention_gpu_kernels=sorted(attention_kernels)[:12])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda')
    parser.add_argument('--results', default='gpu_suite_results')
    parser.add_argument('--budget-s', type=float, default=450,
                        help='stop starting new parts after this many seconds')
    parser.add_argument('--train-iters', type=int)
    parser.add_argument('--no-compile', action='store_true')
    args = parser.parse_args()
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda but torch.cuda.is_available() is False')
    start = time.time()
    deadline = start + args.budget_s
    cpu = args.device == 'cpu'
    args.batch, args.size = (2, 64) if cpu else (64, 224)
    args.iters, args.warmup = (2, 1) if cpu else (10, 3)
    args.train_iters = args.train_iters or (3 if cpu else 200)
    torch.backends.cuda.matmul.allow_tf32 = True
    cfg = load_config('tiny' if cpu else 'swin-b')
    args.num_classes = cfg.model.tasks.mlc.num_classes  # 11,166 as shipped
    torch.manual_seed(0)
    batch = make_batch(cfg, Namespace(**vars(args), channels_last=False))
    env = dict(device=torch.cuda.get_device_name() if not cpu else 'CPU',
               torch=torch.__version__, cuda=torch.version.cuda, batch=args.batch,
               size=args.size, classes=args.num_classes, dtype='bfloat16')
    results = dict(env=env)

    built = {}

    def eager():
        stats, cases = part_a(args, cfg, batch, False, deadline)
        built.update(cases)
        return stats

    def training():
        with tempfile.TemporaryDirectory() as work_dir:
            return run_training(
                work_dir, args.train_iters, num_images=16 if cpu else 512,
                size=args.size, num_classes=args.num_classes,
                batch=2 if cpu else None, num_workers=0 if cpu else 12,
                overrides=TINY if cpu else None)

    def compiled():
        if args.no_compile or cpu:
            return dict(skipped='--no-compile' if not cpu else
                        'CPU dry run (Inductor on a CPU takes minutes)')
        torch.cuda.empty_cache()
        return part_a(args, cfg, batch, True, deadline)[0]

    # one part failing must not cost the others (one shot on a lent GPU)
    results['a_eager'] = guarded(eager)
    results['b_sdpa'] = guarded(lambda: part_b(args, built['full'].step))
    built.clear()
    results['c_training'] = guarded(training)
    results['a_compiled'] = guarded(compiled)

    rates = {f'{k}.full': v['full']['images_per_s'] for k, v in results.items()
             if k.startswith('a_') and 'images_per_s' in v.get('full', {})}
    if 'images_per_s' in results['c_training']:
        rates['c_training'] = results['c_training']['images_per_s']
    results['d_projection'] = {name: dict(images_per_s=r, hours_30ep_64gpu=hours(r))
                               for name, r in rates.items()}
    results['checks'] = checks(results)
    results['total_s'] = time.time() - start
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, 'gpu_suite.json')
    with open(path, 'w') as f:
        json.dump(results, f, indent=1, default=str)
    for line in flatten('', results):
        print('SUITE ' + line)
    print(f'SUITE_JSON {path}')
    failed = [k for k, v in results.items() if isinstance(v, dict) and 'error' in v]
    sys.exit(f'SUITE parts that raised: {failed}' if failed else 0)


def checks(results: dict) -> dict:
    """The issue's pass/fail questions, answered from the results."""
    train, sdpa = results['c_training'], results['b_sdpa']
    best = max((v['images_per_s'] for v in results['d_projection'].values()), default=0)
    ratio = results['a_eager'].get('full/floor', {}).get('median', float('nan'))
    return dict(
        training_losses_finite=train.get('losses_finite') is True,
        training_no_skipped_step=train.get('skipped_steps') == 0,
        training_teacher_moved=train.get('teacher_moved') is True,
        training_no_loss_scaler=train.get('loss_scaler_enabled') is False,
        sdpa_all_4d=set(sdpa.get('qkv_rank_counts', {5: 0})) == {4},
        sdpa_no_math_kernel=sdpa.get('math_attention_calls') == 0,
        full_over_floor_le_1_15=ratio <= 1.15,
        images_per_s_ge_200=best >= 200, images_per_s_ge_400=best >= 400)


def guarded(part):
    """``part()``, or ``{'error': traceback}`` if it raised."""
    try:
        return part()
    except Exception:  # noqa: BLE001 -- reported in the results, not hidden
        error = traceback.format_exc()
        print(error, file=sys.stderr, flush=True)
        return dict(error=error.strip().splitlines()[-1])


def flatten(prefix: str, value):
    """``key=value`` lines of a nested dict (floats to 4 significant digits)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flatten(f'{prefix}.{key}' if prefix else str(key), item)
    elif isinstance(value, float):
        yield f'{prefix}={value:.4g}' if math.isfinite(value) else f'{prefix}={value}'
    else:
        yield f'{prefix}={value}'


if __name__ == '__main__':
    main()
