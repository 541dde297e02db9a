"""Log the effective batch size and warn when it is not the paper's.

The paper (arXiv 2310.07510) pre-trains with a total batch of 1024 images
(64 GPUs x 16). The configs state the per-GPU batch; what the optimizer sees
is ``per-GPU batch x world size x accumulative_counts``. A run on another
number of GPUs silently changes it unless ``auto_scale_lr`` is enabled
(``--auto-scale-lr``, ``base_batch_size=1024``), which scales the learning rate
linearly with ``per-GPU batch x world size`` (mmengine's rule).
"""
import logging

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmpretrain.registry import HOOKS

from ..runner.resume_state import dataloader_batch_size

__all__ = ['EffectiveBatchHook']


@HOOKS.register_module()
class EffectiveBatchHook(Hook):
    """Log ``per-GPU batch x world size`` at the start of training.

    Args:
        paper_batch_size (int): the reference total batch. Defaults to 1024.
    """

    priority = 'VERY_LOW'

    def __init__(self, paper_batch_size: int = 1024) -> None:
        self.paper_batch_size = int(paper_batch_size)

    def before_train(self, runner) -> None:
        per_gpu = dataloader_batch_size(runner.train_dataloader)
        world_size = runner.world_size
        accumulate = int(getattr(runner.optim_wrapper, '_accumulative_counts',
                                 1) or 1)
        effective = per_gpu * world_size * accumulate
        runner.message_hub.update_info('effective_batch_size', effective)
        accum_text = f' x {accumulate} accumulation steps' if accumulate > 1 \
            else ''
        print_log(
            f'Effective batch size: {per_gpu} per GPU x {world_size} '
            f'process(es){accum_text} = {effective} '
            f'(paper: {self.paper_batch_size}).',
            logger='current')
        if effective == self.paper_batch_size:
            return
        # Runner.auto_scale_lr / FlexibleRunner._auto_scale_lr
        auto_scale = (getattr(runner, 'auto_scale_lr', None)
                      or getattr(runner, '_auto_scale_lr', None) or {})
        if auto_scale.get('enable', False):
            base = auto_scale.get('base_batch_size')
            lr_note = (f'auto_scale_lr is on: the learning rate was scaled by '
                       f'{per_gpu * world_size}/{base}')
        else:
            lr_note = ('auto_scale_lr is off: the learning rate is the '
                       "config's, tuned for the paper's batch (use "
                       '--auto-scale-lr to scale it linearly)')
        print_log(
            f'The effective batch size {effective} differs from the paper\'s '
            f'{self.paper_batch_size}; {lr_note}.',
            logger='current',
            level=logging.WARNING)
