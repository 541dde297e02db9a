"""Truncated Sinkhorn-Knopp for the SwAV codes of eq. (2)-(3).

HVP-MTL (arXiv 2310.07510, §3.2) computes the SwAV codes with Sinkhorn-Knopp
and, "to avoid the collapse with the exponential operation", clamps the input
of the exponential at a threshold ``T_max`` (10 in the paper).
"""
import math
from typing import Optional

import torch
import torch.distributed as dist


def _resolve_world_size(world_size: Optional[int]) -> int:
    """Number of processes whose batches share one Sinkhorn problem."""
    initialized = dist.is_available() and dist.is_initialized()
    if world_size is None:
        return dist.get_world_size() if initialized else 1
    world_size = int(world_size)
    if world_size < 1:
        raise ValueError(f'world_size must be >= 1, got {world_size}')
    if world_size > 1:
        if not initialized:
            raise ValueError(f'world_size={world_size} but torch.distributed '
                             'is not initialised')
        if world_size != dist.get_world_size():
            raise ValueError(f'world_size={world_size} does not match the '
                             f'process group ({dist.get_world_size()})')
    return world_size


def _all_reduce(tensor: torch.Tensor,
                world_size: int,
                op=None) -> torch.Tensor:
    """In-place all-reduce over the default group (no-op for one process)."""
    if world_size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op is None else op)
    return tensor


@torch.no_grad()
def truncated_sinkhorn(scores: torch.Tensor,
                       epsilon: float = 0.05,
                       iterations: int = 3,
                       t_max: float = 10.,
                       world_size: Optional[int] = None) -> torch.Tensor:
    """SwAV's distributed Sinkhorn-Knopp with the HVP-MTL truncation.

    Steps, all in fp32 (fp64 input stays fp64) under
    ``torch.autocast(enabled=False)``, without gradient:

    1. ``z = min(scores / epsilon, t_max)`` -- the paper's truncation: the
       *exponent input* is clamped from above at ``t_max`` (no lower clamp),
       so ``exp`` never exceeds ``e**t_max``. With cosine scores and
       ``epsilon=0.05``, ``z`` lies in ``[-20, 20]``; ``t_max=10`` flattens
       the top of that range.
    2. ``Q = exp(z - max(z))`` with ``max`` taken over all ranks. The shift
       multiplies ``Q`` by one constant that the first normalisation (by the
       total sum) cancels exactly, so it changes nothing mathematically; it
       keeps the largest entry at 1 so ``Q`` cannot overflow (``t_max=inf``)
       or underflow to all zeros (every ``z`` very negative). With
       ``t_max=inf`` the result equals SwAV's / mmpretrain's up to rounding.
    3. SwAV's iterations on ``Q`` (``K x B``): divide by the all-reduced total;
       then ``iterations`` times divide each prototype row by its
       **all-reduced** sum and by ``K``, and each sample column by its sum and
       by ``B = B_local * world_size``; finally multiply by ``B``.

    Denominators are clamped at the smallest normal float, so a prototype (or
    sample) whose mass underflowed to exactly 0 stays 0 instead of producing
    NaN. That needs every score of it to be about 87 below the batch maximum
    after division by ``epsilon``, which cosine scores with
    ``epsilon >= 0.05`` (range 40) cannot reach.

    Distributed: when ``torch.distributed`` is initialised the total and the
    row sums are all-reduced on every iteration, so equipartition holds over
    the *global* batch -- as in official SwAV (facebookresearch/swav
    ``main_swav.py``). mmpretrain 1.2's ``distributed_sinkhorn`` differs
    under DDP: it all-reduces the row sums only inside its "some row sum is
    0" guard, so each rank equipartitions its *local* batch while still
    dividing columns by the global ``B``. On one process both agree.

    Args:
        scores (torch.Tensor): Prototype scores ``[B_local, K]`` (cosine
            similarities of L2-normalised features and prototypes; queue rows
            may be prepended by the caller).
        epsilon (float): Entropy regularisation ``epsilon``. Defaults to 0.05.
        iterations (int): Sinkhorn iterations. Defaults to 3.
        t_max (float): Upper clamp of ``scores / epsilon``; ``inf`` (or
            ``None``) disables the truncation. Defaults to 10.
        world_size (int, optional): Processes sharing the problem; ``None``
            detects it from ``torch.distributed`` (1 when not initialised).
            An explicit 1 solves each rank's batch locally.

    Returns:
        torch.Tensor: Codes ``[B_local, K]`` (fp32, fp64 for fp64 input);
        each row sums to 1 and, over the global batch, each prototype column
        sums to approximately ``B / K`` (exactly after a row step; the last
        step normalises the samples).
    """
    if scores.dim() != 2:
        raise ValueError('scores must have shape [B, K], got '
                         f'{tuple(scores.shape)}')
    if epsilon <= 0:
        raise ValueError(f'epsilon must be > 0, got {epsilon}')
    if iterations < 0:
        raise ValueError(f'iterations must be >= 0, got {iterations}')
    world_size = _resolve_world_size(world_size)
    dtype = torch.promote_types(scores.dtype, torch.float32)
    tiny = torch.finfo(dtype).tiny

    with torch.autocast(device_type=scores.device.type, enabled=False):
        logits = scores.detach().to(dtype) / epsilon
        if t_max is not None and not math.isinf(t_max):
            logits = logits.clamp(max=t_max)
        shift = logits.max() if logits.numel() else logits.new_zeros(())
        _all_reduce(shift, world_size, dist.ReduceOp.MAX)
        codes = torch.exp(logits - shift).t()  # K x B_local, as in SwAV
        num_prototypes = codes.shape[0]
        num_samples = codes.shape[1] * world_size

        total = codes.sum()
        _all_reduce(total, world_size)
        codes /= total.clamp(min=tiny)
        for _ in range(iterations):
            # Rows: total weight per prototype must be 1/K (global batch).
            row_sums = codes.sum(dim=1, keepdim=True)
            _all_reduce(row_sums, world_size)
            codes /= row_sums.clamp(min=tiny)
            codes /= num_prototypes
            # Columns: total weight per sample must be 1/B.
            codes /= codes.sum(dim=0, keepdim=True).clamp(min=tiny)
            codes /= num_samples
        codes *= num_samples  # columns sum to 1: an assignment per sample
        return codes.t()


@torch.no_grad()
def truncated_share(scores: torch.Tensor, epsilon: float = 0.05,
                    t_max: float = 10.) -> torch.Tensor:
    """Share of the entries of ``scores / epsilon`` that the ``t_max`` clamp
    of :func:`truncated_sinkhorn` cuts (a scalar tensor, no host sync).

    The max-shift already keeps ``exp`` finite, so the clamp only flattens
    the codes: with cosine scores and ``epsilon = 0.05`` it cuts every
    cosine above ``t_max * epsilon = 0.5``.
    """
    if t_max is None or math.isinf(t_max):
        return scores.new_zeros((), dtype=torch.float32)
    return (scores.detach().float() / epsilon > t_max).float().mean()
