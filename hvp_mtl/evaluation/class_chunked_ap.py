"""Average precision over many images and classes in bounded memory.

At the end of a pre-training run the validation scores 88,739 images on
11,166 classes. Keeping every image's dense score and target, pickling them
to rank 0 and stacking them there needs tens of GB on one process. Here each
rank keeps only the scores *it* produced (fp32, or fp16/bf16 as they came,
losslessly), the targets travel as sparse class ids, and AP is computed one
chunk of classes at a time: for chunk ``k`` every rank sends its rows of
those columns to rank ``k % world_size``, which sorts them. Peak memory per
rank is its own scores plus one ``[N, chunk]`` slice.

The images are put in mmengine's ``collect_results`` order (rank 0's first
sample, rank 1's first, ..., rank 0's second, ...; ``zip_longest``) and cut
to the dataset size, which drops the sampler's padding. Scores are sorted
with a stable sort, so ties are broken in that image order whatever the
chunking or the number of ranks: the result equals the dense computation on
the same images exactly.
"""
from typing import List, Sequence

import numpy as np
import torch
from mmengine.dist import all_gather_object, gather, get_dist_info

__all__ = ['average_precision_per_class', 'class_chunked_average_precision']


def average_precision_per_class(pred: torch.Tensor,
                                target: torch.Tensor,
                                chunk_size: int = 512) -> torch.Tensor:
    """Average precision of every class, vectorised over class chunks.

    Same definition as mmpretrain's ``_average_precision``: the mean, over
    the positives of a class, of the precision ``k / r`` at the rank ``r``
    of its ``k``-th positive. Computed with a stable sort, so tied scores
    are ranked in image order whatever the chunking; only the positives'
    ranks are kept after the sort (no dense cumulative sums).

    Args:
        pred (torch.Tensor): Scores, float [N, C].
        target (torch.Tensor): Positives, bool or 0/1 [N, C].
        chunk_size (int): Classes sorted at once; bounds memory to about
            ``N * chunk_size * 13`` bytes (fp32 keys, int64 order, bool hits).

    Returns:
        torch.Tensor: float64 [C] AP in [0, 1]; NaN for a class without any
        positive.
    """
    num_classes = pred.shape[1]
    target = target.bool()
    ap = torch.empty(num_classes, dtype=torch.float64)
    for start in range(0, num_classes, chunk_size):
        stop = min(start + chunk_size, num_classes)
        # one contiguous row per class: sorting along rows is cache-friendly
        scores = pred[:, start:stop].t().float().contiguous()
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
        del scores
        hits = torch.gather(target[:, start:stop].t(), 1, order)
        del order
        rows, ranks = hits.nonzero(as_tuple=True)  # row-major: ranks ascend
        num_pos = hits.sum(1)
        first = torch.cumsum(num_pos, 0) - num_pos  # first hit of each row
        kth = torch.arange(len(rows)) - first[rows] + 1
        precision = kth.double() / (ranks + 1).double()
        total = torch.zeros(stop - start, dtype=torch.float64)
        total.index_add_(0, rows, precision)
        ap[start:stop] = total / num_pos  # NaN if no positive
    return ap


def _collect_order(counts: Sequence[int], size: int):
    """Rows kept from the ``[W, M]`` grid of gathered rows, in mmengine's
    ``zip_longest`` order, cut to ``size``: a bool mask over the flattened
    ``[M, W]`` layout."""
    max_count = max(counts)
    valid = torch.arange(max_count)[:, None] < torch.tensor(counts)[None, :]
    flat = valid.flatten()
    kept = torch.cumsum(flat.long(), 0) <= size
    return flat & kept


def _global_positives(positives: List[np.ndarray], counts: Sequence[int],
                      size: int):
    """Every image's positive class ids in collect order.

    Returns:
        tuple: ``(rows, classes)`` int64 arrays sorted by class (the
        coordinates of the positives in the ``[size, C]`` target).
    """
    per_rank = all_gather_object(positives)
    rows, classes = [], []
    row = 0
    for i in range(max(counts)):
        for rank_list in per_rank:
            if i < len(rank_list) and row < size:
                rows.append(np.full(len(rank_list[i]), row, np.int64))
                classes.append(rank_list[i].astype(np.int64))
                row += 1
    rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    classes = np.concatenate(classes) if classes else np.zeros(0, np.int64)
    order = np.argsort(classes, kind='stable')
    return rows[order], classes[order]


def _local_columns(score_batches: List[torch.Tensor], start: int, stop: int,
                   rows: int) -> torch.Tensor:
    """This rank's scores of classes ``[start, stop)``, padded to ``rows``."""
    dtype = score_batches[0].dtype if score_batches else torch.float32
    out = torch.zeros(rows, stop - start, dtype=dtype)
    offset = 0
    for batch in score_batches:
        out[offset:offset + len(batch)] = batch[:, start:stop]
        offset += len(batch)
    return out


def class_chunked_average_precision(score_batches: List[torch.Tensor],
                                    positives: List[np.ndarray],
                                    num_classes: int, size: int,
                                    chunk_size: int = 128) -> torch.Tensor:
    """AP of every class over all ranks' images; a collective.

    Args:
        score_batches (list[torch.Tensor]): This rank's scores, one
            ``[B, C]`` CPU tensor per processed batch, in processing order.
        positives (list[np.ndarray]): This rank's positive class ids, one
            int array per image, same order.
        num_classes (int): C.
        size (int): Images of the dataset (the sampler's padding is dropped).
        chunk_size (int): Classes per exchanged slice; each step moves an
            ``[N, chunk_size]`` slice to one rank.

    Returns:
        torch.Tensor: float64 [C] AP in [0, 1] on every rank, NaN for a class
        without a positive.
    """
    rank, world_size = get_dist_info()
    counts = all_gather_object(len(positives))
    max_count = max(counts)
    keep = _collect_order(counts, size)
    num_kept = int(keep.sum())
    pos_rows, pos_classes = _global_positives(positives, counts, size)
    bounds = np.searchsorted(pos_classes, np.arange(0, num_classes + chunk_size,
                                                    chunk_size))
    mine = {}
    for chunk, start in enumerate(range(0, num_classes, chunk_size)):
        stop = min(start + chunk_size, num_classes)
        owner = chunk % world_size
        local = _local_columns(score_batches, start, stop, max_count)
        parts = gather(local, dst=owner)
        del local
        if rank != owner:
            continue
        # [W, M, c] -> [M, W, c]: rank 0's i-th image, rank 1's i-th, ...
        scores = torch.stack(parts, 1).flatten(0, 1)
        del parts
        if not bool(keep.all()):
            scores = scores[keep]  # drop the sampler's padding
        target = torch.zeros(num_kept, stop - start, dtype=torch.bool)
        lo, hi = bounds[chunk], bounds[chunk + 1]
        target[torch.from_numpy(pos_rows[lo:hi]),
               torch.from_numpy(pos_classes[lo:hi] - start)] = True
        mine[start] = average_precision_per_class(scores, target, chunk_size)
    ap = torch.empty(num_classes, dtype=torch.float64)
    for part in all_gather_object(mine):
        for start, values in part.items():
            ap[start:start + len(values)] = values
    return ap
