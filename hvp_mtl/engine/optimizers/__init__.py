"""Optimizer-wrapper constructors (registered in mmpretrain's registry)."""
from .backbone_layer_decay_constructor import (
    BackboneLayerDecayOptimWrapperConstructor, backbone_layer_depth_fn)

__all__ = ['BackboneLayerDecayOptimWrapperConstructor', 'backbone_layer_depth_fn']
