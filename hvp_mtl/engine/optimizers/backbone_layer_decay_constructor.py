"""Layer-wise learning-rate decay for detectors and segmentors.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the *model* for
``get_layer_depth``: an mmpretrain ``ImageClassifier`` has it, an mmdet
``MaskRCNN`` or an mmseg ``EncoderDecoder`` does not, and mmdet's / mmseg's own
layer-decay constructors know ConvNeXt / BEiT parameter names but not Swin.
This constructor takes the depth from the model's **backbone** instead
(``model.backbone.get_layer_depth(name, 'backbone.')``, which mmpretrain's
``SwinTransformer`` and ``VisionTransformer`` implement), so the same
SimMIM / BEiT fine-tuning rule works inside any runner:

.. math::

    \\mathrm{lr}(p) = \\mathrm{lr}_{base}\\cdot
        \\rho^{\\,L - 1 - \\mathrm{layer\\_id}(p)}

with ``L = sum(depths) + 2`` for Swin (``num_layers + 2`` for ViT): the patch
embedding has ``layer_id = 0``, block ``j`` of stage ``i`` has
``sum(depths[:i]) + j + 1``, a stage's patch merging shares the id of the
stage's last block, and everything after the backbone blocks (output norms,
neck, heads) has ``L - 1``, i.e. the full learning rate.

It is registered in mmpretrain's registry; from an mmdet or mmseg config
(default scope ``mmdet`` / ``mmseg``) write the scoped name::

    optim_wrapper = dict(
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
        constructor='mmpretrain.BackboneLayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=0.9, custom_keys={
            '.norm': dict(decay_mult=0.), ...}))

``paramwise_cfg`` accepts the keys of mmpretrain's constructor
(``layer_decay_rate``, ``custom_keys`` with ``decay_mult``,
``norm_decay_mult``, ``bias_decay_mult``, ``flat_decay_mult``).
"""
from typing import Callable, List, Optional

from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor
from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

from hvp_mtl.models.protocols import LayerDepth

__all__ = ['BackboneLayerDecayOptimWrapperConstructor', 'backbone_layer_depth_fn']


def backbone_layer_depth_fn(model: nn.Module, backbone_attr: str = 'backbone') -> Callable:
    """The ``param_name -> (layer_id, num_layers)`` function of ``model``.

    Args:
        model (nn.Module): an mmpretrain classifier, mmdet detector, mmseg
            segmentor, ... (unwrapped).
        backbone_attr (str): attribute holding the backbone.

    Returns:
        Callable[[str], tuple[int, int]]: depth of a full parameter name
        (``backbone.stages.0...``, ``neck...``).

    Raises:
        NotImplementedError: the backbone has no ``get_layer_depth``.
    """
    if isinstance(model, LayerDepth):
        return model.get_layer_depth
    backbone = getattr(model, backbone_attr, None)
    if not isinstance(backbone, LayerDepth):
        raise NotImplementedError(
            f'Layer-wise lr decay needs `{backbone_attr}.get_layer_depth` on '
            f'{type(model).__name__} (backbone: '
            f'{type(backbone).__name__ if backbone is not None else None}); '
            "use type='mmpretrain.SwinTransformer' or "
            "'mmpretrain.VisionTransformer' as the backbone.")
    prefix = f'{backbone_attr}.'

    def get_layer_depth(param_name: str):
        return backbone.get_layer_depth(param_name, prefix)

    return get_layer_depth


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class BackboneLayerDecayOptimWrapperConstructor(LearningRateDecayOptimWrapperConstructor):
    """Layer-wise lr decay driven by ``model.backbone.get_layer_depth``.

    Each parameter group gets ``lr = base_lr * layer_decay_rate ** (L - 1 -
    layer_id)`` and keeps ``lr_scale``, ``layer_id`` and ``param_name`` for
    inspection, exactly as mmpretrain's constructor does for classifiers.

    ``paramwise_cfg`` may additionally hold ``backbone_attr`` (default
    ``'backbone'``).
    """

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   get_layer_depth: Optional[Callable] = None,
                   **kwargs) -> None:
        """Add the parameters of ``module`` (recursively) to ``params``.

        At the top level the depth function is taken from the backbone; the
        recursion is mmpretrain's.
        """
        if get_layer_depth is None and prefix == '':
            backbone_attr = self.paramwise_cfg.get('backbone_attr', 'backbone')
            get_layer_depth = backbone_layer_depth_fn(module, backbone_attr)
        super().add_params(params, module, prefix=prefix,
                           get_layer_depth=get_layer_depth, **kwargs)
