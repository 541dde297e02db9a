"""Frozen-backbone features for probes, sharded over ranks without padding.

:class:`RankShardSampler` gives rank ``r`` the items ``r, r + W, r + 2W, ...``
(no padding, no shuffling), so a rank's features belong to distinct images
and :func:`gather_shards` can put everyone's features back in dataset order.
"""
import copy
import math
from typing import Iterator, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.dist import all_gather, get_dist_info
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = [
    'RankShardSampler', 'build_sharded_dataloader', 'resolve_backbone',
    'extract_features', 'gather_shards'
]


class RankShardSampler(Sampler):
    """Indices ``rank, rank + world_size, ...`` of a dataset, in order.

    Args:
        dataset (Dataset): The dataset to shard.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.rank, self.world_size = get_dist_info()
        self.num_items = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_items, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_items, self.world_size))


def build_sharded_dataloader(dataloader_cfg: Union[dict, DataLoader]) -> \
        DataLoader:
    """Build a dataloader whose sampler is :class:`RankShardSampler`.

    Args:
        dataloader_cfg (dict): An mmengine dataloader config; its ``sampler``
            is replaced, ``collate_fn`` defaults to ``default_collate``.

    Returns:
        DataLoader: The dataloader of this rank's shard.
    """
    cfg = copy.deepcopy(dataloader_cfg)
    dataset = cfg['dataset']
    if isinstance(dataset, dict):
        dataset = DATASETS.build(dataset)
    cfg.update(dataset=dataset, sampler=RankShardSampler(dataset))
    cfg.setdefault('collate_fn', dict(type='default_collate'))
    cfg.pop('persistent_workers', None)  # built again at every probe
    return Runner.build_dataloader(cfg)


def resolve_backbone(model: nn.Module, use_teacher: bool = False) -> nn.Module:
    """The student's or the EMA teacher's backbone of an algorithm.

    Tries ``model.get_backbone(use_teacher)``, then ``model.backbone`` (or
    ``model.teacher.module.backbone`` / ``model.teacher.backbone`` for the
    teacher).

    Args:
        model (nn.Module): The algorithm, possibly wrapped (DDP).
        use_teacher (bool): Return the teacher's backbone.

    Returns:
        nn.Module: The backbone.
    """
    model = model.module if is_model_wrapper(model) else model
    if hasattr(model, 'get_backbone'):
        return model.get_backbone(use_teacher)
    if not use_teacher:
        return model.backbone
    teacher = getattr(model, 'teacher', None)
    for candidate in (getattr(teacher, 'module', None), teacher):
        if candidate is not None and hasattr(candidate, 'backbone'):
            return candidate.backbone
    raise AttributeError(f'{type(model).__name__} has no EMA teacher backbone '
                         '(looked for teacher.module.backbone and '
                         'teacher.backbone)')


def pooled_feature(outputs) -> torch.Tensor:
    """Global-average-pool the last backbone output to [B, D] (fp32)."""
    last = outputs[-1] if isinstance(outputs, (tuple, list)) else outputs
    if isinstance(last, (tuple, list)):  # e.g. ViT (patch_tokens, cls_token)
        last = last[0]
    last = last.float()
    return last.mean(dim=(2, 3)) if last.dim() == 4 else last


@torch.no_grad()
def extract_features(model: nn.Module,
                     dataloader: DataLoader,
                     use_teacher: bool = False,
                     normalize: bool = True) -> Tuple[torch.Tensor, ...]:
    """L2-normalised pooled last-stage features of this rank's images.

    The backbone runs on the unmasked image in eval mode; the training mode
    of every module is restored afterwards.

    Args:
        model (nn.Module): An algorithm with ``data_preprocessor`` and a
            backbone (see :func:`resolve_backbone`); may be DDP-wrapped.
        dataloader (DataLoader): Yields packed single-view batches whose
            samples carry ``gt_label`` (labels are -1 where absent).
        use_teacher (bool): Use the EMA teacher's backbone.
        normalize (bool): L2-normalise the features. Defaults to True.

    Returns:
        tuple[Tensor, Tensor]: features float32 [n_r, D] and labels int64
        [n_r], on the model's device.
    """
    model = model.module if is_model_wrapper(model) else model
    backbone = resolve_backbone(model, use_teacher)
    was_training = backbone.training
    backbone.eval()
    feats, labels = [], []
    try:
        for data in dataloader:
            data = model.data_preprocessor(data, False)
            inputs = data['inputs']
            inputs = inputs[0] if isinstance(inputs, list) else inputs
            feat = pooled_feature(backbone(inputs))
            feats.append(F.normalize(feat, dim=1) if normalize else feat)
            labels.extend(
                int(s.gt_label[0]) if 'gt_label' in s else -1
                for s in data['data_samples'])
    finally:
        backbone.train(was_training)
    if not feats:
        raise ValueError('the feature dataloader of this rank is empty; a '
                         'probe set needs at least one image per process')
    feats = torch.cat(feats)
    return feats, torch.tensor(labels, dtype=torch.long, device=feats.device)


def gather_shards(local: torch.Tensor, num_items: int) -> torch.Tensor:
    """Reassemble :class:`RankShardSampler` shards in dataset order.

    Args:
        local (torch.Tensor): This rank's rows [n_r, ...].
        num_items (int): N, the dataset length (at least the world size,
            so that no shard is empty).

    Returns:
        torch.Tensor: All rows [N, ...] in dataset order, on every rank.
    """
    _, world_size = get_dist_info()
    if world_size == 1:
        return local
    per_rank = math.ceil(num_items / world_size)
    padded = local.new_zeros((per_rank, *local.shape[1:]))
    padded[:local.shape[0]] = local
    stacked = torch.stack(all_gather(padded), dim=1)  # [per_rank, W, ...]
    return stacked.reshape(per_rank * world_size,
                           *local.shape[1:])[:num_items]
