"""Load a checkpoint file weights-only, with errors that say what the file is.

``torch.load(weights_only=True)`` on a file that is not a checkpoint (a text file, a
truncated download, a half-written copy) raises an ``UnpicklingError`` whose text advises
retrying with weights-only loading switched off: advice that is wrong for such a file and
unsafe for any file from elsewhere. :func:`load_checkpoint_file` says instead that the file
is not a PyTorch checkpoint (or is truncated), with its size and first bytes, and never
repeats torch's advice.
A real checkpoint holding a class outside the allow-list of :mod:`hvp_mtl.compat` is named as
such (the class), still refused.
"""
import os.path as osp
import pickle
import re
import zipfile

import torch

__all__ = ['NotACheckpointError', 'load_checkpoint_file']

#: what torch's weights-only unpickler says about a class it will not load
_UNSUPPORTED = re.compile(r'Unsupported global: GLOBAL ([\w.]+)')


class NotACheckpointError(ValueError):
    """The file is not a (complete) PyTorch checkpoint."""


def _describe(path):
    """Size and first bytes of ``path``, for the message."""
    size = osp.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(16)
    return f'{size:,} bytes, starting {head!r}'


def _not_a_checkpoint(path, why):
    return NotACheckpointError(
        f'{path}: not a PyTorch checkpoint (or truncated): {why} ({_describe(path)}; a '
        "checkpoint written by torch.save is a zip archive starting b'PK'). Check the path, or "
        'copy / download the file again')


def load_checkpoint_file(path, map_location='cpu'):
    """``torch.load(path, weights_only=True)``, with plain errors.

    Args:
        path (str): The checkpoint file.
        map_location (str | torch.device): As for ``torch.load``.

    Returns:
        The loaded object.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        NotACheckpointError: The file is not a PyTorch checkpoint, or is truncated.
        ValueError: A checkpoint holding an object weights-only loading refuses (named).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: no such checkpoint file')
    if osp.getsize(path) == 0:
        raise _not_a_checkpoint(path, 'the file is empty')
    is_zip = zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = _UNSUPPORTED.search(str(err))
        if found and is_zip:
            raise ValueError(
                f'{path}: a PyTorch checkpoint holding {found.group(1)}, an object that '
                'weights-only loading does not allow (unpickling it could run arbitrary code); '
                'it is refused. Export the weights as a plain state dict (tensors, numbers, '
                'strings) where it was trained') from None
        raise _not_a_checkpoint(path, 'its contents do not unpickle') from None
    except Exception as err:  # noqa: BLE001  (the unpickler fails in many ways on junk)
        why = ('the zip archive is incomplete' if 'zip archive' in str(err)
               else f'torch.load raised {type(err).__name__}')
        raise _not_a_checkpoint(path, why) from None
