"""Time to resume at iteration K of an epoch: O(1) sampler seek vs replay.

mmengine's ``IterBasedTrainLoop`` resumes by calling ``next()`` on the
dataloader once per already-trained iteration, i.e. it reads, decodes and
augments every skipped batch. ``ResumableDefaultSampler`` (used by this
project's loops) starts the epoch's index list at the saved position instead.
This script measures both on a generated JPEG dataset, with the real data
pipeline, and prints them side by side::

    python tools/perf/resume_cost.py --iters 10000 --batch-size 2 \
        --num-workers 2

Both paths end with the first batch after the resume point in hand; the
replay path is what mmengine does (``for _ in range(K): next(iterator)``).
"""
import argparse
import os
import os.path as osp
import tempfile
import time

import numpy as np


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iters', type=int, default=10000,
                        help='resume at this iteration of the epoch')
    parser.add_argument('--batch-size', type=int, default=2,
                        help='per-process batch size')
    parser.add_argument('--num-workers', type=int, default=2)
    parser.add_argument('--img-size', type=int, default=224,
                        help='crop size of the pipeline')
    parser.add_argument('--unique-images', type=int, default=256,
                        help='distinct generated JPEGs (repeated to fill '
                        'the epoch)')
    parser.add_argument('--work-dir', default=None,
                        help='where to write the images (default: a temp dir)')
    return parser.parse_args()


def write_images(directory, count, seed=0):
    """``count`` random 256x320 JPEGs in ``directory/class0``."""
    import cv2
    rng = np.random.default_rng(seed)
    folder = osp.join(directory, 'class0')
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        image = rng.integers(0, 255, (256, 320, 3), dtype=np.uint8)
        cv2.imwrite(osp.join(folder, f'{i:05d}.jpg'), image)


def build_loader(root, args, sampler_type, repeats):
    from mmengine.runner import Runner
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='RandomResizedCrop', scale=args.img_size,
             crop_ratio_range=(0.2, 1.0)),
        dict(type='RandomFlip', prob=0.5),
        dict(type='SimMIMMaskGenerator', input_size=args.img_size,
             mask_patch_size=32, model_patch_size=4, mask_ratio=0.6),
        dict(type='PackInputs', algorithm_keys=['mask']),
    ]
    dataset = dict(
        type='mmengine.RepeatDataset', times=repeats,
        dataset=dict(type='mmpretrain.CustomDataset', data_root=root,
                     with_label=False, pipeline=pipeline))
    loader = dict(
        batch_size=args.batch_size, num_workers=args.num_workers,
        persistent_workers=False, dataset=dataset,
        sampler=dict(type=sampler_type, shuffle=True, seed=0),
        collate_fn=dict(type='default_collate'))
    return Runner.build_dataloader(loader, seed=0)


def time_replay(loader, iters):
    start = time.perf_counter()
    iterator = iter(loader)
    for _ in range(iters):  # what IterBasedTrainLoop.run does on resume
        next(iterator)
    first = next(iterator)
    return time.perf_counter() - start, first


def time_seek(loader, iters, batch_size):
    start = time.perf_counter()
    loader.sampler.set_resume_position(0, iters * batch_size)
    first = next(iter(loader))
    return time.perf_counter() - start, first


def main():
    args = parse_args()
    from mmengine.registry import init_default_scope

    import hvp_mtl  # noqa: F401  (registers the resumable samplers)
    init_default_scope('mmpretrain')
    with tempfile.TemporaryDirectory() as tmp:
        root = args.work_dir or tmp
        write_images(root, args.unique_images)
        needed = (args.iters + 2) * args.batch_size
        repeats = -(-needed // args.unique_images)
        seek_loader = build_loader(root, args, 'ResumableDefaultSampler',
                                   repeats)
        replay_loader = build_loader(root, args, 'ResumableDefaultSampler',
                                     repeats)
        seek_s, seek_batch = time_seek(seek_loader, args.iters,
                                       args.batch_size)
        replay_s, replay_batch = time_replay(replay_loader, args.iters)
    same = [s.img_path for s in seek_batch['data_samples']] == \
        [s.img_path for s in replay_batch['data_samples']]
    samples = args.iters * args.batch_size
    print(f'resume at iteration {args.iters} of an epoch '
          f'(batch {args.batch_size}, {args.num_workers} workers, '
          f'{args.img_size}px pipeline, {len(seek_loader.dataset)} samples)')
    print(f'{"method":<28}{"seconds":>10}')
    print(f'{"replay (mmengine)":<28}{replay_s:>10.2f}')
    print(f'{"sampler seek (hvp_mtl)":<28}{seek_s:>10.2f}')
    print(f'speed-up: {replay_s / seek_s:.0f}x; replay cost per skipped '
          f'sample: {1e3 * replay_s / samples:.2f} ms; same next batch: '
          f'{same}')


if __name__ == '__main__':
    main()
