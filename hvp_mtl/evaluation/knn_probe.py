"""The kNN probe end to end: features of a labelled train/val pair, then
weighted voting (see :mod:`.knn_classifier`). Shared by
``tools/analysis_tools/knn_probe.py`` and :class:`~hvp_mtl.engine.hooks.
KNNProbeHook`; correct for any number of processes (equal to a
single-process run up to ties in similarity)."""
from typing import Dict, Optional

import torch
from mmengine.dist import get_world_size
from torch import nn
from torch.utils.data import DataLoader

from .feature_extraction import extract_features, gather_shards
from .knn_classifier import knn_neighbours, topk_accuracy, weighted_knn_scores

__all__ = ['run_knn_probe', 'num_classes_of']


def num_classes_of(dataloader: DataLoader) -> Optional[int]:
    """Number of classes from the dataset's ``metainfo['classes']``."""
    dataset = dataloader.dataset
    classes = getattr(dataset, 'metainfo', {}).get('classes')
    return len(classes) if classes else None


@torch.no_grad()
def run_knn_probe(model: nn.Module,
                  train_dataloader: DataLoader,
                  val_dataloader: DataLoader,
                  k: int = 20,
                  temperature: float = 0.07,
                  use_teacher: bool = False,
                  num_classes: Optional[int] = None) -> Dict[str, float]:
    """kNN top-1/top-5 of frozen backbone features, in percent.

    Args:
        model (nn.Module): The algorithm (possibly DDP-wrapped).
        train_dataloader (DataLoader): The memory bank images, sharded with
            :class:`~.feature_extraction.RankShardSampler`.
        val_dataloader (DataLoader): The query images, sharded the same way.
        k (int): Neighbours. Defaults to 20.
        temperature (float): Voting temperature. Defaults to 0.07.
        use_teacher (bool): Probe the EMA teacher's backbone.
        num_classes (int, optional): Defaults to the train set's classes.

    Returns:
        dict[str, float]: ``top1``, ``top5``, and ``chance`` (100 / C).
    """
    for loader in (train_dataloader, val_dataloader):
        if len(loader.dataset) < get_world_size():
            raise ValueError(
                f'the kNN probe set {type(loader.dataset).__name__} has '
                f'{len(loader.dataset)} images, fewer than the '
                f'{get_world_size()} processes')
    bank, bank_labels = extract_features(model, train_dataloader, use_teacher)
    query, query_labels = extract_features(model, val_dataloader, use_teacher)
    if (bank_labels < 0).any() or (query_labels < 0).any():
        raise ValueError('the kNN probe needs single-label datasets whose '
                         'samples carry gt_label')
    num_val = len(val_dataloader.dataset)
    query = gather_shards(query, num_val)
    query_labels = gather_shards(query_labels, num_val)
    num_classes = num_classes or num_classes_of(train_dataloader)
    if num_classes is None:
        raise ValueError('pass num_classes: the train set has no '
                         "metainfo['classes']")
    sims, labels = knn_neighbours(query, bank, bank_labels, k)
    scores = weighted_knn_scores(sims, labels, num_classes, temperature)
    result = topk_accuracy(scores, query_labels, topk=(1, 5))
    result['chance'] = 100.0 / num_classes
    return result
