"""hvp_mtl: HVP-MTL multi-task visual pre-training as an OpenMMLab 2.x plugin.

Importing this package (configs do it through ``custom_imports``) applies the
compatibility fixes of :mod:`hvp_mtl.compat` and registers every class of the
plugin into the **mmpretrain** registries (``mmpretrain.registry.MODELS``,
``DATASETS``, ``TRANSFORMS``, ``HOOKS``, ...), so they are reachable as
``'X'`` from mmpretrain configs and as ``'mmpretrain.X'`` from mmdet/mmseg.
"""
from . import compat  # noqa: F401  (must run before any checkpoint is loaded)

# isort: split
from . import datasets, engine, evaluation, models  # noqa: F401

__version__ = '0.1.0'
__all__ = ['compat', 'datasets', 'engine', 'evaluation', 'models', '__version__']
