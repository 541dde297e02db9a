"""Validate every N iterations inside an epoch-based pre-training run."""
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmpretrain.registry import HOOKS

from ..runner.resume_state import preserved_rng_state

__all__ = ['IterIntervalValHook']


@HOOKS.register_module()
class IterIntervalValHook(Hook):
    """Run ``runner.val_loop`` every ``interval`` training iterations.

    mmengine's ``EpochBasedTrainLoop`` validates only at epoch ends (every
    17,197 iterations for ML-Images at batch 1024). This hook adds
    validations inside the epoch (run before the next iteration, so they are
    logged at the number of finished iterations); it skips the last
    iteration of an epoch,
    where the train loop's own ``val_interval`` applies, so nothing is
    evaluated twice. With :class:`~.MultiLabelValLoop` each of these runs uses
    the fixed subset; with any val loop the model is handed back in train
    mode. The random
    generators are restored after each validation, so that a run resumed
    from a checkpoint of the same iteration (which does not validate again)
    continues bit-identically.
    Not needed with ``IterBasedTrainLoop`` (use its ``val_interval``).

    Args:
        interval (int): Validate every ``interval`` iterations.
    """

    priority = 'LOW'

    def __init__(self, interval: int) -> None:
        if interval <= 0:
            raise ValueError(f'interval must be positive, got {interval}')
        self.interval = interval
        self._due = False

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        """Mark every ``interval``-th iteration but an epoch's last."""
        self._due = (self.every_n_train_iters(runner, self.interval) and
                     not self.end_of_epoch(runner.train_dataloader, batch_idx))

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        """Validate before the next iteration, once ``runner.iter`` counts
        the finished ones (the step the metrics are logged at)."""
        if not self._due:
            return
        self._due = False
        if runner.val_loop is None:
            print_log('IterIntervalValHook: no val_dataloader/val_evaluator, '
                      'nothing to validate', 'current')
            return
        was_training = runner.model.training
        with preserved_rng_state():  # bit-identical resume, see there
            runner.val_loop.run()
        # any val loop: the rest of the epoch trains in train mode, as after
        # a resume (the epoch loop sets it once per epoch)
        runner.model.train(was_training)
