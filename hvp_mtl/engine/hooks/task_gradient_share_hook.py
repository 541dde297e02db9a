"""Each task's share of the gradient that the optimizer clips, logged during training.

Eq. (7) sums four weighted losses whose gradients differ by orders of magnitude (at Swin-B
initialisation with 11,166 classes, ALBEF's distillation temperature gives distillation 79 % of
the last-stage gradient, docs/method.md). With global-norm clipping, a task that dominates the
norm also shrinks every other task's update. This hook makes that visible on a cluster.
"""
import math
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from hvp_mtl.models.protocols import reset_step_caches

from ..runner.resume_state import preserved_rng_state

__all__ = ['TaskGradientShareHook', 'task_gradient_norms']


def task_gradient_norms(losses: Dict[str, torch.Tensor], params: Sequence[torch.Tensor],
                        tasks: Sequence[str]) -> Dict[str, float]:
    """L2 norm of each weighted task loss's gradient over ``params``.

    One backward per task through the same graph (``retain_graph``); ``.grad`` of the
    parameters is left untouched (``torch.autograd.grad``).

    Args:
        losses (dict): ``loss_{task}`` = ``alpha_task * L_task`` (eq. 7), scalars.
        params (Sequence[torch.Tensor]): The parameters to measure (e.g. all the optimizer
            clips, or the backbone's last stage).
        tasks (Sequence[str]): Task names; a task without ``loss_{task}`` is skipped.

    Returns:
        dict: ``{task: norm}`` (float, fp64 accumulation).
    """
    norms = {}
    for task in tasks:
        loss = losses.get(f'loss_{task}')
        if loss is None:
            continue
        grads = torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True)
        norms[task] = math.sqrt(sum(float(g.detach().double().pow(2).sum())
                                    for g in grads if g is not None))
    return norms


def _batch_norm_state(model: torch.nn.Module) -> List[tuple]:
    return [(m, {k: v.clone() for k, v in m.state_dict().items()})
            for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@HOOKS.register_module()
class TaskGradientShareHook(Hook):
    """Log each task's share of the clipped gradient norm every ``interval`` iterations.

    After the optimizer step of every ``interval``-th iteration, the same micro-batch is run
    again through the (unwrapped) model in training mode, under the wrapper's autocast dtype,
    and for each task ``x`` the norm of ``d(alpha_x L_x)/d(theta)`` over every parameter the
    optimizer updates is taken (one backward per task). Logged as ``task_grad/{x}_norm``,
    ``task_grad/{x}_share`` (norm over the sum of the task norms), ``task_grad/sum_norm``
    and ``task_grad/clip_coef`` (``min(1, max_norm / |sum of the task gradients|)``: the factor
    global clipping would scale this step's update by), plus one log line. Warns once when one
    task holds more than ``dominance`` of the sum.

    Cost: one forward and one backward per task on one micro-batch; a measured iteration costs
    4.1 plain ones (Swin-T, 224 px, CPU: ``tools/perf/step.py --cases full grad-share``), so
    0.3 % of training at the default ``interval`` 1000. Training is unchanged:
    the random generators and every BatchNorm's statistics are restored, the step caches
    (:class:`~hvp_mtl.models.protocols.StepCache`) are reset and no ``.grad`` is written.
    With gradient accumulation it measures at the next iteration that ends an optimizer step.
    Under FSDP (sharded parameters) the hook logs once that it is off.

    Args:
        interval (int): Measure every ``interval`` iterations. Defaults to 1000.
        dominance (float): Share above which one warning is logged. Defaults to 0.8.
        max_samples (int, optional): Use at most this many images of the micro-batch.
        measure_first (bool): Also measure after the first iteration. Defaults to True.
    """

    priority = 'LOW'  # after the post-step hook has updated teacher and prototypes

    def __init__(self, interval: int = 1000, dominance: float = 0.8,
                 max_samples: Optional[int] = None, measure_first: bool = True) -> None:
        if interval <= 0 or not 0 < dominance <= 1:
            raise ValueError(f'interval must be > 0 and dominance in (0, 1], got {interval}, '
                             f'{dominance}')
        self.interval, self.dominance = interval, dominance
        self.max_samples, self.measure_first = max_samples, measure_first
        self._warned = self._off = self._due = False
        self.last: Dict[str, float] = {}

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if data_batch is None or self._off:
            return
        self._due = self._due or self.every_n_train_iters(runner, self.interval) or (
            self.measure_first and runner.iter == 0)
        # only right after an optimizer step: on an accumulation iteration the step's
        # micro-batches are still pending (their SwAV embeddings, the gradient)
        accumulate = getattr(runner.optim_wrapper, '_accumulative_counts', 1)
        if not self._due or (runner.iter + 1) % accumulate:
            return
        self._due = False
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if 'FullyShardedDataParallel' in type(runner.model).__name__:
            runner.logger.info('TaskGradientShareHook: off under FSDP (sharded parameters)')
            self._off = True
            return
        self.last = self.measure(model, runner.optim_wrapper, self._slice(data_batch))
        runner.visualizer.add_scalars({f'task_grad/{k}': v for k, v in self.last.items()},
                                      step=runner.iter + 1)
        tasks = [k[:-6] for k in self.last if k.endswith('_share')]
        runner.logger.info(f'task gradient shares at iter {runner.iter + 1}: ' + ', '.join(
            f'{t} {100 * self.last[t + "_share"]:.1f} %' for t in tasks)
            + f' (sum of norms {self.last["sum_norm"]:.4g}, clip coef '
              f'{self.last["clip_coef"]:.3g})')
        top = max(tasks, key=lambda t: self.last[t + '_share'], default=None)
        if top and not self._warned and self.last[top + '_share'] > self.dominance:
            self._warned = True
            runner.logger.warning(
                f'task {top!r} carries {100 * self.last[top + "_share"]:.0f} % of the gradient '
                f'norm (> {100 * self.dominance:.0f} %): with global clipping it also shrinks '
                'the other tasks\' updates; see docs/method.md, "Distillation"')

    def _slice(self, data_batch: dict) -> dict:
        n = self.max_samples
        if not n:
            return data_batch

        def cut(value):
            if isinstance(value, torch.Tensor):
                return value[:n]
            if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
                return type(value)(cut(v) for v in value)
            return value[:n] if isinstance(value, (list, tuple)) else value
        return {k: cut(v) for k, v in data_batch.items()}

    @staticmethod
    def measure(model: torch.nn.Module, optim_wrapper, data_batch: dict) -> Dict[str, float]:
        """The norms, shares and clip coefficient of one micro-batch (state preserved)."""
        params = [p for group in optim_wrapper.optimizer.param_groups for p in group['params']
                  if p.requires_grad]
        clip = getattr(optim_wrapper, 'clip_grad_kwargs', None) or {}
        dtype = getattr(optim_wrapper, 'cast_dtype', None)
        device = params[0].device.type
        bn_state = _batch_norm_state(model)
        was_training = model.training
        try:
            with preserved_rng_state():
                model.train()
                with torch.autocast(device_type=device, dtype=dtype or torch.float32,
                                    enabled=dtype is not None):
                    data = model.data_preprocessor(data_batch, training=True)
                    losses = model(**data, mode='loss')
                tasks = getattr(model, 'task_names', ())
                norms = task_gradient_norms(losses, params, tasks)
                total = sum(v for k, v in losses.items() if k.startswith('loss_'))
                grads = torch.autograd.grad(total, params, allow_unused=True)
                sum_norm = math.sqrt(sum(float(g.double().pow(2).sum())
                                         for g in grads if g is not None))
        finally:
            for module, state in bn_state:
                module.load_state_dict(state)
            reset_step_caches(model)  # nothing of this forward reaches after_train_step
            model.train(was_training)
        out = {}
        denominator = sum(norms.values()) or 1.0
        for task, norm in norms.items():
            out[f'{task}_norm'] = norm
            out[f'{task}_share'] = norm / denominator
        out['sum_norm'] = sum_norm
        max_norm = clip.get('max_norm')
        out['clip_coef'] = min(1.0, max_norm / (sum_norm + 1e-6)) if max_norm else 1.0
        return out
