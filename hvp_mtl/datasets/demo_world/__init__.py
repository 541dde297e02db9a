"""A small procedurally generated image world with all four task formats.

:func:`make_demo_world` renders coloured, textured shapes on textured
backgrounds (:mod:`.scenes`) and writes, under ``out_dir``::

    pretrain/  train.txt, val.txt, dictionary_and_semantic_hierarchy.txt,
               images/...            Tencent ML-Images format (64 classes)
    cls/       train/<shape>/*.jpg, val/<shape>/*.jpg, meta/{train,val}.txt,
               classes.txt           ImageNet layout, 6 shape classes
    coco/      train/, val/, annotations/instances_{train,val}.json
    ade/       images/{training,validation}/*.jpg,
               annotations/{training,validation}/*.png
    world.json the settings and the class names of every task

The same seed gives byte-identical files. Each task draws from its own child
of ``numpy.random.SeedSequence(seed)``, so resizing one task leaves the
others unchanged. Pre-training on ``pretrain/`` (shapes, colours, textures,
counts) teaches exactly the cues that the three downstream sets are scored
on, so its benefit over random initialisation shows within minutes on CPU.
"""
import json
import os
import os.path as osp

import numpy as np

from .scenes import COLOURS, GRAY_LEVELS, PALETTES, SHAPES, TEXTURES, render_scene, sample_scene
from .taxonomy import DICTIONARY, class_names
from .writers import (
    SEG_CLASSES,
    SEG_PALETTE,
    write_ade,
    write_classification,
    write_coco,
    write_pretrain,
)

__all__ = ['make_demo_world', 'SHAPES', 'COLOURS', 'GRAY_LEVELS', 'PALETTES', 'TEXTURES',
           'SEG_CLASSES',
           'SEG_PALETTE', 'PRETRAIN_CLASSES', 'sample_scene', 'render_scene']

PRETRAIN_CLASSES = tuple(name for _, _, name in DICTIONARY)


def make_demo_world(out_dir: str,
                    seed: int = 0,
                    num_pretrain: int = 512,
                    num_cls: int = 384,
                    num_det: int = 192,
                    num_seg: int = 192,
                    size: int = 64,
                    palette: str = 'colour') -> str:
    """Write the demo world (see the module doc).

    Args:
        out_dir (str): Output directory (created; files are overwritten).
        seed (int): Master seed. Defaults to 0.
        num_pretrain (int): Pre-training images (1/8 go to ``val.txt``).
        num_cls (int): Classification images (1/4 go to ``val``).
        num_det (int): Detection images (1/4 go to ``val``).
        num_seg (int): Segmentation images (1/4 go to ``validation``).
        size (int): Image side in pixels. Defaults to 64.
        palette (str): ``'colour'`` (the demo world) or ``'gray'``: the colour-free variant,
            the same scenes from the same seed with every pixel R = G = B, objects in six gray
            levels instead of six colours, and the colour tags named after the levels
            (``intensity``, ``black`` ... ``white``, ``'black circle'`` ...); same files, class
            counts and splits, so every demo config runs on it unchanged. It measures what
            pre-training learns beyond colour.

    Returns:
        str: ``out_dir``.
    """
    if size < 32:
        raise ValueError(f'size must be at least 32 px, got {size}')
    if palette not in PALETTES:
        raise ValueError(f'palette must be one of {PALETTES}, got {palette!r}')
    streams = np.random.SeedSequence(seed).spawn(4)
    rngs = [np.random.default_rng(s) for s in streams]
    os.makedirs(out_dir, exist_ok=True)
    write_pretrain(osp.join(out_dir, 'pretrain'), rngs[0], num_pretrain, size, palette)
    write_classification(osp.join(out_dir, 'cls'), rngs[1], num_cls, size, palette)
    write_coco(osp.join(out_dir, 'coco'), rngs[2], num_det, size, palette)
    write_ade(osp.join(out_dir, 'ade'), rngs[3], num_seg, size, palette)
    world = dict(seed=seed, size=size, num_pretrain=num_pretrain,
                 num_cls=num_cls, num_det=num_det, num_seg=num_seg)
    if palette != 'colour':  # the colour world's file stays as it was
        world['palette'] = palette
    world.update(classes=dict(pretrain=class_names(palette), cls=list(SHAPES),
                              det=list(SHAPES), seg=list(SEG_CLASSES)))
    with open(osp.join(out_dir, 'world.json'), 'w', newline='\n') as f:
        json.dump(world, f, indent=1)
    return out_dir
