"""Compatibility fixes for the pinned stack, applied once on ``import hvp_mtl``.

The one fix that matters at run time is checkpoint loading under torch >= 2.6
(ENVIRONMENT.md item 1): ``torch.load`` defaults to ``weights_only=True`` and
mmengine 0.10.7 calls it without the argument, so resuming a run fails on the
``HistoryBuffer`` and numpy objects in ``message_hub``. We extend torch's
weights-only allow-list with exactly those classes. We never set
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` and never pass ``weights_only=False``: a
checkpoint holding any other class is still refused by torch.

The other known breakages are handled where they arise:

* top-level ``import`` in configs (item 2): configs in this project have none,
  and ``tests/test_configs.py`` checks it;
* mmdet's Swin renaming keys, ``relative_position_index`` clashes and registry
  scopes (items 3, 4, 6): the downstream configs use ``mmpretrain.`` types and
  the exporter in ``tools/model_converters``;
* ``transformers`` and ``setuptools`` (pins): ``tools/setup_env.sh``.
"""
import importlib

import torch

__all__ = ['MMENGINE_CHECKPOINT_SAFE_GLOBALS', 'register_safe_globals']


def _resolve(path):
    """Import ``'pkg.mod.Name'`` and return the object, or None if absent."""
    module_name, _, attr = path.rpartition('.')
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, attr, None)


def _numpy_globals():
    """The numpy objects pickled inside mmengine's ``HistoryBuffer``.

    numpy 2 moved ``numpy.core`` to ``numpy._core``; pickles written by either
    refer to their own path, so both spellings are allow-listed where present.
    """
    import numpy as np
    objects = [np.ndarray, np.dtype]
    for prefix in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        for name in ('_reconstruct', 'scalar'):
            obj = _resolve(f'{prefix}.{name}')
            if obj is not None:
                objects.append(obj)
    # dtype classes (numpy >= 1.25 pickles dtypes through these)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        for name in ('Float64DType', 'Float32DType', 'Float16DType', 'Int64DType',
                     'Int32DType', 'Int16DType', 'Int8DType', 'UInt8DType',
                     'BoolDType'):
            obj = getattr(dtypes, name, None)
            if obj is not None:
                objects.append(obj)
    return objects


def _mmengine_globals():
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer]


MMENGINE_CHECKPOINT_SAFE_GLOBALS = []


def register_safe_globals():
    """Allow-list the classes that full mmengine checkpoints contain.

    Returns:
        list: the objects added to ``torch.serialization``'s safe globals.
    """
    global MMENGINE_CHECKPOINT_SAFE_GLOBALS
    if not hasattr(torch.serialization, 'add_safe_globals'):  # torch < 2.4
        return []
    objects = _mmengine_globals() + _numpy_globals()
    torch.serialization.add_safe_globals(objects)
    MMENGINE_CHECKPOINT_SAFE_GLOBALS = objects
    return objects


register_safe_globals()
