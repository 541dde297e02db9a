
from .after_train_step_hook import AfterTrainStepHook, TeacherAndPrototypesHook  # noqa: F401
from .atomic_checkpoint_hook import AtomicCheckpointHook  # noqa: F401
from .collapse_monitor_hook import CollapseMonitorHook  # noqa: F401
from .effective_batch_hook import EffectiveBatchHook  # noqa: F401
from .iter_interval_val_hook import IterIntervalValHook  # noqa: F401
from .knn_probe_hook import KNNProbeHook  # noqa: F401
from .objective_metrics_hook import ObjectiveMetricsHook  # noqa: F401
from .pretrained_load_check_hook import PretrainedLoadCheckHook  # noqa: F401
from .resume_state_hook import ResumeStateHook  # noqa: F401
from .task_gradient_share_hook import TaskGradientShareHook  # noqa: F401
