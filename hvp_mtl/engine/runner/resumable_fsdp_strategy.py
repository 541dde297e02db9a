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

:class:`ResumableFSDPStrategy` passes keyword arguments and carries the
wrapper's extra keys through save and load. Everything else is upstream's.
"""
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
