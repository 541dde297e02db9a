"""Images/s per CPU core of the HVP-MTL pre-training data pipeline, four ways side by side.

For each image set (scikit-image's photographs at native size, demo-world
scenes at 500 and 1,024 px; see :mod:`hvp_mtl.perf.data_pipeline_bench`)
builds the real ``TencentMLImages`` dataset with the ``train_pipeline`` of a
shipped pre-training config (decode -> two augmented views: RandomResizedCrop,
flip, colour jitter, RandAugment -> SimMIM mask -> PackInputs), reading the
images from indexed tar shards, and times four paths:

- ``reference``: the config as shipped, shards holding the files unchanged;
- ``pre-resized``: the same pipeline on shards packed with ``--max-short-side``
  (``build_tar_shard_index.py --max-short-side``, 600 px, JPEG 90);
- ``reduced-decode``: the fast pipeline (``LoadImageBytes`` +
  ``MultiViewWithMask(reduced_scale_decode=True)``,
  ``configs/pretrain/hvp_swin-b_fast-decode.py``) on the unchanged shards;
- ``both``: the fast pipeline on the pre-resized shards;
- ``both, cv2 jitter``: that with ColorJitter on OpenCV instead of mmpretrain's
  default Pillow backend (its hue step alone costs ~3 ms per view): NOT the
  paper's augmentation, shown for what the remaining cost is.

Samples are read in ONE process with one torch / OpenCV thread, as one
dataloader worker does; the rate is images per CPU-second of that process
(``time.process_time``), so other load on the machine barely moves it. The
paths are measured in turn within each repeat; "x reference" is the median of
the per-repeat ratios. Cores per GPU = GPU rate / rate (dataloader workers,
excluding the training process). A per-stage breakdown of one set follows.

Usage::

    python tools/perf/data_pipeline.py --json docs/results/data_pipeline_cpu.json
"""
import argparse
import json
import os.path as osp
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hvp_mtl.perf import data_pipeline_bench as bench
from hvp_mtl.utils.atomic_io import atomic_write

ROOT = Path(__file__).resolve().parents[2]
PATHS = {'reference': (False, False, None), 'pre-resized': (True, False, None),
         'reduced-decode': (False, True, None), 'both': (True, True, None),
         'both, cv2 jitter': (True, True, 'cv2')}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=str(ROOT / 'configs/pretrain/hvp_swin-b.py'))
    parser.add_argument('--sets', default='photos,generated-500,generated-1024',
                        help="comma-separated: 'photos' and/or 'generated-<px>'")
    parser.add_argument('--image-size', type=int,
                        help='one generated set of this size (--sets generated-<px>)')
    parser.add_argument('--num-images', type=int, default=36, help='train images per set')
    parser.add_argument('--samples', type=int, default=48, help='timed reads per repeat')
    parser.add_argument('--warmup', type=int, default=4)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--max-short-side', type=int, default=600,
                        help='short side of the pre-resized shards')
    parser.add_argument('--gpu-rates', default='200,400',
                        help='images/s one GPU consumes (goal 200, aim 400)')
    parser.add_argument('--stages-set', help='set whose per-stage breakdown is printed '
                        '(default: the last)')
    parser.add_argument('--json', help='write the measurements here')
    parser.add_argument('--work-dir', help='default: a temporary directory')
    args = parser.parse_args(argv)
    if args.image_size:
        args.sets = f'generated-{args.image_size}'
    return args


def run(args, work):
    """Write and pack the sets, then time every path; the result dict."""
    sets = args.sets.split(',')
    info, datasets = {}, {}
    for kind in sets:
        root = osp.join(work, kind)
        start = time.perf_counter()
        info[kind] = bench.write_image_set(root, kind, args.num_images)
        storage = {False: bench.pack_image_set(root),
                   True: bench.pack_image_set(root, args.max_short_side)}
        print(f'{kind}: {info[kind]["images"]} images (median short side '
              f'{info[kind]["median_px"]} px) written and packed in '
              f'{time.perf_counter() - start:.1f} s', file=sys.stderr)
        for path, (resized, fast, jitter) in PATHS.items():
            totals = bench.new_totals()
            dataset = bench.build_dataset(args.config, root, storage[resized], fast, jitter)
            bench.instrument(dataset.pipeline, totals)
            datasets[kind, path] = dataset, totals
    rates = {k: {p: [] for p in PATHS} for k in sets}
    walls = {k: {p: [] for p in PATHS} for k in sets}
    stages = {k: {p: {} for p in PATHS} for k in sets}
    rng, last = np.random.default_rng(0), {}
    for repeat in range(args.repeats):
        for (kind, path), (dataset, totals) in datasets.items():
            cpu, wall, times, samples = bench.measure(
                dataset, totals, args.samples, args.warmup if repeat == 0 else 0, rng)
            rates[kind][path].append(args.samples / cpu)
            walls[kind][path].append(args.samples / wall)
            for name, seconds in times.items():
                stages[kind][path][name] = stages[kind][path].get(name, 0.) + seconds * 1e3 / (
                    args.samples * args.repeats)
            last[kind, path] = samples
    for (kind, path), samples in last.items():
        stages[kind][path]['default_collate (batch 16)'] = (
            bench.collate_seconds_per_image(samples) * 1e3)
    sample = next(iter(last.values()))[0]
    import PIL
    return dict(config=osp.relpath(args.config, ROOT), sets=info, paths=list(PATHS),
                samples=args.samples, repeats=args.repeats,
                max_short_side=args.max_short_side,
                gpu_rates=[float(r) for r in args.gpu_rates.split(',')],
                views=list(sample['inputs'][0].shape),
                mask=list(sample['data_samples'].mask.shape),
                rates=rates, wall_rates=walls, stages_ms=stages,
                machine=dict(python=platform.python_version(), pillow=PIL.__version__,
                             processor=platform.processor() or platform.machine()))


def median(values):
    return float(np.median(values))


def print_tables(result, stages_set=None):
    """The side-by-side table and one set's per-stage breakdown."""
    rates, gpu = result['rates'], result['gpu_rates']
    print(f'\nHVP-MTL data pipeline: {result["config"]}, views {tuple(result["views"])}, '
          f'mask {tuple(result["mask"])}, 1 process, 1 thread, {result["samples"]} samples x '
          f'{result["repeats"]} repeats per set and path')
    print('| image set | path | images/s per core (median [min, max]) | x reference | '
          + ' | '.join(f'cores/GPU at {g:.0f} images/s' for g in gpu) + ' |')
    print('|---|---|---:|---:|' + '---:|' * len(gpu))
    for kind, by_path in rates.items():
        meta = result['sets'][kind]
        label = f'{kind} ({meta["images"]} images, median {meta["median_px"]} px)'
        for path, values in by_path.items():
            ratio = median([v / r for v, r in zip(values, by_path['reference'])])
            cores = ' | '.join(f'{g / median(values):.1f}' for g in gpu)
            print(f'| {label} | {path} | {median(values):.1f} [{min(values):.1f}, '
                  f'{max(values):.1f}] | {ratio:.2f} | {cores} |')
    kind = stages_set or list(rates)[-1]
    table = result['stages_ms'][kind]
    print(f'\nCPU ms per image by stage, {kind}:')
    print('| stage | ' + ' | '.join(table) + ' |')
    print('|---|' + '---:|' * len(table))
    names = list(dict.fromkeys(n for path in table.values() for n in path))
    for name in names:
        print(f'| {name} | ' + ' | '.join(
            f'{table[p][name]:.2f}' if name in table[p] else '-' for p in table) + ' |')


def main(argv=None):
    args = parse_args(argv)
    import cv2
    import torch
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args, args.work_dir or tmp)
    result['command'] = 'python tools/perf/data_pipeline.py ' + ' '.join(
        a for a in (argv if argv is not None else sys.argv[1:]))
    print_tables(result, args.stages_set)
    if args.json:
        with atomic_write(args.json) as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
