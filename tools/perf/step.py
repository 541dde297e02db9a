"""Cost of one HVP-MTL training step against the backbone floor and SimMIM.

Times, interleaved round-robin (every round runs every case once, in a
rotating order, so machine noise hits all cases alike), after warm-up:

* ``full``       -- the HVP-MTL train step of the shipped config: data
  preprocessor, ``HVPMTL.loss`` (EMA teacher update, one student pass over
  both views, teacher forward, four heads and losses), ``parse_losses``,
  backward, clipping and AdamW through the real mmengine optim wrapper, and
  the per-iteration log update the Runner does (``MessageHub``);
* ``no-<task>``  -- the same with one task's weight set to 0, so its head is
  not built (``no-mlc`` also drops distillation, which needs the decoder);
* ``floor``      -- only the backbone passes the full step needs: the same
  student pass (batch 2B, view 0 masked) with a trivial loss (mean of the
  features), the same teacher forward (no grad), and the optimizer step over
  the backbone parameters through the same wrapper;
* ``montage``    -- the full step plus the fifth task of
  ``hvp_swin-b_montage.py`` (montages of view 1 in the student pass, FPN over
  the four stages, cell head, predictors, teacher FPN + cell head; Swin only);
* ``grad-share`` -- the full step followed by ``TaskGradientShareHook``'s measurement (one
  forward and one backward per task on the same batch): the cost of an iteration on which
  the hook logs the tasks' gradient shares;
* ``collapse-monitor`` -- the full step followed by ``CollapseMonitorHook``'s measurement
  (student and teacher backbone forwards, eval mode, on ``--monitor-images`` images): the
  cost of an iteration on which the hook logs RankMe;
* ``simmim``     -- mmpretrain's own ``SimMIM`` (``SimMIMSwinTransformer``,
  neck and head of its Swin config; a ``MaskedViT`` backbone for ViT-B) on
  the same backbone, batch B of one masked view, the same optim wrapper.

It prints per-case time and memory, the paired ratios full / floor and full /
SimMIM (also per view: SimMIM processes one view, HVP-MTL two), per-task
shares, and on CUDA the images/s per GPU and the projected wall time of the
paper's run (30 epochs x 17.6M images on 64 GPUs).

Memory: CUDA -- ``torch.cuda.max_memory_allocated`` during one step above
the memory allocated before it; CPU -- the peak of the running sum of the CPU
allocator's allocations and frees recorded by ``torch.profiler``
(``profile_memory=True``) during one step (RSS is useless on a shared,
glibc-cached heap). ``persistent`` is parameters + buffers + optimizer state.

Usage::

    python tools/perf/step.py --backbone swin-t --batch 2 --device cpu
    python tools/perf/step.py --backbone swin-b --batch 2 --iters 3 \\
        --cases full no-distill no-mlc floor       # decoder share on CPU
    python tools/perf/step.py --backbone swin-b --batch 16 \\
        --device cuda --dtype bf16 [--compile]     # the paper's setting
"""
import argparse
import copy
import json
import sys

import torch
from mmengine.config import DictAction

from hvp_mtl.perf.peak_memory import step_peak_bytes
from hvp_mtl.perf.step_cases import CASES, PRESETS, build_case, load_config, make_batch
from hvp_mtl.perf.timing import PAPER_GPUS, PAPER_IMAGES, fmt, paired, quantiles, time_interleaved


def share(times, with_task, without_task):
    """Per-round ``(t_with - t_without) / t_full`` -> (median, p10, p90)."""
    return quantiles([(a - b) / f for a, b, f in zip(
        times[with_task], times[without_task], times['full'])])


def report(args, built, times, peaks):
    """Print the case table, ratios, shares and projection; return them."""
    per_view = 'SimMIM: 1 masked view of B images; HVP-MTL: 2 views + teacher'
    print(f'\nHVP-MTL step benchmark: backbone={args.backbone} '
          f'batch={args.batch}/view size={args.size} classes={args.num_classes} '
          f'device={args.device} ({args.device_name}) dtype={args.dtype} '
          f'compile={args.compile} fused_adamw={args.fused} '
          f'threads={torch.get_num_threads()} iters={args.iters} '
          f'warmup={args.warmup} clock={args.clock} (interleaved)')
    print('| case | ms/step median | p10-p90 ms | images/s | step peak MiB '
          '| persistent MiB |')
    print('|---|---:|---:|---:|---:|---:|')
    for name, case in built.items():
        med, lo, hi = quantiles(times[name])
        print(f'| {name} | {med * 1e3:.1f} | {lo * 1e3:.1f}-{hi * 1e3:.1f} | '
              f'{args.batch / med:.1f} | {peaks.get(name, float("nan")) / 2**20:.0f} '
              f'| {case.persistent_bytes / 2**20:.0f} |')
    memory = ('max_memory_allocated' if args.device == 'cuda' else
              'torch.profiler CPU allocator peak')
    print(f'(images/s = B / step time: each image yields 2 views; memory: {memory})')
    results = dict(args=vars(args), times=times, peaks=peaks, ratios={})
    lines = []
    if 'full' in times and 'floor' in times:
        q = paired(times, 'full', 'floor')
        results['ratios']['full/floor'] = q
        lines.append(f'(a)/(c) full / backbone floor      {fmt(q)}   goal <= 1.15: '
                     f'{"PASS" if q[0] <= 1.15 else "FAIL"}')
    if 'full' in times and 'simmim' in times:
        q = paired(times, 'full', 'simmim')
        qv = paired(times, 'full', 'simmim', scale=.5)
        results['ratios'].update({'full/simmim': q, 'full/simmim per view': qv})
        lines.append(f'(a)/(d) full / SimMIM              {fmt(q)}')
        lines.append(f'(a)/(d) per view (full/2 / SimMIM) {fmt(qv)}   ({per_view})')
    if 'floor' in times and 'simmim' in times:
        q = paired(times, 'floor', 'simmim', scale=.5)
        results['ratios']['floor/simmim per view'] = q
        lines.append(f'(c)/(d) per view (floor/2 / SimMIM) {fmt(q)}')
    if 'full' in times and 'montage' in times:
        q = paired(times, 'montage', 'full')
        results['ratios']['montage/full'] = q
        lines.append(f'(e)/(a) full + montage task / full {fmt(q)}')
    if 'full' in times and 'grad-share' in times:
        q = paired(times, 'grad-share', 'full')
        results['ratios']['grad-share/full'] = q
        lines.append(f'(f)/(a) step + TaskGradientShareHook measurement / full {fmt(q)} '
                     '(amortised over its interval: (ratio - 1) / interval)')
    if 'full' in times and 'collapse-monitor' in times:
        q = paired(times, 'collapse-monitor', 'full')
        results['ratios']['collapse-monitor/full'] = q
        lines.append(f'(g)/(a) step + CollapseMonitorHook measurement ({args.monitor_images} '
                     f'images) / full {fmt(q)} (amortised: (ratio - 1) / interval)')
    for task in ('swav', 'mim', 'distill', 'mlc'):
        if 'full' in times and f'no-{task}' in times:
            q = share(times, 'full', f'no-{task}')
            results['ratios'][f'share {task}'] = q
            what = dict(mlc='mlc + distill (no-mlc drops both)',
                        distill='distill (EMA, teacher fwd, KL)').get(task, task)
            lines.append(f'share of the full step: {what:34s} {fmt(q, True)}')
    if {'full', 'no-distill', 'no-mlc'} <= set(times):
        q = share(times, 'no-distill', 'no-mlc')
        results['ratios']['share mlc decoder+loss'] = q
        lines.append(f'share of the full step: multi-label decoder + loss '
                     f'(C={args.num_classes}) {fmt(q, True)}   goal <= 10%: '
                     f'{"PASS" if q[0] <= .10 else "FAIL"}')
    if 'full' in times:
        rate = args.batch / quantiles(times['full'])[0]
        hours = PAPER_IMAGES / (PAPER_GPUS * rate) / 3600
        results['images_per_s'] = rate
        lines.append(f'full objective: {rate:.1f} images/s on this {args.device}; '
                     f'paper run (30 x 17.6M images on {PAPER_GPUS} such devices) '
                     f'= {hours:.1f} h (<= 12 h needs >= '
                     f'{PAPER_IMAGES / (PAPER_GPUS * 12 * 3600):.0f} images/s/device; '
                     f'goal 200)')
    print('Ratios, paired per round: median [p10, p90]')
    print('\n'.join(lines))
    return results


def main():
    """Parse the command line, build and time the cases, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--backbone', choices=sorted(PRESETS), default='swin-t')
    parser.add_argument('--batch', type=int, default=2, help='images (per view)')
    parser.add_argument('--size', type=int, help='view size (preset default)')
    parser.add_argument('--num-classes', type=int, help='default: config (11166)')
    parser.add_argument('--monitor-images', type=int, default=256,
                        help="collapse-monitor case: the hook's fixed batch (default 256, as the "
                        'configs)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--dtype', choices=['fp32', 'bf16'], default='fp32',
                        help='bf16 = GuardedAmpOptimWrapper(dtype=bfloat16), no loss scaler')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile backbones and heads (nn.Module.compile)')
    parser.add_argument('--fused', choices=['auto', 'on', 'off'], default='auto',
                        help='fused AdamW; auto = on for CUDA')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, help='torch CPU threads')
    parser.add_argument('--clock', choices=['wall', 'cpu'], default='wall',
                        help='cpu = process CPU time (CPU only; use with '
                        '--threads 1 on a shared machine)')
    parser.add_argument('--cases', nargs='+', choices=CASES, default=list(CASES))
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument('--profile', action='store_true',
                        help='print the top ops of one full step (torch.profiler)')
    parser.add_argument('--json', help='write the measurements here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys, e.g. model.backbone.use_sdpa=False')
    args = parser.parse_args()
    if args.clock == 'cpu' and args.device == 'cuda':
        parser.error('--clock cpu measures CPU work; use wall time on CUDA')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda but torch.cuda.is_available() is False')
    if args.threads:
        torch.set_num_threads(args.threads)
    args.fused = args.fused == 'on' or (args.fused == 'auto' and args.device == 'cuda')
    args.device_name = (torch.cuda.get_device_name() if args.device == 'cuda'
                        else 'CPU')

    cfg = load_config(args.backbone, args.cfg_options)
    args.size = args.size or PRESETS[args.backbone]['size']
    args.num_classes = args.num_classes or cfg.model.tasks.mlc.num_classes
    torch.manual_seed(0)
    batch = make_batch(cfg, args)
    built = {}
    for name in args.cases:
        print(f'building {name} ...', file=sys.stderr, flush=True)
        built[name] = build_case(name, cfg, batch, args)
    steps = {name: case.step for name, case in built.items()}
    times = time_interleaved(steps, args.iters, args.warmup, args.device,
                             args.clock)
    peaks = {} if args.no_memory else {
        name: step_peak_bytes(case.step, args.device)
        for name, case in built.items()}
    results = report(args, built, times, peaks)
    if args.profile and 'full' in built:
        from torch.profiler import ProfilerActivity, profile
        activities = [ProfilerActivity.CPU] + (
            [ProfilerActivity.CUDA] if args.device == 'cuda' else [])
        with profile(activities=activities) as prof:
            built['full'].step()
        key = 'self_cuda_time_total' if args.device == 'cuda' else 'self_cpu_time_total'
        print(prof.key_averages().table(sort_by=key, row_limit=25))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(copy.deepcopy(results), f, indent=1, default=str)


if __name__ == '__main__':
    main()
