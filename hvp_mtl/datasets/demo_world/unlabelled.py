"""Unlabelled PNGs of random coloured shapes, for SimMIM-style smoke runs that need only images.

The images of the smallest real pre-training run (``configs/pretrain/baselines/
simmim_swin-tiny_demo.py``, ``tests/test_foundation.py``); unlike :func:`make_demo_world` they
carry no labels.
"""
import os
import os.path as osp

import numpy as np
from PIL import Image, ImageDraw

__all__ = ['write_unlabelled_images']


def write_unlabelled_images(out_dir, num, size=80, seed=0):
    """Write ``num`` PNGs ``{i:05d}.png`` of 1-3 random ellipses/rectangles on a random colour.

    Args:
        out_dir (str): Folder to write into (created).
        num (int): Number of images.
        size (int): Side of the square images in pixels.
        seed (int): Seed of ``numpy.random.default_rng``; the same seed gives the same files.
    """
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
