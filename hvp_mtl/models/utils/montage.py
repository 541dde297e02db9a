"""MCL's montage pyramid (arXiv 2304.02010): multi-scale images tiled on the device.

Level ``i`` of a branch takes one view of the batch, downsamples every image by
``r_i`` (nearest neighbour, as the official ``random_combine_img``) and tiles
``r_i x r_i`` downsampled images, drawn by ``randperm(r_i^2 * n_i) mod B``,
into each of ``n_i`` montages of the original size. A tile's label is the
index of its source image in the local batch. Level ``r = 1`` is the view
itself with labels ``0..B-1``.
"""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = ['downsample', 'build_montage', 'level_batch_sizes',
           'montage_pyramid', 'check_levels', 'level_embeddings']


def downsample(images: torch.Tensor, ratio: int) -> torch.Tensor:
    """``images`` ``[N, C, H, W]`` shrunk by ``ratio`` (nearest): ``[N, C, H/r, W/r]``."""
    if ratio == 1:
        return images
    return F.interpolate(images, scale_factor=1. / ratio, mode='nearest')


def build_montage(images: torch.Tensor, batch_size: int,
                  ratio: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Tile ``ratio x ratio`` downsampled images into ``batch_size`` montages.

    Args:
        images (Tensor): One view of the batch, ``[B, C, H, W]``; ``H`` and
            ``W`` divisible by ``ratio``.
        batch_size (int): Montages to build, ``n``.
        ratio (int): Downsampling factor ``r`` (tiles per side).

    Returns:
        tuple[Tensor, Tensor]: montages ``[n, C, H, W]`` and tile labels
        ``[n * r * r]`` (long, source index in ``0..B-1``), ordered montage by
        montage, then row by row (tile ``(m, a, b)`` is entry
        ``m * r * r + a * r + b`` and covers rows ``a*H/r..(a+1)*H/r`` and
        columns ``b*W/r..(b+1)*W/r`` of montage ``m``).
    """
    num, channels, height, width = images.shape
    if height % ratio or width % ratio:
        raise ValueError(f'image size {height}x{width} is not divisible by '
                         f'the montage ratio {ratio}')
    if ratio == 1:
        if batch_size != num:
            raise ValueError(f'level r=1 uses the view itself: batch_size '
                             f'must be {num}, got {batch_size}')
        return images, torch.arange(num, device=images.device)
    labels = torch.randperm(ratio * ratio * batch_size,
                            device=images.device) % num
    tiles = downsample(images, ratio)[labels]
    h, w = height // ratio, width // ratio
    montages = tiles.reshape(batch_size, ratio, ratio, channels, h, w)
    montages = montages.permute(0, 3, 1, 4, 2, 5).reshape(
        batch_size, channels, height, width)
    return montages, labels


def level_batch_sizes(batch: int, divisors: Sequence[int]) -> List[int]:
    """Montages per level: ``ceil(B / d)`` (paper: ``d = 1, 4, 16, 32``,
    ``B = 128`` -> ``[128, 32, 8, 4]``)."""
    return [max(1, math.ceil(batch / d)) for d in divisors]


def montage_pyramid(views: Sequence[torch.Tensor], ratios: Sequence[int],
                    batch_sizes: Sequence[int]
                    ) -> Tuple[torch.Tensor, List[torch.Tensor], List[int]]:
    """One branch of MCL: level ``i`` built from ``views[i]``, concatenated.

    Args:
        views (Sequence[Tensor]): One view per level, each ``[B, C, H, W]``.
        ratios (Sequence[int]): ``r_i`` (paper: 1, 2, 4, 8).
        batch_sizes (Sequence[int]): Montages per level ``n_i``.

    Returns:
        tuple: images ``[sum n_i, C, H, W]``, labels per level
        (``[n_i * r_i^2]`` each) and the counts ``n_i``.
    """
    if not len(views) == len(ratios) == len(batch_sizes):
        raise ValueError(f'{len(views)} views for {len(ratios)} ratios and '
                         f'{len(batch_sizes)} batch sizes')
    images, labels = [], []
    for view, ratio, size in zip(views, ratios, batch_sizes):
        montage, label = build_montage(view, size, ratio)
        images.append(montage)
        labels.append(label)
    return torch.cat(images), labels, [int(n) for n in batch_sizes]


def check_levels(ratios: Sequence[int], batch_divisors: Sequence[int],
                 head_pass: str) -> None:
    """Refuse level settings that MCL's level <-> pyramid mapping cannot take."""
    if len(ratios) != len(batch_divisors) or ratios[0] != 1 or (
            batch_divisors[0] != 1):
        raise ValueError('ratios and batch_divisors need one entry per '
                         'level and start with 1 (the full images), got '
                         f'{ratios} and {batch_divisors}')
    if head_pass not in ('joint', 'per_level'):
        raise ValueError("head_pass must be 'joint' or 'per_level', got "
                         f'{head_pass!r}')


def level_embeddings(maps: Sequence[torch.Tensor], counts: List[int],
                     cell_head, predictors,
                     head_pass: str = 'joint') -> List[torch.Tensor]:
    """Predictions per level: level ``i``'s images on ``P_{5-i}``.

    Args:
        maps (Sequence[Tensor]): FPN maps ``P2..P5`` of the pyramid batch
            ``[sum n_i, C, h, w]`` (levels in :func:`montage_pyramid`'s order).
        counts (list[int]): ``n_i``.
        cell_head (nn.Module): ``MCLCellHead`` (one embedding per cell).
        predictors (nn.Module): ``MCLPredictors`` (one MLP per level).
        head_pass (str): ``'joint'``: all levels through the cell head in one
            pass; ``'per_level'``: one pass per level.

    Returns:
        list[Tensor]: ``[n_i * r_i^2, D]`` per level, L2-normalised.
    """
    per_level = list(maps[-len(counts):])[::-1]
    starts = [sum(counts[:i]) for i in range(len(counts))]
    slices = [fmap[s:s + n] for fmap, s, n in zip(per_level, starts, counts)]
    if head_pass == 'joint':
        return predictors(cell_head(slices))
    return predictors([cell_head([s])[0] for s in slices])
