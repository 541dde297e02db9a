"""``FSDPStrategy`` whose full checkpoints resume on torch >= 2.2.

Two upstream problems of mmengine 0.10.7's ``FSDPStrategy`` with the pinned
torch 2.9, both on the optimizer side of a checkpoint:

* ``load_optim_state_dict`` calls ``FSDP.optim_state_dict_to_load(state_dict,
  model, optimizer)``; torch 2.2 changed that signature to ``(model, optim,
  optim_state_dict)``, so every resume fails (``TypeError: unhashable type:
  'dict'``);
* ``optim_state_dict`` keeps only ``state`` and ``param_groups`` of the optim
  wrapper's state dict, dropping the AMP loss scaler and the non-finite
  guard's counters.

And one on the gradient side: ``OptimWrapper(clip_grad=dict(max_norm=...))``
clips with ``torch.nn.utils.clip_grad_norm_`` over each rank's gradient
*shards*, i.e. every shard by its own local norm (different coefficients on
different ranks, and the wrong norm).

:class:`ResumableFSDPStrategy` passes keyword arguments, carries the
wrapper's extra keys through save and load, and marks this project's guarded
wrappers ``grads_sharded`` (global norm; a plain wrapper with norm clipping
is refused). Everything else is upstream's.
"""
import torch
from mmengine._strategy.fsdp import FSDPStrategy
from mmengine.registry import STRATEGIES
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

__all__ = ['ResumableFSDPStrategy']

_OPTIM_KEYS = ('state', 'param_groups')


@STRATEGIES.register_module()
class ResumableFSDPStrategy(FSDPStrategy):
    """Arguments are those of ``mmengine._strategy.FSDPStrategy``."""

    def optim_state_dict(self) -> dict:
        state = super().optim_state_dict()
        wrapper_state = self.optim_wrapper.state_dict()
        state.update({k: v for k, v in wrapper_state.items()
                      if k not in _OPTIM_KEYS})
        return state

    def load_optim_state_dict(self, state_dict: dict) -> None:
        extras = {k: state_dict.pop(k) for k in list(state_dict)
                  if k not in _OPTIM_KEYS}
        optim_state_dict = FSDP.optim_state_dict_to_load(
            model=self.model, optim=self.optim_wrapper.optimizer,
            optim_state_dict=state_dict)
        optim_state_dict.update(extras)
        self.optim_wrapper.load_state_dict(optim_state_dict)

    def build_optim_wrapper(self, optim_wrapper, model=None):
        built = super().build_optim_wrapper(optim_wrapper, model)
        wrappers = (built.values() if hasattr(built, 'values') else [built])
        for wrapper in wrappers:
            if hasattr(type(wrapper), 'grads_sharded'):
                wrapper.grads_sharded = True
            elif (getattr(wrapper, 'clip_grad_kwargs', None)
                  and wrapper.clip_func is torch.nn.utils.clip_grad_norm_):
                raise ValueError(
                    f'{type(wrapper).__name__} with clip_grad clips each '
                    'FSDP gradient shard by its own norm; use '
                    'GuardedOptimWrapper or GuardedAmpOptimWrapper '
                    '(global norm under FSDP)')
        return built
