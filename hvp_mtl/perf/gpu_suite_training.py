"""Part (c) of ``tools/perf/gpu_suite.py``: the real pre-training config on generated data.

Writes an ML-Images-format set (``train.txt``, an 11,166-class
``dictionary_and_semantic_hierarchy.txt``, JPEGs under ``images/``), then
trains ``configs/pretrain/hvp_swin-b.py`` as shipped (model, data pipeline,
bf16 ``GuardedAmpOptimWrapper``, hooks) for a fixed number of iterations
with the mmengine Runner, replacing only the data root, the loop (iteration
based), validation (off) and checkpoints (off). It reports whether every
loss was finite, whether the guard skipped a step, whether the EMA teacher
moved, and the images/s of the whole run, data loading included.
"""
import copy
import math
import os
import os.path as osp
import time

import numpy as np
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'pretrain', 'hvp_swin-b.py')
TEACHER_KEY = 'backbone.patch_embed.projection.weight'


def write_ml_images(root: str, num_images: int, size: int, num_classes: int,
                    seed: int = 0) -> None:
    """A small Tencent ML-Images-format set of ``size``-px JPEGs."""
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    with open(osp.join(root, 'dictionary_and_semantic_hierarchy.txt'), 'w') as f:
        f.write('index\twnid\tparent_index\tname\n')
        f.writelines(f'{i}\tn{i:08d}\t-1\tclass {i}\n' for i in range(num_classes))
    lines = []
    for i in range(num_images):
        coarse = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
        name = f'img{i:06d}.JPEG'
        image.save(osp.join(root, 'images', name), quality=90)
        labels = rng.choice(num_classes, 1 + rng.poisson(7.72), replace=False)
        confs = rng.choice(['1', '0.9', '0.8'], len(labels))
        lines.append(name + '\t' + '\t'.join(f'{c}:{v}' for c, v in zip(labels, confs)))
    with open(osp.join(root, 'train.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


class RunRecorder(Hook):
    """Losses, skipped steps and the EMA teacher of a run (no per-step sync)."""

    priority = 'LOW'  # after TeacherAndPrototypesHook

    def before_train(self, runner) -> None:
        self.losses, self.skipped = [], 0
        self.teacher_start = self._teacher(runner).clone()
        self.start = time.perf_counter()

    @staticmethod
    def _teacher(runner) -> torch.Tensor:
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        return dict(model.teacher.named_buffers())[TEACHER_KEY].detach()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.append(outputs['loss'].detach().float())
        self.skipped += bool(getattr(runner.optim_wrapper, 'step_skipped', False))

    def after_train(self, runner) -> None:
        self.seconds = time.perf_counter() - self.start
        self.teacher_moved = not torch.equal(self._teacher(runner),
                                             self.teacher_start)


def run_training(work_dir: str, iters: int, num_images: int, size: int,
                 num_classes: int, num_workers: int, batch: int = None,
                 overrides: dict = None) -> dict:
    """Train the shipped Swin-B config for ``iters`` iterations; a summary dict."""
    from mmengine.runner import Runner

    import hvp_mtl  # noqa: F401
    data_root = osp.join(work_dir, 'ml_images')
    write_ml_images(data_root, num_images, size, num_classes)
    cfg = Config.fromfile(CONFIG)
    for key, value in (overrides or {}).items():
        cfg.model[key].update(copy.deepcopy(value))
    cfg.work_dir = osp.join(work_dir, 'run')
    cfg.model.backbone.img_size = size
    cfg.model.tasks.mlc.num_classes = num_classes
    loader = cfg.train_dataloader
    loader.dataset.update(data_root=data_root)
    loader.sampler = dict(type='ResumableInfiniteSampler', shuffle=True)
    loader.batch_size = batch or loader.batch_size
    loader.num_workers = num_workers
    loader.persistent_workers = num_workers > 0
    loader.pin_memory = torch.cuda.is_available()
    cfg.train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=iters)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=1e-3, by_epoch=False,
                                begin=0, end=max(1, iters // 2))]
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    cfg.custom_hooks = [h for h in cfg.custom_hooks if h['type'] != 'IterIntervalValHook']
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=max(1, iters // 10))
    cfg.log_level = 'WARNING'
    cfg.randomness = dict(seed=0)
    runner = Runner.from_cfg(cfg)
    recorder = RunRecorder()
    runner.register_hook(recorder)
    runner.train()
    losses = torch.stack(recorder.losses).cpu().tolist()
    guard = runner.optim_wrapper
    batch = loader.batch_size
    return dict(
        iterations=len(losses), batch=batch, size=size, num_classes=num_classes,
        optim_wrapper=type(guard).__name__, dtype=str(guard.cast_dtype),
        loss_scaler_enabled=bool(guard.loss_scaler.is_enabled()),
        loss_first=losses[0], loss_last=losses[-1],
        losses_finite=all(math.isfinite(v) for v in losses),
        skipped_steps=recorder.skipped, teacher_moved=recorder.teacher_moved,
        seconds=recorder.seconds, images_per_s=len(losses) * batch / recorder.seconds)
