"""Images/s per CPU core of the HVP-MTL pre-training data pipeline.

Generates JPEG images with the demo-world scene renderer (textured shapes on
textured backgrounds, Tencent ML-Images list format, ``--image-size`` px
square, JPEG quality 95), builds the real ``TencentMLImages`` dataset with the
``train_pipeline`` of a shipped pre-training config (decode -> two augmented
views: RandomResizedCrop, flip, colour jitter, RandAugment -> SimMIM mask ->
PackInputs) and reads samples in ONE process with one torch / OpenCV thread,
as one dataloader worker does. The rate is images per CPU-second of that
process (``time.process_time``), so it is the throughput of one core and is
barely affected by other load on the machine; the wall-clock rate is printed
next to it. A per-transform breakdown and the cost of ``default_collate``
(per image, batch 16) follow, then the cores per GPU the rate implies.

Usage::

    python tools/perf/data_pipeline.py                      # 500 px, Swin-B
    python tools/perf/data_pipeline.py --image-size 1024 --gpu-rate 250
"""
import argparse
import os.path as osp
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


class Timed:
    """Callable wrapper that adds its transform's CPU time to ``totals``."""

    def __init__(self, name, transform, totals):
        self.name, self.transform, self.totals = name, transform, totals

    def __call__(self, results):
        start = time.process_time()
        out = self.transform(results)
        self.totals[self.name] += time.process_time() - start
        return out


def instrument(pipeline, totals):
    """Wrap every transform (and every view transform of MultiViewWithMask)."""
    from hvp_mtl.datasets.transforms import MultiViewWithMask
    for i, transform in enumerate(pipeline.transforms):
        name = type(transform).__name__
        if isinstance(transform, MultiViewWithMask):
            for v, view in enumerate(transform.pipelines):
                view.transforms = [
                    Timed(f'  view {v}: {type(t).__name__}', t, totals)
                    for t in view.transforms]
            if transform.mask_generator is not None:
                transform.mask_generator = Timed(
                    f'  mask: {type(transform.mask_generator).__name__}',
                    transform.mask_generator, totals)
        pipeline.transforms[i] = Timed(name, transform, totals)


def build_dataset(config, data_root):
    """``TencentMLImages`` of ``config``'s train dataloader on ``data_root``."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS

    import hvp_mtl  # noqa: F401
    cfg = Config.fromfile(config)
    init_default_scope('mmpretrain')
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.update(data_root=data_root, data_prefix='images/',
                       ann_file='train.txt')
    return DATASETS.build(dataset_cfg)


def measure(dataset, totals, num_samples, warmup, rng):
    """(cpu_seconds, wall_seconds, stage totals, samples) of ``num_samples``
    reads (``totals`` is filled by the instrumented pipeline)."""
    order = rng.integers(0, len(dataset), warmup + num_samples)
    for idx in order[:warmup]:
        dataset[int(idx)]
    totals.clear()
    cpu, wall = time.process_time(), time.perf_counter()
    samples = [dataset[int(idx)] for idx in order[warmup:]]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu, wall, dict(totals), samples


def collate_seconds_per_image(samples, batch_size=16):
    """CPU seconds per image of ``default_collate`` over batches."""
    from mmengine.dataset import default_collate
    batches = [samples[i:i + batch_size]
               for i in range(0, len(samples) - batch_size + 1, batch_size)]
    if not batches:
        batches = [samples]
    start = time.process_time()
    for batch in batches:
        default_collate(batch)
    return (time.process_time() - start) / sum(len(b) for b in batches)


def main():
    """Generate images, time the pipeline, print the table and the rates."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=str(ROOT / 'configs/pretrain/hvp_swin-b.py'))
    parser.add_argument('--image-size', type=int, default=500,
                        help='side of the generated square JPEGs')
    parser.add_argument('--num-images', type=int, default=48)
    parser.add_argument('--samples', type=int, default=96, help='timed reads per repeat')
    parser.add_argument('--warmup', type=int, default=8)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--gpu-rate', type=float, default=200.,
                        help='images/s one GPU consumes (goal of the paper run)')
    parser.add_argument('--work-dir', help='default: a temporary directory')
    args = parser.parse_args()

    import cv2
    import torch
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from hvp_mtl.datasets.demo_world.writers import write_pretrain

    with tempfile.TemporaryDirectory() as tmp:
        root = osp.join(args.work_dir or tmp, 'pretrain')
        start = time.perf_counter()
        write_pretrain(root, np.random.default_rng(0), args.num_images, args.image_size)
        print(f'generated {args.num_images} images of {args.image_size} px in '
              f'{time.perf_counter() - start:.1f} s', file=sys.stderr)
        dataset = build_dataset(args.config, root)
        rng = np.random.default_rng(0)
        totals = defaultdict(float)
        instrument(dataset.pipeline, totals)
        runs = [measure(dataset, totals, args.samples, args.warmup if r == 0 else 0, rng)
                for r in range(args.repeats)]
    rates = sorted(args.samples / cpu for cpu, _, _, _ in runs)
    walls = sorted(args.samples / wall for _, wall, _, _ in runs)
    stages = defaultdict(float)
    for _, _, totals, _ in runs:
        for name, seconds in totals.items():
            stages[name] += seconds / (args.samples * args.repeats)
    collate = collate_seconds_per_image(runs[-1][3])
    total = sum(v for k, v in stages.items() if not k.startswith(' ')) + collate

    sample = runs[-1][3][0]
    print(f'\nHVP-MTL data pipeline: {osp.relpath(args.config, ROOT)}, '
          f'{args.image_size} px JPEGs, views {tuple(sample["inputs"][0].shape)}, '
          f'mask {tuple(sample["data_samples"].mask.shape)}, 1 process, '
          f'1 thread, {args.samples} samples x {args.repeats} repeats')
    print('| stage | CPU ms / image | share |')
    print('|---|---:|---:|')
    for name, seconds in stages.items():
        print(f'| {name} | {seconds * 1e3:.2f} | {seconds / total:.1%} |')
    print(f'| default_collate (batch 16) | {collate * 1e3:.2f} | {collate / total:.1%} |')
    median = rates[len(rates) // 2]
    print(f'images/s per core (CPU time): median {median:.1f} '
          f'[min {rates[0]:.1f}, max {rates[-1]:.1f}] over {args.repeats} repeats; '
          f'wall clock on this machine: median {walls[len(walls) // 2]:.1f}')
    print(f'cores per GPU at {args.gpu_rate:.0f} images/s/GPU: '
          f'{args.gpu_rate / median:.1f} (dataloader workers, excluding the '
          f'training process itself)')


if __name__ == '__main__':
    main()
