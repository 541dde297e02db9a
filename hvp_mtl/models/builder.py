"""Build nested plugin modules in the mmpretrain registry, whatever the current scope.

Inside an mmdet or mmseg run the default scope is ``mmdet``/``mmseg``, and a
nested ``MODELS.build(dict(type='X'))`` resolves there, not in mmpretrain where
the plugin's classes live (a known OpenMMLab gotcha). Every nested build in
``hvp_mtl.models`` goes through :func:`build_module`, which pins the scope.
"""
from mmpretrain.registry import MODELS

__all__ = ['build_module']


def build_module(cfg):
    """``MODELS.build(cfg)`` with ``_scope_='mmpretrain'`` unless the config sets one."""
    cfg = dict(cfg)
    cfg.setdefault('_scope_', 'mmpretrain')
    return MODELS.build(cfg)
