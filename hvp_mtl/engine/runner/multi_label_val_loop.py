"""A validation loop for long pre-training runs: a subset often, everything
at the end, student or EMA teacher.

``val_dataloader`` names the *full* validation list (88,739 images for
Tencent ML-Images). During training the loop evaluates an evenly spaced
subset of ``subset_size`` images of it (a fixed subset, so successive numbers
are comparable); the validation that mmengine's train loop runs after the
last iteration, and any ``runner.val()`` outside training, use the full list.

The subset is a :class:`torch.utils.data.Subset` of the built dataset, given
to the same dataloader config (so the same ``DefaultSampler`` splits it over
ranks). mmengine's evaluator then receives ``len(subset)`` and drops the
sampler's padding exactly as on a full run, so the metric is the same for any
number of processes.
"""
import copy
from typing import Dict, List, Optional, Union

from mmengine.evaluator import Evaluator
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import ValLoop
from mmengine.runner.base_loop import BaseLoop
from mmpretrain.registry import LOOPS
from torch.utils.data import DataLoader, Subset

from hvp_mtl.models.protocols import TeacherPredictor

from .resume_state import preserved_rng_state

__all__ = ['MultiLabelValLoop', 'evenly_spaced_indices']


def evenly_spaced_indices(num_items: int, subset_size: int) -> List[int]:
    """``subset_size`` indices spread evenly over ``range(num_items)``.

    Args:
        num_items (int): Length of the full list.
        subset_size (int): Wanted length (clipped to ``num_items``).

    Returns:
        list[int]: Sorted, distinct indices, first item 0.
    """
    subset_size = min(subset_size, num_items)
    step = num_items / subset_size
    return [int(i * step) for i in range(subset_size)]


@LOOPS.register_module()
class MultiLabelValLoop(ValLoop):
    """Validation on a fixed subset during training and in full at the end.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The full validation dataloader.
        evaluator (Evaluator | dict | list): Metrics, typically
            ``SoftTargetAveragePrecision`` and ``SoftTargetMultiLabelMetric``.
        fp16 (bool): Run the model under autocast. Defaults to False.
        subset_size (int, optional): Images evaluated by the periodic
            validation during training. None evaluates everything every time.
        full_at_end (bool): Evaluate the full list after the last training
            iteration. Defaults to True.
        use_teacher (bool): Score with the EMA teacher instead of the student
            (sets ``model.predict_with_teacher`` while validating).
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List],
                 fp16: bool = False,
                 subset_size: Optional[int] = None,
                 full_at_end: bool = True,
                 use_teacher: bool = False) -> None:
        self._dataloader_cfg = (copy.deepcopy(dataloader)
                                if isinstance(dataloader, dict) else None)
        super().__init__(runner, dataloader, evaluator, fp16)
        self.full_dataloader = self.dataloader
        self.subset_size = subset_size
        self.full_at_end = full_at_end
        self.use_teacher = use_teacher
        self._subset_dataloader: Optional[DataLoader] = None

    def _training_unfinished(self) -> bool:
        """True while a train loop exists and has iterations left."""
        loop = getattr(self.runner, '_train_loop', None)
        if not isinstance(loop, BaseLoop):
            return False
        return (not self.full_at_end) or loop.iter < loop.max_iters

    def _get_subset_dataloader(self) -> DataLoader:
        """Build (once) the dataloader over the evenly spaced subset."""
        if self._subset_dataloader is None:
            full_set = self.full_dataloader.dataset
            indices = evenly_spaced_indices(len(full_set), self.subset_size)
            if self._dataloader_cfg is None:
                raise TypeError('MultiLabelValLoop(subset_size=...) needs '
                                'val_dataloader as a config dict')
            cfg = copy.deepcopy(self._dataloader_cfg)
            cfg['dataset'] = Subset(full_set, indices)
            self._subset_dataloader = self.runner.build_dataloader(
                cfg, seed=self.runner.seed)
        return self._subset_dataloader

    def _choose_dataloader(self) -> DataLoader:
        full_len = len(self.full_dataloader.dataset)
        if (self.subset_size is None or self.subset_size >= full_len
                or not self._training_unfinished()):
            print_log(f'Validating on all {full_len} images', 'current')
            return self.full_dataloader
        print_log(
            f'Validating on an evenly spaced subset of {self.subset_size} of '
            f'{full_len} images (the full list is evaluated after the last '
            'iteration)', 'current')
        return self._get_subset_dataloader()

    def _set_teacher(self, flag: bool) -> bool:
        """Set the model's ``predict_with_teacher``; return the old value."""
        model = self.runner.model
        model = model.module if is_model_wrapper(model) else model
        if not isinstance(model, TeacherPredictor):
            raise AttributeError(
                f'{type(model).__name__} has no `predict_with_teacher`, so '
                'MultiLabelValLoop(use_teacher=True) cannot select the EMA '
                'teacher')
        old = model.predict_with_teacher
        model.predict_with_teacher = flag
        return old

    def run(self) -> dict:
        """Validate on the subset or the full list; return the metrics."""
        self.dataloader = self._choose_dataloader()
        old_flag = self._set_teacher(True) if self.use_teacher else False
        was_training = self.runner.model.training
        try:
            # leave the training's random stream untouched (exact resume)
            with preserved_rng_state():
                metrics = super().run()
        finally:
            self.dataloader = self.full_dataloader
            if self.use_teacher:
                self._set_teacher(old_flag)
            # mid-epoch validation (IterIntervalValHook) must hand the model
            # back in train mode: EpochBasedTrainLoop sets it once per epoch
            self.runner.model.train(was_training)
        return metrics
