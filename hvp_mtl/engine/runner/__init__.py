"""Runner parts for training at scale: O(1) exact resume, NaN guard, CPU DDP."""
from .cpu_distributed import enable_cpu_distributed
from .fsdp_wrap_policy import transformer_block_auto_wrap_policy
from .guarded_optim_wrappers import GuardedAmpOptimWrapper, GuardedOptimWrapper
from .nonfinite_guard import NonFiniteGuardMixin, NonFiniteTrainingError
from .resumable_fsdp_strategy import ResumableFSDPStrategy
from .resumable_loops import (ResumableEpochBasedTrainLoop,
                              ResumableIterBasedTrainLoop)
from .resumable_samplers import ResumableDefaultSampler, ResumableInfiniteSampler
from .resume_state import (capture_rng_state, collect_resume_state,
                           restore_rng_state)

enable_cpu_distributed()

__all__ = [
    'enable_cpu_distributed',
    'GuardedOptimWrapper', 'GuardedAmpOptimWrapper',
    'NonFiniteTrainingError', 'NonFiniteGuardMixin', 'ResumableEpochBasedTrainLoop',
    'ResumableIterBasedTrainLoop', 'ResumableDefaultSampler',
    'ResumableInfiniteSampler', 'capture_rng_state', 'collect_resume_state',
    'restore_rng_state', 'transformer_block_auto_wrap_policy',
    'ResumableFSDPStrategy'
]
