"""MCL's multi-level contrastive loss (arXiv 2304.02010, official
``LatentMultiPredictContrastHead`` applied per level and branch)."""
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_gather, get_dist_info
from mmpretrain.registry import MODELS

__all__ = ['MultiLevelContrastiveLoss', 'gather_targets']


@torch.no_grad()
def gather_targets(targets: torch.Tensor) -> torch.Tensor:
    """All ranks' targets, rank by rank: ``[B, D]`` -> ``[world * B, D]``.

    No gradient flows (targets come from the momentum encoder). In a single
    process the input is returned as it is.
    """
    _, world_size = get_dist_info()
    if world_size == 1:
        return targets
    return torch.cat(all_gather(targets.contiguous()))


@MODELS.register_module()
class MultiLevelContrastiveLoss(nn.Module):
    """``sum_i w_i * 2T * CE(p_i t^T / T, y_i + rank * B)`` for one branch.

    ``p_i`` ``[n_i, D]`` are the L2-normalised predictions of level ``i``
    (one per montage tile), ``t`` ``[world * B, D]`` the L2-normalised
    momentum-encoder embeddings of the *other* branch's full images, gathered
    over all ranks, and ``y_i`` the tiles' source indices in the local batch,
    offset by ``rank * B`` into the gathered targets. MCL sums this over both
    branches (query predictions vs key targets and vice versa).

    Args:
        level_weights (Sequence[float]): ``w_i`` (paper: 1/2, 1/4, 1/8, 1/8).
        temperature (float): ``T``. Defaults to 1.0.
    """

    def __init__(self,
                 level_weights: Sequence[float] = (0.5, 0.25, 0.125, 0.125),
                 temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        self.level_weights = tuple(float(w) for w in level_weights)
        self.temperature = float(temperature)

    def forward(self, predictions: List[torch.Tensor],
                local_targets: torch.Tensor,
                labels: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Per-level losses of one branch.

        Args:
            predictions (list[Tensor]): ``[n_i, D]`` per level, normalised.
            local_targets (Tensor): ``[B, D]`` target embeddings of this
                rank's images (normalised here, then gathered).
            labels (list[Tensor]): ``[n_i]`` source indices in ``0..B-1``.

        Returns:
            dict[str, Tensor]: ``level_{i}`` -> weighted scalar loss.
        """
        if len(predictions) != len(self.level_weights) or len(labels) != len(
                predictions):
            raise ValueError(f'{len(predictions)} prediction levels and '
                             f'{len(labels)} label levels for '
                             f'{len(self.level_weights)} level weights')
        targets = gather_targets(F.normalize(local_targets.detach(), dim=1))
        rank, _ = get_dist_info()
        offset = rank * local_targets.shape[0]
        losses = {}
        for i, (pred, label, weight) in enumerate(
                zip(predictions, labels, self.level_weights)):
            logits = pred.float() @ targets.float().t() / self.temperature
            losses[f'level_{i}'] = F.cross_entropy(logits, label + offset) * (
                2 * self.temperature * weight)
        return losses
