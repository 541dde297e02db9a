"""Disk space and checkpoint writes: a warning before the first save, one line when one fails.

``AtomicCheckpointHook`` writes ``<name>.tmp`` and renames it; when the write fails (a full
disk, a quota, a file-size limit) :func:`write_failure` removes the partial temp file, leaves
the previous checkpoint and ``last_checkpoint`` as they were, and returns the
:class:`CheckpointWriteError` that stops the run with one line (``tools/train.py`` prints it
without a traceback).
"""
import errno
import logging
import os
import os.path as osp
import shutil

import torch
from mmengine.logging import print_log

__all__ = ['CheckpointWriteError', 'estimate_checkpoint_bytes', 'warn_if_disk_too_small',
           'write_failure']


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (the message is the one line to print)."""


def _gib(num_bytes):
    return f'{num_bytes / 2**30:.2f} GiB'


def _tensor_bytes(obj):
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def estimate_checkpoint_bytes(runner):
    """Bytes of the model's parameters and buffers and the optimizer's state: a checkpoint's
    bulk. Read from the tensors this process holds, with no collective (it runs on rank 0
    alone): under FSDP the flat parameters and their optimizer state are shards, so those
    count ``world_size`` times."""
    from mmengine.dist import get_world_size
    model = runner.model
    params = sum(_tensor_bytes(p) for p in model.parameters())
    buffers = sum(_tensor_bytes(b) for b in model.buffers())
    optim_wrapper = getattr(runner, 'optim_wrapper', None)
    optimizer = getattr(optim_wrapper, 'optimizer', None)
    state = _tensor_bytes(list(optimizer.state.values())) if optimizer is not None else 0
    sharded = any('flat_param' in name for name, _ in model.named_parameters())
    scale = get_world_size() if sharded else 1
    return (params + state) * scale + buffers


def warn_if_disk_too_small(runner, out_dir, max_keep_ckpts):
    """Warn once when ``out_dir``'s free space cannot hold ``max_keep_ckpts + 1`` checkpoints
    (the kept ones and the one being written). Returns ``(free, needed)`` bytes."""
    keep = max_keep_ckpts if max_keep_ckpts and max_keep_ckpts > 0 else 1
    needed = (keep + 1) * estimate_checkpoint_bytes(runner)
    free = shutil.disk_usage(out_dir).free
    if free < needed:
        print_log(f'{out_dir} has {_gib(free)} free, but {keep + 1} checkpoints of about '
                  f'{_gib(needed / (keep + 1))} need {_gib(needed)} (max_keep_ckpts={keep} and '
                  'the one being written): the run will stop when a save fails; free space or '
                  'lower default_hooks.checkpoint.max_keep_ckpts', logger='current',
                  level=logging.WARNING)
    return free, needed


def write_failure(runner, final_path, err):
    """Clean up after a failed save and describe it in one line.

    Args:
        runner (Runner): The runner (its config and work dir name the resume command).
        final_path (str): The checkpoint that was being written (``final_path + '.tmp'``).
        err (Exception): What the write raised.

    Returns:
        CheckpointWriteError: To raise.
    """
    tmp = f'{final_path}.tmp'
    if osp.exists(tmp):
        os.remove(tmp)
    code = getattr(err, 'errno', None)
    reason = (f'[Errno {code} {errno.errorcode.get(code, "?")}] {os.strerror(code)}'
              if code else str(err).splitlines()[0][:200])
    folder = osp.dirname(final_path)
    free = shutil.disk_usage(folder).free
    needed = estimate_checkpoint_bytes(runner)
    last = osp.join(runner.work_dir, 'last_checkpoint')
    previous = open(last, encoding='utf-8').read().strip() if osp.isfile(last) else None
    kept = (f'the previous checkpoint {previous} is intact and last_checkpoint still names it'
            if previous else 'no earlier checkpoint exists')
    config = getattr(runner.cfg, 'filename', None) or 'CONFIG'
    return CheckpointWriteError(
        f'checkpoint {final_path} could not be written: {reason} ({_gib(free)} free in '
        f'{folder}, about {_gib(needed)} needed); the partial file was removed and {kept}; '
        f'free space, then resume with: python tools/train.py {config} --work-dir '
        f'{runner.work_dir} --resume')
