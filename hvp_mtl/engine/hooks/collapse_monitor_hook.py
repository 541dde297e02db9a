"""A collapse monitor: how many directions the student's and the teacher's features use.

A pre-training whose features collapse (every image onto a few directions) can still lower its
losses; a user on a cluster should see it in the run's first hour, not after a fine-tune. Every
``interval`` iterations this hook runs the student's and the EMA teacher's backbones on one fixed
batch of training images and logs RankMe and the top-5 principal components' share of their
pooled features (:mod:`hvp_mtl.evaluation.representation_rank`), with one warning when RankMe
falls below a threshold.
"""
from typing import Dict, Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from hvp_mtl.evaluation.feature_extraction import pooled_feature, resolve_backbone
from hvp_mtl.evaluation.representation_rank import rankme, top_pc_variance_share

from ..runner.resume_state import preserved_rng_state

__all__ = ['CollapseMonitorHook']


def _first_view(inputs) -> torch.Tensor:
    """View 0 of a collated multi-view batch as one ``[N, 3, H, W]`` tensor.

    ``default_collate`` gives ``[view0 [N, ...], view1 [N, ...]]``; ``pseudo_collate`` gives
    ``[[view0 of each image], [view1 of each image]]``; a single-view batch is the tensor itself.
    """
    if torch.is_tensor(inputs):
        return inputs
    first = inputs[0]
    return first if torch.is_tensor(first) else torch.stack(list(first))


@HOOKS.register_module()
class CollapseMonitorHook(Hook):
    """Log RankMe and the top-5 share of student and teacher features on a fixed batch.

    The fixed batch is ``num_images`` training images at evenly spaced indices of the train
    dataset, passed through its pipeline once before training under a fixed seed (the same on
    every rank, every run and every resume), kept on the host; the hook uses view 0 of each.
    At each measurement both backbones run in eval mode under ``no_grad`` (autocast as the
    optimizer wrapper), ``chunk`` images at a time, and the pooled last stage of each gives
    ``collapse/{student,teacher}_rankme`` and ``collapse/{student,teacher}_top5_share``.
    RNG and training mode are restored, so training is unchanged.

    Warns once when a RankMe falls below ``max(2, min_rank_ratio * min(N, D))`` (``N`` images,
    ``D`` feature dimensions): a rank-one bank (every image the same direction) has RankMe 1.

    Cost: two backbone forwards on ``num_images`` images every ``interval`` iterations (the
    step benchmark's ``collapse-monitor`` case measures it), and the batch's preparation once.
    Under FSDP (sharded parameters) the hook logs once that it is off.

    Args:
        interval (int): Measure every ``interval`` iterations. Defaults to 1000.
        num_images (int): Size of the fixed batch (capped by the dataset). Defaults to 256.
        chunk (int): Images per forward. Defaults to 64.
        min_rank_ratio (float): Warning threshold as a share of ``min(N, D)``. Defaults to 0.02.
        seed (int): Seed of the fixed batch's augmentation. Defaults to 0.
        measure_first (bool): Also measure after the first iteration. Defaults to True.
    """

    priority = 'LOW'  # after the post-step hook has updated the teacher

    def __init__(self, interval: int = 1000, num_images: int = 256, chunk: int = 64,
                 min_rank_ratio: float = 0.02, seed: int = 0, measure_first: bool = True):
        if interval <= 0 or num_images < 2 or chunk <= 0 or not 0 <= min_rank_ratio <= 1:
            raise ValueError(f'interval > 0, num_images >= 2, chunk > 0 and min_rank_ratio in '
                             f'[0, 1] required, got {interval}, {num_images}, {chunk}, '
                             f'{min_rank_ratio}')
        self.interval, self.num_images, self.chunk = interval, num_images, chunk
        self.min_rank_ratio, self.seed, self.measure_first = min_rank_ratio, seed, measure_first
        self._batch: Optional[torch.Tensor] = None
        self._warned = self._off = False
        self.last: Dict[str, float] = {}

    def before_train(self, runner) -> None:
        if 'FullyShardedDataParallel' in type(runner.model).__name__:
            runner.logger.info('CollapseMonitorHook: off under FSDP (sharded parameters)')
            self._off = True
            return
        loader = runner.train_dataloader
        dataset = loader.dataset
        n = min(self.num_images, len(dataset))
        indices = torch.linspace(0, len(dataset) - 1, n).round().long().unique().tolist()
        with preserved_rng_state():
            from mmengine.runner import set_random_seed
            set_random_seed(self.seed)
            items = [dataset[i] for i in indices]
        self._batch = _first_view(loader.collate_fn(items)['inputs'])

    def use_images(self, images: torch.Tensor) -> None:
        """Set the fixed batch directly: ``[N, 3, H, W]`` images as the data loader gives them."""
        self._batch = images

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._off or self._batch is None:
            return
        if not (self.every_n_train_iters(runner, self.interval)
                or (self.measure_first and runner.iter == 0)):
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self.last = self.measure(model, getattr(runner.optim_wrapper, 'cast_dtype', None))
        runner.visualizer.add_scalars({f'collapse/{k}': v for k, v in self.last.items()},
                                      step=runner.iter + 1)
        runner.logger.info(f'collapse monitor at iter {runner.iter + 1}: ' + ', '.join(
            f'{k} {v:.4g}' for k, v in self.last.items()))
        floor = self.last['threshold']
        low = [k for k in ('student_rankme', 'teacher_rankme') if self.last.get(k, floor) < floor]
        if low and not self._warned:
            self._warned = True
            runner.logger.warning(
                f'the features may be collapsing: {", ".join(low)} = '
                f'{", ".join(f"{self.last[k]:.3g}" for k in low)} < {floor:.3g} '
                f'(max(2, {100 * self.min_rank_ratio:g} % of min(images, dims))); top-5 share '
                f'{self.last.get("student_top5_share", float("nan")):.3f}')

    @torch.no_grad()
    def features(self, backbone: torch.nn.Module, model: torch.nn.Module, dtype) -> torch.Tensor:
        """Pooled last-stage features ``[N, D]`` (fp32, host) of view 0 of the fixed batch."""
        # the teacher's copies are buffers, not parameters
        device = next(iter(backbone.state_dict().values())).device
        rows = []
        for start in range(0, len(self._batch), self.chunk):
            part = dict(inputs=[self._batch[start:start + self.chunk]], data_samples=None)
            view = model.data_preprocessor(part, training=False)['inputs']
            view = view[0] if isinstance(view, (list, tuple)) else view
            with torch.autocast(device_type=device.type, dtype=dtype or torch.float32,
                                enabled=dtype is not None):
                rows.append(pooled_feature(backbone(view.to(device))).cpu())
        return torch.cat(rows)

    def measure(self, model: torch.nn.Module, dtype=None) -> Dict[str, float]:
        """RankMe and top-5 share of the student's (and the teacher's, if any) features."""
        out = {}
        arms = [('student', False)]
        if getattr(getattr(model, 'teacher', None), 'initialized', False):
            arms.append(('teacher', True))
        with preserved_rng_state():
            for name, use_teacher in arms:
                backbone = resolve_backbone(model, use_teacher)
                was_training = backbone.training
                backbone.eval()
                try:
                    feats = self.features(backbone, model, dtype)
                finally:
                    backbone.train(was_training)
                out[f'{name}_rankme'] = rankme(feats)
                out[f'{name}_top5_share'] = top_pc_variance_share(feats, 5)
        out['threshold'] = max(2.0, self.min_rank_ratio * min(feats.shape))
        return out
