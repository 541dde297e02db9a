"""Every pre-training objective against its trivial baseline, every N iterations."""
import copy
import json
import os.path as osp
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

from hvp_mtl.evaluation import (
    build_sharded_dataloader,
    evaluate_objectives,
    train_label_frequencies,
)
from hvp_mtl.utils.atomic_io import atomic_write

from ..runner.resume_state import preserved_rng_state

__all__ = ['ObjectiveMetricsHook']

#: a single-view pipeline for the multi-label mAP (``scale`` is filled with the image size)
CLEAN_PIPELINE = [dict(type='LoadImageFromFile'),
                  dict(type='ResizeEdge', scale=None, edge='short', backend='pillow',
                       interpolation='bicubic'),
                  dict(type='CenterCrop', crop_size=None),
                  dict(type='PackInputs')]


@HOOKS.register_module()
class ObjectiveMetricsHook(Hook):
    """Log whether the pre-training learns each of its objectives (``docs/EVALUATION.md``).

    Before the first iteration (the model at initialisation), every ``interval`` iterations
    and after the last, :func:`~hvp_mtl.evaluation.objective_metrics.evaluate_objectives`
    scores the held-out list ``val_ann_file`` of the training dataset (its config, with that
    list): the four losses through the training pipeline with seeded randomness, the
    multi-label macro mAP through a resize-only pipeline, each beside its trivial baseline
    (label prior, ``ln K``, zero prediction, the teacher's mean). Logged as one line per
    objective, as scalars ``objectives/{task}`` and ``objectives/{task}_baseline`` (and
    ``mlc_teacher_map``, ``swav_code_entropy`` ...) to the visualizer, and appended to
    ``<work_dir>/objectives.json`` (a list of ``{step, objectives}``, written atomically; a
    resumed run drops the entries after its resume point).

    The random generators are restored after each evaluation, so a resumed run continues
    bit-identically.

    Args:
        interval (int): Evaluate every ``interval`` training iterations.
        val_ann_file (str): The held-out list, relative to the training dataset's root.
        batch_size (int): Images per evaluation batch.
        max_images (int, optional): Evaluate this many evenly spaced held-out images.
        img_size (int, optional): Side of the clean view; defaults to the largest ``scale``
            of the training pipeline's crops.
        seed (int): Seed of the held-out views and masks (the same at every evaluation).
        evaluate_before_train (bool): Also evaluate the initial model (step 0).
    """

    priority = 'LOW'  # after TeacherAndPrototypesHook has initialised the teacher

    def __init__(self, interval: int = 1000, val_ann_file: str = 'val.txt', batch_size: int = 64,
                 max_images: Optional[int] = 2000, img_size: Optional[int] = None,
                 seed: int = 0, evaluate_before_train: bool = True) -> None:
        if interval <= 0:
            raise ValueError(f'interval must be positive, got {interval}')
        self.interval, self.val_ann_file, self.batch_size = interval, val_ann_file, batch_size
        self.max_images, self.img_size, self.seed = max_images, img_size, seed
        self.evaluate_before_train = evaluate_before_train
        self._loaders = self._frequencies = None
        self._history = []

    def _dataset_cfg(self, runner, pipeline):
        dataset = copy.deepcopy(runner.cfg.train_dataloader.dataset)
        dataset.update(ann_file=self.val_ann_file, pipeline=pipeline)
        if self.max_images:
            dataset['indices'] = self.max_images
        return dataset

    def _clean_pipeline(self, train_pipeline):
        size = self.img_size
        if size is None:  # the crops' output size
            views = [t for t in train_pipeline if t.get('type') == 'MultiViewWithMask']
            size = views[0]['transforms'][0][0]['scale'] if views else 224
        pipeline = copy.deepcopy(CLEAN_PIPELINE)
        pipeline[1]['scale'] = pipeline[2]['crop_size'] = size
        return pipeline

    def before_train(self, runner) -> None:
        train_pipeline = runner.cfg.train_dataloader.dataset.pipeline
        loader = dict(batch_size=self.batch_size, num_workers=0)
        self._loaders = (
            build_sharded_dataloader(dict(loader, dataset=self._dataset_cfg(runner,
                                                                            train_pipeline))),
            build_sharded_dataloader(dict(loader, dataset=self._dataset_cfg(
                runner, self._clean_pipeline(train_pipeline)))))
        self._frequencies = train_label_frequencies(runner.train_dataloader.dataset)
        path = osp.join(runner.work_dir, 'objectives.json')
        if osp.isfile(path):  # a resumed run: keep what came before its resume point
            with open(path, encoding='utf-8') as f:
                self._history = [e for e in json.load(f) if e['step'] <= runner.iter]
        if self.evaluate_before_train and runner.iter == 0:
            self._evaluate(runner, step=0)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.every_n_train_iters(runner, self.interval) or self.is_last_train_iter(runner):
            self._evaluate(runner, step=runner.iter + 1)

    def _evaluate(self, runner, step: int) -> None:
        with preserved_rng_state():
            result = evaluate_objectives(runner.model, *self._loaders,
                                         train_frequencies=self._frequencies, seed=self.seed)
        scalars = {}
        for task, entry in result.items():
            verdict = 'learned' if entry['learned'] else 'not learned'
            extras = ', '.join(f'{k} {v:.4g}' for k, v in entry.items()
                               if k not in ('value', 'baseline', 'perfect', 'learned'))
            runner.logger.info(f'objective {task} at iter {step}: {entry["value"]:.4f} vs '
                               f'trivial baseline {entry["baseline"]:.4f} ({verdict}; {extras})')
            scalars[f'objectives/{task}'] = entry['value']
            scalars[f'objectives/{task}_baseline'] = entry['baseline']
            scalars.update({f'objectives/{task}_{k}': v for k, v in entry.items()
                            if k not in ('value', 'baseline', 'perfect', 'learned')})
        runner.visualizer.add_scalars(scalars, step=step)
        self._history = [e for e in self._history if e['step'] != step]
        self._history.append(dict(step=step, objectives=result))
        if is_main_process():
            with atomic_write(osp.join(runner.work_dir, 'objectives.json'),
                              encoding='utf-8') as f:
                json.dump(self._history, f, indent=1)
