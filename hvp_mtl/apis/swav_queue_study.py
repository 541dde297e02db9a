"""SwAV's codes at the paper's global batch, with and without a queue.

Official SwAV adds a queue of past embeddings to the Sinkhorn problem below a global batch of
about 4,096 (its batch-256 recipe: 3,840 queued embeddings). HVP-MTL trains at 16 images per
GPU x 64 GPUs = 1,024 rows against K = 3,000 prototypes and the paper says nothing of a queue.
Equipartition gives each prototype ``B / K`` of a sample's mass: 0.34 of a sample at B = 1,024,
1.6 with 3,840 queued rows, so without a queue each sample must be spread over several
prototypes. This module measures that on the project's :func:`truncated_sinkhorn` (the global
problem: with the distributed Sinkhorn the all-reduced sums make 64 processes x 16 rows one
problem of 1,024 rows, so one process with 1,024 rows is its exact equivalent).

Embeddings are synthetic (no 1,024-image batch of a trained Swin-B is available here):

* ``spread``: unit vectors uniform on the 128-d sphere, as a freshly initialised projector's
  outputs are spread at best; cosines to random prototypes stay within about +-0.3.
* ``clustered``: each sample near one prototype, its cosine to it uniform in [0.3, 0.9], as a
  trained head's embeddings are; the T_max clamp (``scores / 0.05 > 10``, cosine > 0.5) bites.
"""
import math
from typing import Dict

import torch
import torch.nn.functional as F

from hvp_mtl.models.losses.sinkhorn import truncated_share, truncated_sinkhorn

__all__ = ['synthetic_scores', 'code_statistics', 'queue_study']


def synthetic_scores(kind: str, rows: int, num_prototypes: int = 3000, dims: int = 128,
                     seed: int = 0) -> torch.Tensor:
    """Cosine scores ``[rows, K]`` of synthetic unit embeddings against random unit prototypes.

    Args:
        kind (str): ``'spread'`` or ``'clustered'`` (module docstring).
        rows (int): Number of embeddings.
        num_prototypes (int): ``K``.
        dims (int): Embedding width.
        seed (int): Seed of the prototypes and embeddings.
    """
    gen = torch.Generator().manual_seed(seed)
    prototypes = F.normalize(torch.randn(num_prototypes, dims, generator=gen), dim=1)
    noise = F.normalize(torch.randn(rows, dims, generator=gen), dim=1)
    if kind == 'spread':
        embeddings = noise
    elif kind == 'clustered':
        own = prototypes[torch.randint(num_prototypes, (rows,), generator=gen)]
        cosine = 0.3 + 0.6 * torch.rand(rows, 1, generator=gen)
        # the noise's component orthogonal to the own prototype
        ortho = F.normalize(noise - (noise * own).sum(1, keepdim=True) * own, dim=1)
        embeddings = cosine * own + (1 - cosine ** 2).sqrt() * ortho
    else:
        raise ValueError(f"kind must be 'spread' or 'clustered', got {kind!r}")
    return embeddings @ prototypes.t()


def code_statistics(codes: torch.Tensor) -> Dict[str, float]:
    """Per-sample entropy (nats, and ``exp`` of it: prototypes a sample is spread over),
    prototypes in use (distinct argmax over the rows), entropy of the mean code."""
    logp = codes.clamp(min=1e-30).log()
    entropy = -(codes * logp).sum(1)
    mean = codes.mean(0)
    return dict(code_entropy=float(entropy.mean()),
                prototypes_per_sample=float(entropy.exp().mean()),
                top1_mass=float(codes.max(1).values.mean()),
                prototypes_in_use=int(codes.argmax(1).unique().numel()),
                mean_code_entropy=float(-(mean * mean.clamp(min=1e-30).log()).sum()))


def queue_study(batch: int = 1024, queue: int = 3840, num_prototypes: int = 3000,
                epsilon: float = 0.05, t_max: float = 10., iterations: int = 3,
                seeds=(0, 1, 2)) -> list:
    """Rows ``{kind, queue, t_max, seed, statistics...}`` of the batch's codes, for each
    embedding kind, without a queue and with ``queue`` rows of the same distribution prepended,
    with the paper's ``t_max`` and without the clamp (``inf``)."""
    rows = []
    for kind in ('spread', 'clustered'):
        for seed in seeds:
            scores = synthetic_scores(kind, batch + queue, num_prototypes, seed=seed)
            for queued, clamp in ((0, t_max), (queue, t_max), (0, math.inf), (queue, math.inf)):
                problem = scores[queue - queued:]  # the last `batch` rows are the batch
                codes = truncated_sinkhorn(problem.double(), epsilon, iterations, clamp,
                                           world_size=1)[-batch:]
                rows.append(dict(kind=kind, queue=queued, t_max=clamp, seed=seed,
                                 rows=batch + queued,
                                 clamped_share=float(truncated_share(problem, epsilon, clamp)),
                                 **code_statistics(codes)))
    return rows


def summary_table(rows: list, num_prototypes: int = 3000) -> str:
    """Markdown table: mean over seeds per (kind, queue)."""
    keys = ('code_entropy', 'prototypes_per_sample', 'top1_mass', 'prototypes_in_use',
            'mean_code_entropy', 'clamped_share')
    lines = [f'| embeddings | queue | T_max | Sinkhorn rows | code entropy (nats; ln K = '
             f'{math.log(num_prototypes):.2f}) | prototypes per sample (exp H) | top-1 mass | '
             'prototypes in use (of the batch argmax) | entropy of the mean code | '
             'share clamped by T_max |', '|---|---|---|---|---|---|---|---|---|---|']
    groups = {}
    for r in rows:
        groups.setdefault((r['kind'], r['queue'], r['t_max']), []).append(r)
    for (kind, queued, clamp), group in groups.items():
        mean = {k: sum(g[k] for g in group) / len(group) for k in keys}
        lines.append(f"| {kind} | {queued} | {clamp:g} | {group[0]['rows']} | "
                     f"{mean['code_entropy']:.2f} | "
                     f"{mean['prototypes_per_sample']:.1f} | {mean['top1_mass']:.3f} | "
                     f"{mean['prototypes_in_use']:.0f} | {mean['mean_code_entropy']:.2f} | "
                     f"{100 * mean['clamped_share']:.2f} % |")
    return '\n'.join(lines)
