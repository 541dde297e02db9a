"""Run the kNN probe every N iterations of pre-training and log it."""
from typing import Optional

from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

from hvp_mtl.evaluation import build_sharded_dataloader, run_knn_probe

__all__ = ['KNNProbeHook']


@HOOKS.register_module()
class KNNProbeHook(Hook):
    """DINO-style kNN probe on frozen backbone features during training.

    Every ``interval`` iterations (and after the last one) the backbone's
    L2-normalised, average-pooled last-stage features of a labelled
    single-label set (ImageNet-1K in the real configs, the demo world's
    ``cls/`` split in the demo) are classified by weighted kNN. The result is
    logged as ``knn_top1``/``knn_top5`` (percent) to the log file and to the
    visualizer's scalars (``vis_data/scalars.json``, TensorBoard, ...) at the
    iteration's step. All processes take part; features are sharded without
    padding, so the number equals a single-process run.

    Args:
        train_dataloader (dict): Dataloader config of the memory bank images
            (single-view test pipeline; the sampler is replaced).
        val_dataloader (dict): Dataloader config of the query images.
        interval (int): Probe every ``interval`` training iterations.
        k (int): Neighbours. Defaults to 20.
        temperature (float): Voting temperature. Defaults to 0.07.
        use_teacher (bool): Probe the EMA teacher instead of the student.
        probe_before_train (bool): Also probe once before the first
            iteration (the baseline of the curve). Defaults to False.
        num_classes (int, optional): Defaults to the train set's classes.
        prefix (str): Scalar name prefix. Defaults to ``'knn'``.
    """

    priority = 'NORMAL'

    def __init__(self,
                 train_dataloader: dict,
                 val_dataloader: dict,
                 interval: int = 5000,
                 k: int = 20,
                 temperature: float = 0.07,
                 use_teacher: bool = False,
                 probe_before_train: bool = False,
                 num_classes: Optional[int] = None,
                 prefix: str = 'knn') -> None:
        if interval <= 0:
            raise ValueError(f'interval must be positive, got {interval}')
        self.train_dataloader_cfg = train_dataloader
        self.val_dataloader_cfg = val_dataloader
        self.interval = interval
        self.k = k
        self.temperature = temperature
        self.use_teacher = use_teacher
        self.probe_before_train = probe_before_train
        self.num_classes = num_classes
        self.prefix = prefix
        self._loaders = None

    def before_train(self, runner) -> None:
        """Build the probe dataloaders; optionally probe the initial model."""
        self._loaders = (build_sharded_dataloader(self.train_dataloader_cfg),
                         build_sharded_dataloader(self.val_dataloader_cfg))
        if self.probe_before_train:
            self._probe(runner, step=runner.iter)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        """Probe every ``interval`` iterations and after the last one."""
        if (self.every_n_train_iters(runner, self.interval)
                or self.is_last_train_iter(runner)):
            self._probe(runner, step=runner.iter + 1)

    def _probe(self, runner, step: int) -> None:
        train_loader, val_loader = self._loaders
        result = run_knn_probe(
            runner.model,
            train_loader,
            val_loader,
            k=self.k,
            temperature=self.temperature,
            use_teacher=self.use_teacher,
            num_classes=self.num_classes)
        scalars = {
            f'{self.prefix}_top1': result['top1'],
            f'{self.prefix}_top5': result['top5']
        }
        who = 'teacher' if self.use_teacher else 'student'
        runner.logger.info(
            f'kNN probe ({who}, k={self.k}, T={self.temperature}) at iter '
            f'{step}: top1 {result["top1"]:.2f}, top5 {result["top5"]:.2f} '
            f'(chance {result["chance"]:.2f}) on '
            f'{len(val_loader.dataset)} images')
        runner.visualizer.add_scalars(scalars, step=step)
        for name, value in scalars.items():
            runner.message_hub.update_info(name, value)
