"""DDP step with ``find_unused_parameters`` True vs False, side by side.

Two gloo processes on the CPU train two copies of the same HVP-MTL model
(built from the shipped config, as ``step.py`` does) through mmengine's
``MMDistributedDataParallel``, one wrapped with
``find_unused_parameters=True`` (what the configs used before the frozen
SwAV prototypes stayed in the graph), one with ``False`` (the configs now).
Every round runs one step of each, in alternating order, after a barrier;
the ratio True / False is paired per round. With ``True`` DDP walks the
autograd graph from the outputs after every forward to find parameters
without a gradient.

Usage::

    python tools/perf/ddp_unused.py --backbone tiny --iters 20
    python tools/perf/ddp_unused.py --backbone swin-t --size 64 --batch 2
"""
import argparse
import copy
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hvp_mtl.perf.step_cases import PRESETS, load_config, make_batch, optim_wrapper_cfg
from hvp_mtl.perf.timing import quantiles


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, args, queue) -> None:
    from mmengine.model import MMDistributedDataParallel
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.registry import MODELS
    torch.set_num_threads(args.threads)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=world)
    cfg = load_config(args.backbone)
    cfg.model.backbone.img_size = args.size
    cfg.model.tasks.mlc.num_classes = args.num_classes
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.manual_seed(rank)
    batch = make_batch(cfg, args)
    runs = {}
    for unused in (True, False):
        replica = copy.deepcopy(model)
        replica.after_train_step(before_training=True)
        ddp = MMDistributedDataParallel(
            module=replica, device_ids=None, broadcast_buffers=False,
            find_unused_parameters=unused)
        wrapper = build_optim_wrapper(replica, optim_wrapper_cfg(cfg, args))

        def step(ddp=ddp, wrapper=wrapper, replica=replica):
            ddp.train_step(batch, wrapper)
            replica.after_train_step()

        runs[f'find_unused_parameters={unused}'] = step
    names = list(runs)
    times = {name: [] for name in names}
    for round_index in range(args.warmup + args.iters):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            dist.barrier()
            start = time.perf_counter()
            runs[name]()
            dist.barrier()
            if round_index >= args.warmup:
                times[name].append(time.perf_counter() - start)
    if rank == 0:
        queue.put(times)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--backbone', choices=sorted(PRESETS), default='tiny')
    parser.add_argument('--size', type=int, help='view size (preset default)')
    parser.add_argument('--batch', type=int, default=2, help='images per rank')
    parser.add_argument('--num-classes', type=int, default=1000)
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads per process')
    args = parser.parse_args()
    args.size = args.size or PRESETS[args.backbone]['size']
    args.device, args.dtype, args.fused, args.channels_last = (
        'cpu', 'fp32', True, False)
    os.environ.setdefault('OMP_NUM_THREADS', str(args.threads))
    ctx = mp.get_context('spawn')
    queue = ctx.SimpleQueue()
    mp.spawn(_worker, args=(2, _free_port(), args, queue), nprocs=2)
    times = queue.get()
    true_key, false_key = list(times)
    print(f'DDP step, 2 gloo processes on the CPU: backbone={args.backbone} '
          f'size={args.size} batch={args.batch}/rank classes='
          f'{args.num_classes} threads/process={args.threads} '
          f'rounds={args.iters} (warm-up {args.warmup}), wall clock, '
          'paired per round')
    print('| wrapper | ms/step median | p10-p90 ms |')
    print('|---|---:|---:|')
    for name, values in times.items():
        med, lo, hi = quantiles(values)
        print(f'| {name} | {med * 1e3:.1f} | {lo * 1e3:.1f}-{hi * 1e3:.1f} |')
    ratio = quantiles([a / b for a, b in zip(times[true_key],
                                             times[false_key])])
    print(f'ratio True / False: {ratio[0]:.3f} [{ratio[1]:.3f}, '
          f'{ratio[2]:.3f}] (median [p10, p90])')


if __name__ == '__main__':
    main()
