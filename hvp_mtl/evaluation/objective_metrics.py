"""Each HVP-MTL objective on held-out images, beside its trivial baseline.

:func:`evaluate_objectives` runs the model in eval mode, without gradient, over

* ``views_loader``: held-out images through the *training* pipeline (two views, the SimMIM
  mask of view 0; its randomness seeded, so every evaluation sees the same views), for the
  four losses as the training step computes them (:meth:`HVPMTL._step`, the heads' own
  losses), and
* ``clean_loader`` (optional): the same images through a single-view resize pipeline, for
  the multi-label decoder's macro mAP (student, and the EMA teacher when there is one),

and compares each with the baseline of :mod:`.objective_baselines`. SwAV is evaluated without
its queue (the queue is training state of one process). All processes take part under DDP:
sums are all-reduced, the mAP scores gathered.
"""
import random
from typing import Dict, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, all_reduce
from mmengine.model import is_model_wrapper

from .class_chunked_ap import average_precision_per_class
from .objective_baselines import (
    code_statistics,
    gap_closed,
    label_prior_image_ap,
    label_prior_map,
    learned,
    mean_teacher_distillation_loss,
    uniform_prediction_loss,
    zero_prediction_mim_loss,
)

__all__ = ['evaluate_objectives', 'train_label_frequencies']


def train_label_frequencies(dataset, max_images: int = 20000, target_thr: float = 0.5):
    """Share of (up to ``max_images`` evenly spaced) training images where each class is
    positive, ``[C]`` float64 (``gt_score >= target_thr``)."""
    step = max(1, len(dataset) // max_images)
    indices = range(0, len(dataset), step)
    counts = None
    for i in indices:
        positive = np.asarray(dataset.get_data_info(i)['gt_score']) >= target_thr
        counts = positive.astype(np.float64) if counts is None else counts + positive
    return torch.from_numpy(counts / len(indices))


def _summed(values: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    for value in values.values():
        all_reduce(value, op='sum')
    return values


def _verdict(value, baseline, perfect, **extra):
    value, baseline = float(value), float(baseline)
    return dict(value=float(value), baseline=float(baseline), perfect=float(perfect),
                gap_closed=round(gap_closed(value, baseline, perfect), 4),
                learned=learned(value, baseline, perfect), **extra)


@torch.no_grad()
def _loss_sums(model, loader) -> Dict[str, torch.Tensor]:
    """Sums over held-out batches of each task's loss, its baseline and diagnostics."""
    sums = {}

    def add(name, value, weight):
        sums[name] = sums.get(name, torch.zeros((), dtype=torch.float64)) + float(value) * weight

    for batch in loader:
        data = model.data_preprocessor(batch, False)
        step = model._step(data['inputs'], data['data_samples'])
        n = step.batch
        add('images', 1.0, n)
        if model.mim_head is not None:
            head = model.mim_head
            target, mask = step.view0, step.mask
            pixel_mask = mask.repeat_interleave(target.shape[-2] // mask.shape[-2], 1)
            pixel_mask = pixel_mask.repeat_interleave(target.shape[-1] // mask.shape[-1], 2)
            add('mim', head.task_loss(step)[0], n)
            add('mim_zero', zero_prediction_mim_loss(head.loss_module, target, pixel_mask), n)
        if model.swav_head is not None:
            head = model.swav_head
            scores = head.prototype_scores(head(step.feats))
            add('swav', head.loss_module(scores[:n], scores[n:]), n)
            for codes in (head.loss_module.codes(scores[:n]), head.loss_module.codes(scores[n:])):
                stats = code_statistics(codes)
                add('code_entropy', stats['entropy_sum'], 1.0)
                add('code_rows', stats['rows'], 1.0)
                sums['code_marginal'] = sums.get('code_marginal', 0) + stats['marginal']
        if model.mlc_head is not None:
            add('mlc_loss', model.mlc_head.task_loss(step)[0], n)
        if model.distill_head is not None:
            head = model.distill_head
            student_sim, teacher_sim = head.similarities(step)
            add('distill', head.loss_module(student_sim, teacher_sim), n)
            add('distill_mean', mean_teacher_distillation_loss(head.loss_module, teacher_sim), n)
            agree = (student_sim.argmax(1) == teacher_sim.argmax(1)).double().sum()
            add('distill_top1_agreement', agree, 1.0)
    if not sums:
        raise ValueError('the held-out loader gave no batch')
    return _summed(sums)


@torch.no_grad()
def _multilabel_scores(model, loader, use_teacher: bool):
    scores, targets = [], []
    for batch in loader:
        data = model.data_preprocessor(batch, False)
        samples = model.predict(data['inputs'], data['data_samples'], use_teacher=use_teacher)
        scores += [s.pred_score.float().cpu() for s in samples]
        targets += [s.gt_score.float().cpu() >= 0.5 for s in samples]
    gathered = all_gather_object((scores, targets))
    scores = torch.stack([s for part in gathered for s in part[0]])
    targets = torch.stack([t for part in gathered for t in part[1]])
    return scores, targets


def _mean_ap(scores, targets) -> float:
    """Mean AP (%) over the columns with a positive."""
    ap = average_precision_per_class(scores, targets)
    return float(ap[~ap.isnan()].mean() * 100)


def evaluate_objectives(model, views_loader, clean_loader=None,
                        train_frequencies: Optional[torch.Tensor] = None,
                        seed: int = 0) -> Dict[str, dict]:
    """Every enabled objective of an ``HVPMTL`` model against its trivial baseline.

    Seeds Python's, numpy's and torch's global generators with ``seed`` (callers inside a
    training run restore them afterwards) and leaves the model in the mode it had.

    Args:
        model (nn.Module): ``HVPMTL`` (possibly wrapped); its teacher initialised.
        views_loader (DataLoader): Held-out images through the two-view training pipeline.
        clean_loader (DataLoader, optional): The same images, one resized view each.
        train_frequencies (torch.Tensor, optional): Training label frequencies ``[C]``, for
            the per-image label-prior AP.
        seed (int): Seed of the views' augmentation and masks.

    Returns:
        dict: ``{objective: {value, baseline, perfect, gap_closed, learned, ...}}`` for
        ``mlc`` (macro mAP %), ``swav``, ``mim``, ``distill`` (losses), each enabled one.
    """
    model = model.module if is_model_wrapper(model) else model
    was_training = model.training
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model.eval()
    try:
        sums = _loss_sums(model, views_loader)
        out = {}
        images = float(sums['images'])
        if model.mim_head is not None:
            out['mim'] = _verdict(sums['mim'] / images, sums['mim_zero'] / images, 0.0)
        if model.swav_head is not None:
            marginal = sums['code_marginal'] / sums['code_marginal'].sum()
            out['swav'] = _verdict(
                sums['swav'] / images, uniform_prediction_loss(marginal.numel()), 0.0,
                code_entropy=float(sums['code_entropy'] / sums['code_rows']),
                marginal_entropy=float(-(marginal * marginal.clamp_min(1e-30).log()).sum()),
                prototypes_in_use=int((marginal * marginal.numel() >= 0.1).sum()))
        if model.distill_head is not None:
            out['distill'] = _verdict(
                sums['distill'] / images, sums['distill_mean'] / images, 0.0,
                top1_agreement=float(sums['distill_top1_agreement'] / images * 100))
        if model.mlc_head is not None:
            if clean_loader is None:
                raise ValueError('the multi-label objective needs clean_loader (its mAP)')
            entry = dict(loss=float(sums['mlc_loss'] / images))
            scores, targets = _multilabel_scores(model, clean_loader, use_teacher=False)
            entry['image_ap'] = _mean_ap(scores.t(), targets.t())
            if train_frequencies is not None:
                entry['prior_image_ap'] = label_prior_image_ap(targets, train_frequencies)
            if model.distill_head is not None:
                entry['teacher_map'] = _mean_ap(
                    _multilabel_scores(model, clean_loader, use_teacher=True)[0], targets)
            out['mlc'] = _verdict(_mean_ap(scores, targets), label_prior_map(targets), 100.0,
                                  **entry)
        return out
    finally:
        model.train(was_training)
