"""The fine-tune rules of the evidence protocol (docs/RESULTS.md): held-out splits, the schedule
rule, the lr rule, low-label subsets and the LP-FT arm's options.

Everything here decides from the *train* split alone: :func:`stratified_split` holds out a
seeded, stratified 20 % of ``meta/train.txt``; schedules and learning rates are chosen on it
(:func:`choose_schedule`, :func:`choose_lr`); only the chosen run is then trained on the whole
train split (or its low-label subset, :func:`per_class_subset`) and evaluated once on val.
:func:`protocol_options` gives the ``--cfg-options`` of one such fine-tune of
``configs/demo/swin-demo_cls.py``.
"""
import os
import os.path as osp
import random
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

from hvp_mtl.utils.atomic_io import atomic_write

__all__ = ['SCHEDULES', 'LR_GRID', 'LOW_LABEL_PER_CLASS', 'MIN_GAIN', 'read_ann',
           'stratified_split', 'per_class_subset', 'write_ann', 'choose_schedule', 'choose_lr',
           'protocol_options']

#: candidate fine-tune lengths (epochs) and learning rates, and the low-label sizes
SCHEDULES = (16, 32, 64)
LR_GRID = (3e-4, 1e-3, 3e-3)
LOW_LABEL_PER_CLASS = (10, 50)
#: a schedule has plateaued when the next longer one gains less than this (top-1 points)
MIN_GAIN = 1.0


def read_ann(path) -> List[Tuple[str, int]]:
    """``(relative path, label)`` of each line of an mmpretrain ``CustomDataset`` list file.

    Raises:
        ValueError: A line without exactly a path and an integer label (file and line named).
    """
    rows = []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
                raise ValueError(f'{path}:{number}: expected "<relative path> <label>", got '
                                 f'{line.strip()!r}')
            rows.append((parts[0], int(parts[1])))
    return rows


def _by_class(rows):
    groups = defaultdict(list)
    for row in rows:
        groups[row[1]].append(row)
    return {label: groups[label] for label in sorted(groups)}


def stratified_split(rows: Sequence[Tuple[str, int]], fraction: float = 0.2,
                     seed: int = 0) -> Tuple[list, list]:
    """``(fit, held)``: ``round(fraction * n_c)`` images of every class held out, seeded.

    Both keep the input order; a class with one image stays in ``fit``.
    """
    rng = random.Random(seed)
    held = set()
    for members in _by_class(rows).values():
        if len(members) > 1:
            held.update(rng.sample([r[0] for r in members], int(round(fraction * len(members)))))
    return [r for r in rows if r[0] not in held], [r for r in rows if r[0] in held]


def per_class_subset(rows: Sequence[Tuple[str, int]], per_class: int, seed: int = 0) -> list:
    """``per_class`` images of every class (all of a smaller class), seeded, input order kept."""
    rng = random.Random(seed)
    keep = set()
    for members in _by_class(rows).values():
        keep.update(rng.sample([r[0] for r in members], min(per_class, len(members))))
    return [r for r in rows if r[0] in keep]


def write_ann(rows, path) -> str:
    """Write ``rows`` as a list file (atomically); returns ``path``."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with atomic_write(path, encoding='utf-8') as f:
        f.writelines(f'{name} {label}\n' for name, label in rows)
    return path


def choose_schedule(heldout: Dict[int, float], min_gain: float = MIN_GAIN) -> Tuple[int, str]:
    """The shortest schedule whose next longer one gains less than ``min_gain`` on held-out.

    Args:
        heldout (dict): ``{epochs: held-out top-1}`` of the random-init arm.
        min_gain (float): Top-1 points. Defaults to :data:`MIN_GAIN`.

    Returns:
        tuple[int, str]: The epochs and why (the longest, said so, when none plateaus).
    """
    epochs = sorted(heldout)
    for short, long in zip(epochs, epochs[1:]):
        if heldout[long] - heldout[short] < min_gain:
            return short, (f'{long} epochs gain {heldout[long] - heldout[short]:.2f} < '
                           f'{min_gain:g} points over {short}')
    return epochs[-1], f'no schedule up to {epochs[-1]} epochs plateaus: the longest'


def choose_lr(heldout: Dict[float, float]) -> float:
    """The lr with the best held-out top-1; on a tie the smallest (the least disruptive)."""
    best = max(heldout.values())
    return min(lr for lr, value in heldout.items() if value == best)


def protocol_options(train_ann, epochs, lr, eval_ann=None, eval_prefix='val',
                     linear_probe=False, load_from=None) -> List[str]:
    """``--cfg-options`` of one protocol fine-tune of the demo classification config.

    Args:
        train_ann (str): The list file to train on (absolute; images under ``train/``).
        epochs (int): Schedule length (warm-up 1 epoch, cosine after it, as the config).
        lr (float): The AdamW learning rate.
        eval_ann (str, optional): Evaluate on this list file (e.g. the held-out part of train)
            instead of ``meta/val.txt``.
        eval_prefix (str): Image folder of ``eval_ann`` (``train`` for a held-out part).
        linear_probe (bool): LP-FT's first stage: every backbone stage frozen (eval mode, no
            gradient: ``frozen_stages=3``), only the head trains.
        load_from (str, optional): LP-FT's second stage: start from the first stage's checkpoint
            (backbone and head), the config's own backbone init off.

    Raises:
        ValueError: Fewer than 2 epochs (the config warms up for one, then runs its cosine).
    """
    if epochs < 2:
        raise ValueError(f'a protocol fine-tune needs at least 2 epochs, got {epochs}')
    opts = [f'train_dataloader.dataset.ann_file={train_ann}', f'train_cfg.max_epochs={epochs}',
            f'train_cfg.val_interval={epochs}', f'default_hooks.checkpoint.interval={epochs}',
            f'param_scheduler.1.T_max={max(1, epochs - 1)}', f'param_scheduler.1.end={epochs}',
            f'optim_wrapper.optimizer.lr={lr}']
    if eval_ann:
        opts += [f'{split}_dataloader.dataset.{key}={value}' for split in ('val', 'test')
                 for key, value in (('ann_file', eval_ann), ('data_prefix', eval_prefix))]
    if linear_probe:
        opts.append('model.backbone.frozen_stages=3')
    if load_from:
        opts += [f'load_from={load_from}', 'model.backbone.init_cfg=None', 'custom_hooks=[]']
    return opts
