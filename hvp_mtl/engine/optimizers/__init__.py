"""Optimizer wrappers and constructors (registered in mmpretrain's registry).

* :mod:`.guarded_optim_wrappers`: ``GuardedOptimWrapper`` /
  ``GuardedAmpOptimWrapper``, mmengine's wrappers with the non-finite step
  guard of :mod:`.nonfinite_guard` (which also clips by the global gradient
  norm under FSDP) and the model snapshot of :mod:`.step_snapshot`;
* :mod:`.backbone_layer_decay_constructor`: layer-wise lr decay for
  fine-tuning.
"""
from .backbone_layer_decay_constructor import (
    BackboneLayerDecayOptimWrapperConstructor,
    backbone_layer_depth_fn,
)
from .guarded_optim_wrappers import GuardedAmpOptimWrapper, GuardedOptimWrapper
from .nonfinite_guard import NonFiniteGuardMixin, NonFiniteTrainingError

__all__ = [
    'BackboneLayerDecayOptimWrapperConstructor', 'backbone_layer_depth_fn',
    'GuardedOptimWrapper', 'GuardedAmpOptimWrapper', 'NonFiniteGuardMixin',
    'NonFiniteTrainingError'
]
