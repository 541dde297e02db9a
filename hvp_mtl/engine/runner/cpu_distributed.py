"""Let ``--launcher pytorch`` run on machines without GPUs (gloo backend).

mmengine 0.10.7 assumes an accelerator in two places of a distributed start:

* ``mmengine.dist.utils._init_dist_pytorch`` calls ``torch.cuda.set_device``
  (``RuntimeError: Found no NVIDIA driver``) and uses the config's backend,
  ``nccl`` in every mmpretrain ``default_runtime``;
* ``MMDistributedDataParallel`` is built with ``device_ids=[LOCAL_RANK]``,
  which ``torch.nn.parallel.DistributedDataParallel`` refuses for a module
  on the CPU.

:func:`enable_cpu_distributed` wraps both so that, **only when no CUDA device
is available**, the process group is created with ``gloo`` and DDP gets
``device_ids=None``. With a GPU nothing changes. This is what makes
``tools/dist_train.sh CFG 2`` a real 2-process job on a CPU-only machine
(tests and debugging).

``import hvp_mtl`` does not apply it: the entry points that start a
distributed run call it (``tools/train.py`` and ``tools/test.py`` through
their runner builder, ``tools/analysis_tools/knn_probe.py``), so a library
user's mmengine is never patched behind their back.
"""
import functools
import logging
import os

import torch
import torch.distributed as torch_dist

__all__ = ['enable_cpu_distributed']

_APPLIED = False


def _cpu_only() -> bool:
    return not torch.cuda.is_available()


def _init_process_group_gloo(backend: str, launcher: str, **kwargs) -> None:
    from mmengine.logging import print_log
    if backend != 'gloo':
        print_log(
            f'No CUDA device: {launcher} launcher uses the gloo backend '
            f'instead of {backend}.',
            logger='current',
            level=logging.WARNING)
    kwargs.pop('init_backend', None)
    if launcher == 'slurm':
        # mirror mmengine's slurm setup without the device selection
        proc_id = int(os.environ['SLURM_PROCID'])
        ntasks = int(os.environ['SLURM_NTASKS'])
        os.environ.setdefault('WORLD_SIZE', str(ntasks))
        os.environ.setdefault('RANK', str(proc_id))
        os.environ.setdefault(
            'LOCAL_RANK', os.environ.get('SLURM_LOCALID', str(proc_id)))
        os.environ.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in os.environ:
            import subprocess
            node_list = os.environ['SLURM_NODELIST']
            os.environ['MASTER_ADDR'] = subprocess.getoutput(
                f'scontrol show hostname {node_list} | head -n1')
    torch_dist.init_process_group(backend='gloo', **kwargs)


def _patch_init_dist() -> None:
    from mmengine.dist import utils as dist_utils

    original_pytorch = dist_utils._init_dist_pytorch
    original_slurm = dist_utils._init_dist_slurm

    @functools.wraps(original_pytorch)
    def init_dist_pytorch(backend, init_backend='torch', **kwargs):
        if _cpu_only() and init_backend == 'torch':
            return _init_process_group_gloo(backend, 'pytorch', **kwargs)
        return original_pytorch(backend, init_backend=init_backend, **kwargs)

    @functools.wraps(original_slurm)
    def init_dist_slurm(backend, port=None, init_backend='torch', **kwargs):
        if _cpu_only() and init_backend == 'torch':
            if port is not None:
                os.environ['MASTER_PORT'] = str(port)
            return _init_process_group_gloo(backend, 'slurm', **kwargs)
        return original_slurm(
            backend, port=port, init_backend=init_backend, **kwargs)

    dist_utils._init_dist_pytorch = init_dist_pytorch
    dist_utils._init_dist_slurm = init_dist_slurm


def _patch_ddp_device_ids() -> None:
    from mmengine.model.wrappers import MMDistributedDataParallel

    original_init = MMDistributedDataParallel.__init__

    @functools.wraps(original_init)
    def __init__(self, module, *args, **kwargs):
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        if on_cpu and _cpu_only():
            kwargs['device_ids'] = None
            kwargs.pop('output_device', None)
        original_init(self, module, *args, **kwargs)

    MMDistributedDataParallel.__init__ = __init__


def enable_cpu_distributed() -> bool:
    """Apply the two CPU fall-backs once (idempotent), only without CUDA.

    Call it before the runner initialises the process group. With a CUDA
    device it does nothing: mmengine's own NCCL start is used.

    Returns:
        bool: True when the patches were applied by this call.
    """
    global _APPLIED
    if _APPLIED or not _cpu_only():
        return False
    _patch_init_dist()
    _patch_ddp_device_ids()
    _APPLIED = True
    return True
