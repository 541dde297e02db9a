"""What a checkpoint needs beyond mmengine's to resume a run exactly.

mmengine 0.10.7 saves model, optimizer (with the AMP loss scaler), parameter
schedulers, message hub and ``meta`` (epoch, iter, seed). Two things are
missing for a resumed run to continue *the same* run:

* the random-number generators of every rank (python, numpy, torch CPU and
  the current CUDA device), which drive data augmentation, mask generation,
  drop-path and dropout;
* the position of the sampler inside the epoch, in samples, so that the
  resumed loop starts there instead of iterating over the skipped batches;
* per-process model state: the checkpoint's ``state_dict`` holds rank 0's
  buffers only, but SwAV's queue differs on every rank (official SwAV saves
  one ``queue{rank}.pth`` per rank). Modules that have such state define
  ``rank_local_state()`` / ``load_rank_local_state(state)``; every rank's
  is stored (a list, like the RNG states) and given back to its rank.

:func:`collect_resume_state` is called on **all** ranks when a checkpoint is
written (it gathers the per-rank RNG states onto every rank); the result is
stored under ``checkpoint['resume_state']`` by
:class:`~hvp_mtl.engine.hooks.ResumeStateHook`. Everything in it is a plain
python object or a tensor, so the checkpoint still loads with
``torch.load(weights_only=True)``.
"""
import contextlib
import random
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.model import is_model_wrapper

from hvp_mtl.models.protocols import RankLocalState

__all__ = [
    'capture_rng_state', 'restore_rng_state', 'preserved_rng_state',
    'collect_resume_state', 'RESUME_STATE_KEY', 'GATHER_EVENT',
    'dataloader_batch_size', 'rank_local_state', 'load_rank_local_state'
]

#: The checkpoint key of the state (the same since it was first written, so
#: every checkpoint of this project resumes the same way).
RESUME_STATE_KEY = 'resume_state'

#: Hook event a checkpoint hook calls on every rank right before it saves
#: (``Runner.save_checkpoint`` and ``before_save_checkpoint`` run on rank 0
#: only; gathering the state is a collective).
GATHER_EVENT = 'before_save_checkpoint_all_ranks'


def capture_rng_state() -> Dict[str, Any]:
    """The state of every random generator of this process.

    Returns:
        dict: ``python``, ``numpy``, ``torch`` and (if initialised) ``cuda``.
    """
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = dict(
        python=random.getstate(),
        # numpy's uint32 key array as an int64 tensor: loadable weights-only
        numpy=(name, torch.from_numpy(keys.astype(np.int64)), int(pos),
               int(has_gauss), float(cached_gaussian)),
        torch=torch.get_rng_state(),
    )
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` for this process."""
    random.setstate(_as_python_state(state['python']))
    name, keys, pos, has_gauss, cached_gaussian = state['numpy']
    keys = keys.numpy() if torch.is_tensor(keys) else np.asarray(keys)
    np.random.set_state(
        (name, keys.astype(np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])


@contextlib.contextmanager
def preserved_rng_state() -> Iterator[None]:
    """Run a block without changing this process's random generators.

    A validation inside training (creating its dataloader iterator draws a
    seed from torch's generator) must not move the training's random stream:
    a run resumed from a checkpoint written right before that validation
    restores the generators as they were at the checkpoint and does not
    validate again, so it would diverge from the uninterrupted run.
    """
    state = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(state)


def _as_python_state(state):
    # checkpoints may turn the inner tuple into a list
    version, internal, gauss_next = state
    return version, tuple(internal), gauss_next


def dataloader_batch_size(dataloader) -> int:
    """Per-process batch size of a (possibly batch-sampler based) loader."""
    if getattr(dataloader, 'batch_size', None) is not None:
        return int(dataloader.batch_size)
    batch_sampler = getattr(dataloader, 'batch_sampler', None)
    return int(getattr(batch_sampler, 'batch_size', 1))


def _stateful_modules(model) -> Dict[str, RankLocalState]:
    """``{name: module}`` of modules with per-process state (FSDP-safe names)."""
    module = model.module if is_model_wrapper(model) else model
    return {
        name.replace('_fsdp_wrapped_module.', ''): sub
        for name, sub in module.named_modules()
        if isinstance(sub, RankLocalState)
    }


def rank_local_state(model) -> Dict[str, Any]:
    """This process's ``{module name: module.rank_local_state()}``."""
    return {name: sub.rank_local_state()
            for name, sub in _stateful_modules(model).items()}


def load_rank_local_state(model, state: Dict[str, Any]) -> None:
    """Inverse of :func:`rank_local_state` for this process."""
    modules = _stateful_modules(model)
    missing = set(state) - set(modules)
    if missing:
        raise KeyError(f'per-process state for modules {sorted(missing)} '
                       'that this model does not have')
    for name, sub_state in state.items():
        modules[name].load_rank_local_state(sub_state)


def collect_resume_state(runner) -> Dict[str, Any]:
    """Build ``checkpoint['resume_state']``; a collective on every rank.

    Args:
        runner: the mmengine ``Runner`` / ``FlexibleRunner`` being trained.

    Returns:
        dict: ``rng`` and ``rank_local`` (lists with one entry per rank),
        ``world_size`` and ``sampler`` (``epoch`` and ``consumed``: samples
        of that epoch already trained on by all ranks together, from the
        train loop).
    """
    _, world_size = get_dist_info()
    rng: List[Dict[str, Any]] = all_gather_object(capture_rng_state())
    rank_local = all_gather_object(rank_local_state(runner.model))
    loop = runner.train_loop
    sampler_state: Optional[Dict[str, int]] = None
    if hasattr(loop, 'sampler_position'):
        sampler_state = loop.sampler_position()
    return dict(rng=rng, rank_local=rank_local, world_size=world_size,
                sampler=sampler_state)
