"""FSDP pieces: a resumable strategy and a per-block auto-wrap policy."""
from .fsdp_wrap_policy import transformer_block_auto_wrap_policy
from .resumable_fsdp_strategy import ResumableFSDPStrategy

__all__ = ['ResumableFSDPStrategy', 'transformer_block_auto_wrap_policy']
