"""Weighted k-nearest-neighbour classification on frozen features (DINO).

The probe of DINO (arXiv 2104.14294, §4.1 / its ``eval_knn.py``) and DINOv2:
features are L2-normalised, a query's ``k`` most cosine-similar training
features vote for their labels with weight ``exp(sim / T)``, the class with
the largest summed weight wins. Defaults ``k=20``, ``T=0.07``.

Distributed: the training features ("memory bank") stay sharded over ranks.
Every rank finds the top-k neighbours of *all* queries inside its own shard;
the ``world_size * k`` candidates are all-gathered and the global top-k is
taken from them, which is exactly the top-k over the union of the shards. No
rank ever holds the full bank (1.28M x 1024 floats for ImageNet-1K Swin-B).
"""
from typing import Dict, Sequence, Tuple

import torch
from mmengine.dist import all_gather, get_world_size

__all__ = ['knn_neighbours', 'weighted_knn_scores', 'topk_accuracy']


@torch.no_grad()
def knn_neighbours(query: torch.Tensor,
                   bank: torch.Tensor,
                   bank_labels: torch.Tensor,
                   k: int,
                   chunk_size: int = 1024) -> Tuple[torch.Tensor, torch.Tensor]:
    """Top-k cosine neighbours of every query in a (possibly sharded) bank.

    Args:
        query (torch.Tensor): L2-normalised query features [M, D], the same on
            every rank.
        bank (torch.Tensor): This rank's L2-normalised bank features [N_r, D].
        bank_labels (torch.Tensor): int64 [N_r].
        k (int): Neighbours per query (clipped to the total bank size).
        chunk_size (int): Queries compared at once (memory ``chunk * N_r``).

    Returns:
        tuple[Tensor, Tensor]: similarities float32 [M, k'] sorted descending
        and labels int64 [M, k'], ``k' = min(k, sum_r N_r)``.
    """
    with torch.autocast(device_type=query.device.type, enabled=False):
        query, bank = query.float(), bank.float()
        num_query = query.shape[0]
        local_k = min(k, bank.shape[0])
        sims = query.new_full((num_query, k), float('-inf'))
        labels = bank_labels.new_zeros((num_query, k))
        for start in range(0, num_query, chunk_size):
            sim = query[start:start + chunk_size] @ bank.t()
            top_sim, top_idx = sim.topk(local_k, dim=1)
            sims[start:start + chunk_size, :local_k] = top_sim
            labels[start:start + chunk_size, :local_k] = bank_labels[top_idx]
        total = int(bank.shape[0])
        if get_world_size() > 1:
            total = int(sum(int(n) for n in all_gather(
                torch.tensor([bank.shape[0]], device=bank.device))))
            sims = torch.cat(all_gather(sims), dim=1)  # [M, world * k]
            labels = torch.cat(all_gather(labels), dim=1)
        k = min(k, total)
        sims, order = sims.topk(k, dim=1)
        return sims, torch.gather(labels, 1, order)


@torch.no_grad()
def weighted_knn_scores(neighbour_sims: torch.Tensor,
                        neighbour_labels: torch.Tensor,
                        num_classes: int,
                        temperature: float = 0.07) -> torch.Tensor:
    """Class scores ``sum_j exp(sim_j / T) [label_j == c]`` per query.

    Args:
        neighbour_sims (torch.Tensor): float [M, k] cosine similarities.
        neighbour_labels (torch.Tensor): int64 [M, k].
        num_classes (int): C.
        temperature (float): T. Defaults to 0.07.

    Returns:
        torch.Tensor: float32 [M, C] unnormalised vote weights.
    """
    with torch.autocast(device_type=neighbour_sims.device.type,
                        enabled=False):
        weights = (neighbour_sims.float() / temperature).exp()
        scores = weights.new_zeros((weights.shape[0], num_classes))
        return scores.scatter_add_(1, neighbour_labels, weights)


def topk_accuracy(scores: torch.Tensor,
                  labels: torch.Tensor,
                  topk: Sequence[int] = (1, 5)) -> Dict[str, float]:
    """Top-k accuracy in percent, as ``{'top1': .., 'top5': ..}``.

    Args:
        scores (torch.Tensor): [M, C] class scores.
        labels (torch.Tensor): int64 [M] true classes.
        topk (Sequence[int]): Which k to report (clipped to C).

    Returns:
        dict[str, float]: accuracy per k.
    """
    max_k = min(max(topk), scores.shape[1])
    pred = scores.topk(max_k, dim=1).indices  # [M, max_k]
    hit = pred.eq(labels.view(-1, 1).to(pred.device))
    return {
        f'top{k}': hit[:, :min(k, max_k)].any(dim=1).float().mean().item() *
        100.0
        for k in topk
    }
