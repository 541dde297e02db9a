"""Training runs of the tiny HVP-MTL with this project's training-at-scale parts, and what the
resume, checkpoint, non-finite-guard and launcher tests observe of them: a config
(:func:`scale_cfg`), a simulated kill, a load counter, NaN injection, state snapshots."""
import glob
import itertools
import os.path as osp
import pathlib

import torch
from mmcv.transforms import BaseTransform
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmpretrain.registry import HOOKS, TRANSFORMS

from tests.helpers.tiny_configs import tiny_pretrain_cfg

__all__ = ['SimulatedKill', 'KillAtIterHook', 'InjectNonFiniteHook', 'CountLoads', 'scale_cfg',
           'train', 'run_log', 'snapshot', 'assert_same_state']

_RUN_IDS = itertools.count()


class SimulatedKill(Exception):
    """Stands for SIGKILL: the run ends without any cleanup."""


@HOOKS.register_module(force=True)
class KillAtIterHook(Hook):
    """Abort the run right after iteration ``at`` (1-based) finished."""

    priority = 'LOWEST'  # after the checkpoint hook, like a real kill

    def __init__(self, at: int) -> None:
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.at:
            raise SimulatedKill(f'killed after iteration {self.at}')


@HOOKS.register_module(force=True)
class InjectNonFiniteHook(Hook):
    """Make the backbone output NaN at the given 0-based iterations.

    Optionally only on some ranks; keeps a copy of the model state before
    every iteration in ``self.states`` (when ``record=True``).
    """

    priority = 'HIGHEST'

    def __init__(self, iters, ranks=None, record=False) -> None:
        self.iters, self.ranks, self.record = set(iters), ranks, record
        self.states, self._handle = {}, None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = runner.model.module if hasattr(runner.model,
                                               'module') else runner.model
        if self.record:
            self.states[runner.iter] = snapshot(runner)
        if runner.iter in self.iters and (self.ranks is None
                                          or runner.rank in self.ranks):
            self._handle = model.backbone.register_forward_hook(
                lambda module, args, out: tuple(o * float('nan') for o in out))

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


@TRANSFORMS.register_module(force=True)
class CountLoads(BaseTransform):
    """Counts the samples the data pipeline produced (num_workers=0)."""

    count = 0

    def transform(self, results):
        CountLoads.count += 1
        return results


def scale_cfg(work_dir, data_root, *, epochs=None, iters=None,
              ckpt_interval=2, num_images=6, max_keep_ckpts=3) -> Config:
    """Tiny HVP-MTL config with this project's training-at-scale parts.

    Epoch-based (``ResumableEpochBasedTrainLoop`` + ``ResumableDefaultSampler``)
    when ``epochs`` is given, else iteration-based with
    ``ResumableInfiniteSampler``. The SwAV queue is active from iteration 1
    and the prototypes are frozen for 2 iterations, so both states matter.
    """
    cfg = tiny_pretrain_cfg('swin', work_dir=work_dir, data_root=data_root,
                            max_iters=iters or 4, batch_size=2, img_size=64)
    cfg.experiment_name = f'scale_{next(_RUN_IDS)}'
    cfg.model.tasks.swav.update(queue_length=4, queue_start_iter=1,
                                freeze_prototypes_iters=2)
    loader = cfg.train_dataloader
    loader.dataset.indices = num_images
    loader.dataset.pipeline.insert(0, dict(type='CountLoads'))
    if epochs is not None:
        loader.sampler = dict(type='ResumableDefaultSampler', shuffle=True)
        cfg.train_cfg = dict(type='ResumableEpochBasedTrainLoop',
                             max_epochs=epochs)
    else:
        loader.sampler = dict(type='ResumableInfiniteSampler', shuffle=True)
        cfg.train_cfg = dict(type='ResumableIterBasedTrainLoop',
                             max_iters=iters)
    cfg.optim_wrapper.type = 'GuardedOptimWrapper'
    cfg.default_hooks.checkpoint = dict(
        type='AtomicCheckpointHook', by_epoch=False, interval=ckpt_interval,
        max_keep_ckpts=max_keep_ckpts)
    # CollapseMonitorHook's fixed batch goes through the pipeline too: off here, so CountLoads
    # counts only what the data loader produced
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks', []) or []
                        if h['type'] != 'CollapseMonitorHook'] + [dict(type='EffectiveBatchHook')]
    cfg.randomness = dict(seed=0, deterministic=True)
    return cfg


def train(cfg) -> Runner:
    """Build and train; a :class:`SimulatedKill` just ends the run."""
    runner = Runner.from_cfg(cfg.copy())
    try:
        runner.train()
    except SimulatedKill:
        pass
    return runner


def run_log(work_dir) -> str:
    """Text of the newest mmengine log file in ``work_dir``."""
    logs = sorted(glob.glob(osp.join(str(work_dir), '*', '*.log')),
                  key=osp.getmtime)
    return pathlib.Path(logs[-1]).read_text()


def snapshot(runner) -> dict:
    """Copies of the model state, optimizer state and scheduler states."""
    model = runner.model.module if hasattr(runner.model,
                                           'module') else runner.model
    clone = lambda x: x.detach().clone() if torch.is_tensor(x) else x  # noqa
    optim = runner.optim_wrapper.state_dict()
    return dict(
        model={k: clone(v)
               for k, v in model.state_dict().items()},
        optim={(i, k): clone(v)
               for i, s in optim['state'].items() for k, v in s.items()},
        schedulers=[s.state_dict() for s in runner.param_schedulers or []])


def assert_same_state(a: dict, b: dict, what='', schedulers=True) -> None:
    assert a['model'].keys() == b['model'].keys()
    differ = [k for k in a['model'] if not torch.equal(a['model'][k],
                                                       b['model'][k])]
    assert not differ, f'{what}: model tensors differ: {differ[:8]}'
    assert a['optim'].keys() == b['optim'].keys()
    differ = [k for k in a['optim'] if not torch.equal(
        torch.as_tensor(a['optim'][k]), torch.as_tensor(b['optim'][k]))]
    assert not differ, f'{what}: optimizer state differs: {differ[:8]}'
    if schedulers:
        assert a['schedulers'] == b['schedulers'], what
