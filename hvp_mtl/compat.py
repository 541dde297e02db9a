"""Process-wide fixes for the pinned stack, applied once on ``import hvp_mtl``.

Only patches that *must* be global live here: each fixes code that upstream
packages call from their own internals (mmengine's resume, mmengine's
dataloader builder, mmpretrain's ``ColorJitter`` and Swin loader), so no
local wrapper in this project could reach it. Each function's docstring says
why, for which upstream version, and when to remove it:

=====================================  ==========================================
:func:`register_safe_globals`          torch >= 2.6 ``weights_only`` resume of
                                       mmengine 0.10.7 checkpoints (allow-list)
:func:`drop_statistics_methods_...`    mmengine 0.10.7 ``HistoryBuffer`` pickles
                                       ``getattr`` (refused weights-only)
:func:`patch_collate_scope`            mmengine 0.10.7 passes ``_scope_`` to
                                       ``collate_fn``
:func:`patch_adjust_hue`               mmcv 2.1.0 ``adjust_hue`` on numpy 2
:func:`patch_swin_table_resize`        mmpretrain 1.2.0 Swin resize on SciPy >=
                                       1.14 (``interp2d`` removed)
=====================================  ==========================================

Not here, on purpose: the CPU fall-back of a distributed launch
(:func:`hvp_mtl.engine.runner.enable_cpu_distributed`) is applied explicitly by
the entry points that start one, never on import. The other known breakages
are handled where they arise: configs have no top-level ``import``
(``tests/test_configs/test_configs.py`` checks it); mmdet's Swin key renaming,
``relative_position_index`` clashes and registry scopes by the downstream
configs' ``mmpretrain.`` types and the backbone exporter; ``transformers``
and ``setuptools`` by the environment pins.
"""
import importlib

import torch

__all__ = ['MMENGINE_CHECKPOINT_SAFE_GLOBALS', 'PROCESS_WIDE_PATCHES',
           'register_safe_globals', 'drop_statistics_methods_from_pickles',
           'empty_bytes_only', 'patch_collate_scope', 'patch_adjust_hue',
           'patch_swin_table_resize']


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


def empty_bytes_only(*args) -> bytes:
    """Stands for ``builtins.bytes`` in weights-only loading: ``b''`` only.

    An *empty* ``HistoryBuffer`` (a scalar registered but never updated)
    holds ``np.array([])``, whose pickled data is ``b''``; ``torch.save``'s
    pickle protocol 2 writes an empty ``bytes`` as the call
    ``builtins.bytes()``. Allow-listing ``bytes`` itself would let a
    checkpoint allocate ``bytes(10**12)``; this stand-in builds ``b''`` only.

    Raises:
        pickle.UnpicklingError: for any argument (a checkpoint that builds
            non-empty bytes this way was not written by ``torch.save``).
    """
    if args:
        import pickle
        raise pickle.UnpicklingError(
            'weights-only load: builtins.bytes is allowed only without '
            f'arguments (empty bytes), got {len(args)} argument(s)')
    return b''


MMENGINE_CHECKPOINT_SAFE_GLOBALS = []


def register_safe_globals():
    """Allow-list the classes that full mmengine checkpoints contain.

    Why: since torch 2.6 ``torch.load`` defaults to ``weights_only=True`` and
    mmengine 0.10.7 (``load_checkpoint``, ``Runner.resume``) calls it without
    the argument, so resuming fails on the ``HistoryBuffer`` and numpy
    objects of ``message_hub``. Global because mmengine calls ``torch.load``
    itself. We never turn weights-only loading off: any other class is still
    refused. Remove when mmengine passes an allow-list (or its checkpoints
    hold only tensors and plain containers).

    Returns:
        list: the objects added to ``torch.serialization``'s safe globals.
    """
    global MMENGINE_CHECKPOINT_SAFE_GLOBALS
    if not hasattr(torch.serialization, 'add_safe_globals'):  # torch < 2.4
        return []
    objects = _mmengine_globals() + _numpy_globals() + [
        (empty_bytes_only, 'builtins.bytes')
    ]
    torch.serialization.add_safe_globals(objects)
    MMENGINE_CHECKPOINT_SAFE_GLOBALS = objects
    return objects


def _getstate_without_methods(self):
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    state.pop('_statistics_methods', None)
    return state


def drop_statistics_methods_from_pickles():
    """Patch ``HistoryBuffer.__getstate__`` to leave out bound methods (idempotent).

    Why: mmengine 0.10.7's ``HistoryBuffer.__getstate__`` adds its
    class-level ``_statistics_methods`` (bound functions such as
    ``HistoryBuffer.min``) to the pickled state, stored as
    ``getattr(HistoryBuffer, 'min')``; weights-only loading refuses
    ``builtins.getattr``, rightly. Without them ``__setstate__`` re-registers
    the defaults, so every checkpoint this project writes resumes
    weights-only. Global because mmengine pickles ``message_hub`` inside
    ``Runner.save_checkpoint``. A checkpoint written by plain mmengine still
    carries the ``getattr`` and is refused; resume it with the run that wrote
    it, or re-save it under ``import hvp_mtl``. Remove when mmengine drops
    the methods from the state.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    HistoryBuffer.__getstate__ = _getstate_without_methods


def _strip_collate_scope(build_dataloader):
    def wrapper(dataloader, *args, **kwargs):
        if isinstance(dataloader, dict) and isinstance(dataloader.get('collate_fn'), dict) \
                and '_scope_' in dataloader['collate_fn']:
            dataloader = dict(dataloader)
            dataloader['collate_fn'] = {
                k: v for k, v in dataloader['collate_fn'].items() if k != '_scope_'}
        return build_dataloader(dataloader, *args, **kwargs)

    wrapper.__wrapped__ = build_dataloader
    wrapper.__doc__ = build_dataloader.__doc__
    return wrapper


def patch_collate_scope():
    """Make ``Runner``/``FlexibleRunner.build_dataloader`` ignore ``collate_fn._scope_``.

    Why: a config that inherits an ``mmpretrain::`` base gets
    ``_scope_='mmpretrain'`` added to every dict with a ``type``, including
    ``train_dataloader.collate_fn``; mmengine 0.10.7's ``build_dataloader``
    passes it on to the collate function (``TypeError: default_collate() got
    an unexpected keyword argument '_scope_'``). Global because mmengine's
    runners build the dataloaders themselves. Remove when mmengine pops
    ``_scope_`` before calling ``collate_fn``.
    """
    from mmengine.runner import FlexibleRunner, Runner
    for runner_cls in (Runner, FlexibleRunner):
        current = runner_cls.__dict__['build_dataloader']
        func = current.__func__ if isinstance(current, staticmethod) else current
        if getattr(func, '__wrapped__', None) is None:
            runner_cls.build_dataloader = staticmethod(_strip_collate_scope(func))


def adjust_hue(img, hue_factor, backend=None):
    """mmcv's ``adjust_hue`` with a numpy-2-safe hue shift (same results)."""
    import cv2
    import mmcv.image.photometric as photometric
    import numpy as np
    from PIL import Image

    backend = backend or photometric.imread_backend
    if backend not in ['cv2', 'pillow']:
        raise ValueError(f'backend: {backend} is not supported.'
                         f"Supported backends are 'cv2', 'pillow'")
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f'hue_factor:{hue_factor} is not in [-0.5, 0.5].')
    if not (isinstance(img, np.ndarray) and img.ndim in {2, 3}):
        raise TypeError('img should be ndarray with dim=[2 or 3].')
    shift = np.uint8(int(hue_factor * 255) % 256)  # uint8 addition rotates
    if backend == 'pillow':
        assert img.dtype == np.uint8, 'Pillow backend only support uint8 type'
        pil_image = Image.fromarray(img[..., ::-1], mode='RGB')
        h, s, v = pil_image.convert('HSV').split()
        np_h = np.array(h, dtype=np.uint8)
        np_h += shift
        pil_image = Image.merge('HSV', (Image.fromarray(np_h, 'L'), s, v)).convert('RGB')
        return np.array(pil_image, dtype=img.dtype)[..., ::-1]
    dtype = img.dtype
    h, s, v = cv2.split(cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2HSV_FULL))
    h = h.astype(np.uint8)
    h += shift
    return cv2.cvtColor(cv2.merge([h, s, v]), cv2.COLOR_HSV2BGR_FULL).astype(dtype)


def patch_adjust_hue():
    """Install :func:`adjust_hue` wherever mmcv exposes it.

    Why: mmcv 2.1.0's ``adjust_hue`` (used by mmpretrain's ``ColorJitter``)
    does ``np.uint8(hue_factor * 255)``, which numpy 2 refuses for a negative
    hue (``OverflowError``), so colour jitter with ``hue > 0`` crashes at
    random. Global because mmpretrain's transform calls mmcv directly; the
    replacement computes the shift modulo 256 (numpy 1's result). Remove
    with an mmcv release that supports numpy 2 (mmdet 3.3.0 and mmseg 1.2.2
    refuse mmcv >= 2.2.0 today).
    """
    import mmcv
    import mmcv.image
    import mmcv.image.photometric
    for module in (mmcv, mmcv.image, mmcv.image.photometric):
        module.adjust_hue = adjust_hue


def _regular_grid_interp2d(x, y, z, kind='cubic'):
    """``interp2d`` on a regular grid (what mmpretrain uses): an s=0 spline, as SciPy did."""
    import numpy as np
    from scipy.interpolate import RectBivariateSpline
    order = {'linear': 1, 'cubic': 3, 'quintic': 5}[kind]
    # interp2d takes z[len(y), len(x)] and returns f(xnew, ynew)[len(ynew), len(xnew)]
    spline = RectBivariateSpline(np.asarray(x), np.asarray(y), np.asarray(z).T,
                                 kx=order, ky=order, s=0)
    return lambda xnew, ynew: spline(np.asarray(xnew), np.asarray(ynew)).T


def _fill_missing_index_then(prepare):
    def wrapper(self, state_dict, prefix, *args, **kwargs):
        own = self.state_dict()
        for key, value in own.items():
            if key.endswith('relative_position_index'):
                table_key = prefix + key.replace('relative_position_index',
                                                 'relative_position_bias_table')
                if table_key in state_dict and prefix + key not in state_dict:
                    state_dict[prefix + key] = value
        return prepare(self, state_dict, prefix, *args, **kwargs)

    wrapper.__wrapped__ = prepare
    return wrapper


def patch_swin_table_resize():
    """Make mmpretrain's Swin resize relative position tables on current SciPy.

    Why: fine-tuning Swin with another window size (w12 at 384 px) resizes
    ``relative_position_bias_table`` with ``scipy.interpolate.interp2d``,
    which SciPy >= 1.14 removed (a stub that raises), and mmpretrain 1.2.0
    then deletes the matching ``relative_position_index`` from the
    checkpoint, a ``KeyError`` for exports that leave that buffer out. The
    same cubic spline is given through ``RectBivariateSpline`` (installed
    only where SciPy's stub raises) and the missing index buffers are filled
    from the model first. Global because mmpretrain's loader (also inside
    mmdet/mmseg runs) does the resize. Remove when mmpretrain stops using
    ``interp2d``.
    """
    from mmpretrain.models.backbones.swin_transformer import SwinTransformer
    from scipy import interpolate
    try:  # SciPy >= 1.14 keeps only a stub that raises NotImplementedError
        interpolate.interp2d([0, 1, 2, 3], [0, 1, 2, 3], [[0] * 4] * 4, kind='cubic')
    except NotImplementedError:
        interpolate.interp2d = _regular_grid_interp2d
    prepare = SwinTransformer._prepare_relative_position_bias_table
    if getattr(prepare, '__wrapped__', None) is None:
        SwinTransformer._prepare_relative_position_bias_table = \
            _fill_missing_index_then(prepare)


#: The process-wide patches, applied in this order on ``import hvp_mtl``.
PROCESS_WIDE_PATCHES = (register_safe_globals,
                        drop_statistics_methods_from_pickles,
                        patch_collate_scope, patch_adjust_hue,
                        patch_swin_table_resize)

for _patch in PROCESS_WIDE_PATCHES:
    _patch()
