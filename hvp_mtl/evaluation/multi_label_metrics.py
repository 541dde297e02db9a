"""Multi-label metrics for soft-labelled validation lists (Tencent ML-Images).

mmpretrain's :class:`~mmpretrain.evaluation.AveragePrecision` and
:class:`~mmpretrain.evaluation.MultiLabelMetric` read ``gt_score`` as given:
``AveragePrecision`` counts a class as positive only where the target is
exactly ``1`` and ``MultiLabelMetric`` casts targets with ``.long()``. With
ML-Images' soft confidences (``1`` or ``0.8``-``0.9``, labels expanded to
ancestors and co-occurring classes) every ``0.8``/``0.9`` label would silently
become a *negative*. The two metrics here binarise the soft targets first
(``gt_score >= target_thr`` is a positive, default ``0.5``) and then compute
the usual numbers with the upstream formulas.

Class averaging: with 11,166 classes most classes have no positive image in a
validation subset. Their AP is undefined, so ``mAP`` averages over the
classes with at least one positive in the evaluated images (the convention of
VOC/COCO/OpenImages multi-label papers); the per-class metrics ``CP``/``CR``
are averaged over the same classes, while ``OP``/``OR`` count every class.
"""
from typing import List, Optional, Sequence

import torch
from mmengine.logging import print_log
from mmpretrain.evaluation import AveragePrecision, MultiLabelMetric
from mmpretrain.registry import METRICS
from mmpretrain.structures import label_to_onehot

__all__ = [
    'binarize_soft_targets', 'average_precision_per_class',
    'SoftTargetAveragePrecision', 'SoftTargetMultiLabelMetric'
]


def binarize_soft_targets(data_sample: dict, num_classes: int,
                          target_thr: float) -> torch.Tensor:
    """Turn a sample's ``gt_score`` (or ``gt_label``) into a bool vector [C].

    Args:
        data_sample (dict): A packed sample as the evaluator passes it.
        num_classes (int): C, the length of ``pred_score``.
        target_thr (float): Soft targets ``>= target_thr`` are positives.

    Returns:
        torch.Tensor: bool [C].
    """
    if 'gt_score' in data_sample:
        return data_sample['gt_score'] >= target_thr
    return label_to_onehot(data_sample['gt_label'], num_classes).bool()


def average_precision_per_class(pred: torch.Tensor,
                                target: torch.Tensor,
                                chunk_size: int = 512) -> torch.Tensor:
    """Average precision of every class, vectorised over class chunks.

    Same definition as mmpretrain's ``_average_precision`` (mean of the
    precision at the rank of each positive), computed with a stable sort so
    that tied scores are ranked in image order whatever the chunking.

    Args:
        pred (torch.Tensor): Scores, float [N, C].
        target (torch.Tensor): Positives, bool or 0/1 [N, C].
        chunk_size (int): Classes sorted at once; bounds memory to
            ``N * chunk_size`` int64 values.

    Returns:
        torch.Tensor: float64 [C] AP in [0, 1]; NaN for a class without any
        positive.
    """
    num_samples, num_classes = pred.shape
    target = target.bool()
    ranks = torch.arange(1, num_samples + 1, dtype=torch.float64)
    ap = torch.empty(num_classes, dtype=torch.float64)
    for start in range(0, num_classes, chunk_size):
        stop = min(start + chunk_size, num_classes)
        # one contiguous row per class: sorting along rows is cache-friendly
        scores = pred[:, start:stop].t().float().contiguous()
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
        hits = torch.gather(target[:, start:stop].t(), 1, order)
        num_pos = hits.sum(1)
        cum_hits = hits.cumsum(1, dtype=torch.float64)
        precision_sum = (cum_hits / ranks).mul_(hits).sum(1)
        ap[start:stop] = precision_sum / num_pos  # NaN if no positive
    return ap


class _SoftTargetResultsMixin:
    """``process``: keep ``pred_score`` (float [C]) and the target binarised
    at ``self.target_thr`` (bool [C]) of every sample."""

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample['pred_score'].detach().float().cpu()
            self.results.append(
                dict(pred_score=pred,
                     gt_positive=binarize_soft_targets(
                         sample, pred.numel(), self.target_thr).cpu()))


@METRICS.register_module()
class SoftTargetAveragePrecision(_SoftTargetResultsMixin, AveragePrecision):
    """mAP over classes with a positive, for soft (``gt_score``) targets.

    Args:
        target_thr (float): Soft targets ``>= target_thr`` count as positive.
            Defaults to 0.5 (every annotated ML-Images label is positive).
        average (str | None): ``'macro'`` reports ``mAP``; ``None`` reports
            ``AP_classwise`` (NaN where a class has no positive).
        collect_device (str): ``'cpu'`` (through a temporary directory in the
            working directory, which must be shared by all nodes) or
            ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Defaults to ``'multi-label'``.
    """

    def __init__(self,
                 target_thr: float = 0.5,
                 average: Optional[str] = 'macro',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(average=average, collect_device=collect_device,
                         prefix=prefix)
        self.target_thr = target_thr

    def compute_metrics(self, results: List[dict]) -> dict:
        """Return ``{'mAP': float}`` (percent) or ``{'AP_classwise': list}``."""
        pred = torch.stack([r['pred_score'] for r in results])
        target = torch.stack([r['gt_positive'] for r in results])
        ap = average_precision_per_class(pred, target) * 100.0
        if self.average is None:
            return dict(AP_classwise=ap.tolist())
        valid = ~torch.isnan(ap)
        print_log(
            f'mAP over {int(valid.sum())} of {ap.numel()} classes that have '
            f'a positive among {len(results)} images', logger='current')
        mean = ap[valid].mean().item() if valid.any() else 0.0
        return dict(mAP=mean)


@METRICS.register_module()
class SoftTargetMultiLabelMetric(_SoftTargetResultsMixin, MultiLabelMetric):
    """CP/CR/CF1 and OP/OR/OF1 at a score threshold, for soft targets.

    Definitions (as in ML-GCN/ASL/Query2Label): ``CP``/``CR`` are the
    per-class precision/recall averaged over the classes with a positive,
    ``CF1 = 2 CP CR / (CP + CR)``; ``OP``/``OR`` pool every decision of every
    class, ``OF1 = 2 OP OR / (OP + OR)``. All in percent. Per-class counts come
    from mmpretrain's ``MultiLabelMetric.calculate``.

    Args:
        thr (float, optional): A score ``>= thr`` is a predicted positive.
        topk (int, optional): Used instead when ``thr`` is None.
        target_thr (float): Soft targets ``>= target_thr`` count as positive.
        collect_device (str): See :class:`SoftTargetAveragePrecision`.
        prefix (str, optional): Defaults to ``'multi-label'``.
    """

    def __init__(self,
                 thr: Optional[float] = None,
                 topk: Optional[int] = None,
                 target_thr: float = 0.5,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(thr=thr, topk=topk, average=None,
                         collect_device=collect_device, prefix=prefix)
        self.target_thr = target_thr

    def compute_metrics(self, results: List[dict]) -> dict:
        """Return ``CP, CR, CF1, OP, OR, OF1`` with a threshold suffix."""
        pred = torch.stack([r['pred_score'] for r in results])
        target = torch.stack([r['gt_positive'] for r in results]).long()
        precision, recall, _, support = self.calculate(
            pred, target, average=None, thr=self.thr, topk=self.topk)
        has_pos = support > 0
        cp = precision[has_pos].mean().item() if has_pos.any() else 0.0
        cr = recall[has_pos].mean().item() if has_pos.any() else 0.0
        op, orec, _, _ = self.calculate(
            pred, target, average='micro', thr=self.thr, topk=self.topk)
        op, orec = op.item(), orec.item()

        def f1(p: float, r: float) -> float:
            return 2 * p * r / (p + r) if p + r > 0 else 0.0

        suffix = (f'_thr-{self.thr:.2f}' if self.thr is not None and
                  self.thr != 0.5 else '' if self.thr is not None else
                  f'_top{self.topk}')
        values = dict(CP=cp, CR=cr, CF1=f1(cp, cr), OP=op, OR=orec,
                      OF1=f1(op, orec))
        return {k + suffix: v for k, v in values.items()}
