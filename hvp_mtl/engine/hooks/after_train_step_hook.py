"""The post-step hook: each model's ``after_train_step`` (EMA teacher, SwAV
queue, counter and prototypes), outside ``forward``."""
from contextlib import nullcontext

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from hvp_mtl.models.protocols import AfterTrainStep

__all__ = ['AfterTrainStepHook', 'TeacherAndPrototypesHook']


@HOOKS.register_module()
class AfterTrainStepHook(Hook):
    """Call ``model.after_train_step`` after each optimizer step taken.

    Registered under its former name too, ``TeacherAndPrototypesHook`` (for
    what it did when the EMA teacher and the SwAV prototypes were all it
    updated), which the shipped configs keep using as
    ``default_hooks.teacher_and_prototypes``.

    What a step changes besides the optimizer's update happens here, never in
    ``forward`` (:class:`~hvp_mtl.models.protocols.AfterTrainStep`): the EMA
    teacher (eq. 5-6) follows the student's weights *after* the optimizer
    step; SwAV's queue takes the step's embeddings, its iteration counter
    advances and its prototypes are re-normalised; each task with an
    ``after_train_step`` of its own is called by the model's. None of it can
    happen inside ``forward`` under FSDP (there a parameter is a temporary
    all-gathered copy), and a forward that changes nothing needs no undo
    when a step is skipped; as mmengine's ``EMAHook`` keeps its average
    outside the model's forward:

    * ``before_train``: refuses a DDP wrapper with ``broadcast_buffers=True``
      (the teacher and each rank's SwAV queue are buffers); then
      ``after_train_step(before_training=True)``: prototypes normalised and
      the teacher copied from the student unless they already hold trained
      values (resume, ``load_from``).
    * ``after_train_iter``: one update, only when the optimizer really
      stepped: not on gradient-accumulation iterations
      (``optim_wrapper.should_update()``) and not on steps the non-finite
      guard or the fp16 loss scaler skipped (``optim_wrapper.step_skipped``),
      so a skipped step leaves the teacher, the queue and the counter
      exactly as they were.

    Under FSDP the update runs inside ``FSDP.summon_full_params(model,
    writeback=True)``: each rank gathers the full parameters once per step
    (the traffic of one forward's all-gather, a full fp32 copy of the model
    in memory for the duration), averages into its replicated teacher and
    writes the normalised prototypes back to its shard.

    Its priority is ``ABOVE_NORMAL``: before the checkpoint hook
    (``VERY_LOW``), so a checkpoint holds the state of its own iteration
    and a resumed run is identical to an uninterrupted one. Models without
    ``after_train_step`` are left alone.
    """

    priority = 'ABOVE_NORMAL'

    def before_train(self, runner) -> None:
        if getattr(runner.model, 'broadcast_buffers', False):
            raise ValueError(
                'model_wrapper_cfg.broadcast_buffers=True: DDP would copy '
                "rank 0's buffers to every rank before each forward, i.e. the "
                'whole EMA teacher (hundreds of MB per step) and rank 0\'s '
                'SwAV queue over every other rank\'s own queue. Set '
                'model_wrapper_cfg = dict(broadcast_buffers=False, ...) as '
                'the configs under configs/pretrain do.')
        self._update(runner, before_training=True)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        wrapper = runner.optim_wrapper
        if not wrapper.should_update() or getattr(wrapper, 'step_skipped',
                                                  False):
            return
        self._update(runner, before_training=False)

    @staticmethod
    def _update(runner, before_training: bool) -> None:
        model = runner.model
        inner: AfterTrainStep = (model.module if is_model_wrapper(model)
                                 else model)
        if not isinstance(inner, AfterTrainStep):
            return
        full = (FSDP.summon_full_params(model, writeback=True)
                if isinstance(model, FSDP) else nullcontext())
        with full:
            inner.after_train_step(before_training=before_training)


#: the former name (configs' ``default_hooks.teacher_and_prototypes``), the same class
TeacherAndPrototypesHook = AfterTrainStepHook
HOOKS.register_module(name='TeacherAndPrototypesHook', module=AfterTrainStepHook)
