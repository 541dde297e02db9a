"""The main job on a laptop: a real few-iteration CPU pre-training run.

Writes a small generated image set, then pre-trains through ``tools/train.py``.
(The full HVP-MTL demo — pre-train, export, fine-tune in three toolkits — replaces
this once the algorithm and the demo world land.)
"""
import argparse
import os
import os.path as osp
import subprocess
import sys

import numpy as np
from PIL import Image, ImageDraw

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))


def write_images(out_dir, num, size=80, seed=0):
    """Write ``num`` deterministic PNG images of coloured shapes to ``out_dir``."""
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    for i in range(num):
        img = Image.new('RGB', (size, size), tuple(int(c) for c in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
            x1, y1 = x0 + int(rng.integers(8, size // 2)), y0 + int(rng.integers(8, size // 2))
            fill = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
        img.save(osp.join(out_dir, f'{i:05d}.png'))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    parser.add_argument('--num-images', type=int, default=32)
    parser.add_argument('--iters', type=int, default=8)
    args = parser.parse_args(argv)

    data_root = osp.join(ROOT, 'data', 'demo', 'simmim')
    write_images(data_root, args.num_images)
    cfg = osp.join(ROOT, 'configs', 'pretrain', 'baselines', 'simmim_swin-tiny_demo.py')
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), cfg, '--work-dir', args.work_dir,
           '--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
           f'train_cfg.max_iters={args.iters}']
    print('+', ' '.join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT)


if __name__ == '__main__':
    sys.exit(main())
