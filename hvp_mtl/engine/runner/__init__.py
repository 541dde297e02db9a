"""Runner parts: the O(1) exact-resume train loops and their resume state,
the subset-then-full validation loop and the CPU fall-back of a distributed
launch."""
from .cpu_distributed import enable_cpu_distributed
from .multi_label_val_loop import MultiLabelValLoop, evenly_spaced_indices
from .resumable_loops import ResumableEpochBasedTrainLoop, ResumableIterBasedTrainLoop
from .resume_state import capture_rng_state, collect_resume_state, restore_rng_state

__all__ = [
    'enable_cpu_distributed', 'MultiLabelValLoop', 'evenly_spaced_indices',
    'ResumableEpochBasedTrainLoop',
    'ResumableIterBasedTrainLoop', 'capture_rng_state',
    'collect_resume_state', 'restore_rng_state'
]
