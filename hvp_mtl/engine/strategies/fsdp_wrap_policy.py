"""FSDP auto-wrap policy: one FSDP unit per transformer block.

mmpretrain's ``SwinTransformer.forward`` calls ``stage.downsample`` outside
``stage.forward``. If a whole stage is an FSDP unit (what
``size_based_auto_wrap_policy`` produces for Swin-B's third stage: 18 blocks
of 3M parameters each, all under the size threshold), the downsample's
parameters are still sharded at that call and the forward fails with
``weight of shape [0]``. Wrapping each block (and never a stage) keeps every
call that crosses a unit boundary a ``__call__`` of that unit.

Use in a config::

    strategy = dict(type='FSDPStrategy', model_wrapper=dict(
        auto_wrap_policy=dict(type='transformer_block_auto_wrap_policy')))
"""
from typing import Sequence

import torch.nn as nn
from mmengine.registry import FUNCTIONS

__all__ = ['transformer_block_auto_wrap_policy']

DEFAULT_BLOCK_TYPES = ('SwinBlock', 'TransformerEncoderLayer')


@FUNCTIONS.register_module()
def transformer_block_auto_wrap_policy(
        module: nn.Module,
        recurse: bool,
        nonwrapped_numel: int,
        block_types: Sequence[str] = DEFAULT_BLOCK_TYPES) -> bool:
    """``torch.distributed.fsdp`` callable policy (module, recurse, numel).

    Args:
        block_types (Sequence[str]): class names that become FSDP units
            (mmpretrain's Swin and ViT blocks by default).
    """
    if recurse:
        return True  # look inside every module
    return type(module).__name__ in tuple(block_types)
