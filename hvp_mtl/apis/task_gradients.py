"""How eq. (7)'s weights balance the four tasks on the backbone, for one batch.

The measurement behind ``tools/analysis_tools/task_gradients.py``: one training-mode forward of an
HVP-MTL model on a collated batch, then, for every task with a weight > 0, the weighted loss
``alpha_x * L_x`` (eq. 7), the unweighted ``L_x``, the L2 norm of ``d(alpha_x L_x) / d(theta)``
over the parameters of the backbone's last stage (Swin ``stages[-1]``, ViT ``layers[-1]``) and
that norm's share of the four norms.
"""
import math

import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmpretrain.registry import DATASETS

__all__ = ['TASKS', 'last_stage_parameters', 'first_batch', 'task_gradient_table', 'format_table']

TASKS = ('mlc', 'swav', 'mim', 'distill')


def last_stage_parameters(backbone: torch.nn.Module) -> list:
    """Trainable parameters of the backbone's last stage (Swin) or layer (ViT)."""
    for name in ('stages', 'layers'):
        blocks = getattr(backbone, name, None)
        if blocks is not None and len(blocks):
            return [p for p in blocks[-1].parameters() if p.requires_grad]
    raise ValueError(f'{type(backbone).__name__} has neither stages nor layers')


def first_batch(cfg: Config, batch_size: int, num_classes: int):
    """``(inputs, data_samples)`` of the first images of the training set,
    targets zero-padded to ``num_classes``."""
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batch = default_collate([dataset[i] for i in range(batch_size)])
    padded = 0
    for sample in batch['data_samples']:
        score = sample.gt_score
        if score.numel() < num_classes:
            padded = num_classes - score.numel()
            sample.set_metainfo(dict(num_classes=num_classes))
            sample.set_gt_score(torch.cat([score, score.new_zeros(padded)]))
    return batch, padded


def task_gradient_table(model: torch.nn.Module, data: dict) -> list:
    """One forward, then one backward per task: rows of the table.

    Args:
        model (HVPMTL): In train mode, teacher initialised.
        data (dict): A collated batch (before the data preprocessor).

    Returns:
        list[dict]: ``task``, ``weighted``, ``unweighted``, ``grad_norm``,
        ``share`` for every task with a weight > 0.
    """
    params = last_stage_parameters(model.backbone)
    data = model.data_preprocessor(data, training=True)
    losses = model(**data, mode='loss')
    rows = []
    for task in TASKS:
        key = f'loss_{task}'
        if key not in losses:
            continue
        grads = torch.autograd.grad(losses[key], params, retain_graph=True,
                                    allow_unused=True)
        norm = math.sqrt(sum(float(g.double().pow(2).sum())
                             for g in grads if g is not None))
        rows.append(dict(task=task, weighted=float(losses[key].detach()),
                         unweighted=float(losses[f'{task}_unweighted']),
                         grad_norm=norm))
    total = sum(r['grad_norm'] for r in rows) or 1.0
    for r in rows:
        r['share'] = r['grad_norm'] / total
    return rows


def format_table(rows: list) -> str:
    """Markdown table of :func:`task_gradient_table`'s rows."""
    lines = ['| task | alpha*L (weighted) | L (unweighted) | '
             '|grad| last stage | share |', '|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['task']} | {r['weighted']:.4g} | "
                     f"{r['unweighted']:.4g} | {r['grad_norm']:.4g} | "
                     f"{100 * r['share']:.1f} % |")
    return '\n'.join(lines)
