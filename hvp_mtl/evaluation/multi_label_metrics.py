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

Memory (88,739 val images x 11,166 classes at the end of a run): neither
metric keeps a dense per-image score *and* target list that is pickled to
rank 0. ``SoftTargetAveragePrecision`` keeps each rank's own scores and the
positives as class ids, and computes AP in class chunks spread over the
ranks (:mod:`.class_chunked_ap`); ``SoftTargetMultiLabelMetric`` only needs
the thresholded decisions, kept as packed bits (C/8 bytes per image and
target). Both give the dense computation's numbers exactly.

Class averaging: with 11,166 classes most classes have no positive image in a
validation subset. Their AP is undefined, so ``mAP`` averages over the
classes with at least one positive in the evaluated images (the convention of
VOC/COCO/OpenImages multi-label papers); the per-class metrics ``CP``/``CR``
are averaged over the same classes, while ``OP``/``OR`` count every class.
"""
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.dist import all_gather_object
from mmengine.logging import print_log
from mmpretrain.evaluation import AveragePrecision, MultiLabelMetric
from mmpretrain.registry import METRICS
from mmpretrain.structures import label_to_onehot

from .class_chunked_ap import class_chunked_average_precision

__all__ = [
    'binarize_soft_targets', 'SoftTargetAveragePrecision',
    'SoftTargetMultiLabelMetric'
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


@METRICS.register_module()
class SoftTargetAveragePrecision(AveragePrecision):
    """mAP over classes with a positive, for soft (``gt_score``) targets.

    Each rank keeps the scores it produced (one ``[B, C]`` tensor per batch,
    fp32, or fp16/bf16 unchanged) and the positive class ids of each image;
    :meth:`evaluate` computes AP in class chunks over the ranks (see
    :mod:`.class_chunked_ap`). Memory per rank: ``N / W * C`` scores plus
    one ``[N, class_chunk]`` slice, instead of all ``N * C`` scores and
    targets pickled to and stacked on rank 0.

    Args:
        target_thr (float): Soft targets ``>= target_thr`` count as positive.
            Defaults to 0.5 (every annotated ML-Images label is positive).
        average (str | None): ``'macro'`` reports ``mAP``; ``None`` reports
            ``AP_classwise`` (NaN where a class has no positive).
        collect_device (str): Kept for config compatibility; the slices
            travel over the default process group.
        prefix (str, optional): Defaults to ``'multi-label'``.
        class_chunk (int): Classes per exchanged slice. Defaults to 128.
    """

    def __init__(self,
                 target_thr: float = 0.5,
                 average: Optional[str] = 'macro',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 class_chunk: int = 128) -> None:
        super().__init__(average=average, collect_device=collect_device,
                         prefix=prefix)
        self.target_thr = target_thr
        self.class_chunk = class_chunk
        self._score_batches: List[torch.Tensor] = []
        self._positives: List[np.ndarray] = []

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep the batch's scores ``[B, C]`` and each image's positives."""
        if not data_samples:
            return
        scores = torch.stack([s['pred_score'].detach() for s in data_samples])
        if scores.dtype not in (torch.float16, torch.bfloat16):
            scores = scores.float()
        self._score_batches.append(scores.cpu())
        num_classes = scores.shape[1]
        for sample in data_samples:
            positive = binarize_soft_targets(sample, num_classes,
                                             self.target_thr)
            self._positives.append(
                torch.nonzero(positive.cpu()).flatten().numpy().astype(
                    np.int32))

    def evaluate(self, size: int) -> dict:
        """``{'multi-label/mAP': float}`` on every rank; a collective."""
        num_classes = (self._score_batches[0].shape[1]
                       if self._score_batches else 0)
        num_classes = max(all_gather_object(num_classes))
        ap = class_chunked_average_precision(self._score_batches,
                                             self._positives, num_classes,
                                             size, self.class_chunk)
        self._score_batches, self._positives = [], []
        metrics = self._summarise(ap * 100.0, size)
        if self.prefix:
            metrics = {f'{self.prefix}/{k}': v for k, v in metrics.items()}
        return metrics

    def _summarise(self, ap: torch.Tensor, size: int) -> dict:
        if self.average is None:
            return dict(AP_classwise=ap.tolist())
        valid = ~torch.isnan(ap)
        print_log(
            f'mAP over {int(valid.sum())} of {ap.numel()} classes that have '
            f'a positive among {size} images', logger='current')
        mean = ap[valid].mean().item() if valid.any() else 0.0
        return dict(mAP=mean)


@METRICS.register_module()
class SoftTargetMultiLabelMetric(MultiLabelMetric):
    """CP/CR/CF1 and OP/OR/OF1 at a score threshold, for soft targets.

    Definitions (as in ML-GCN/ASL/Query2Label): ``CP``/``CR`` are the
    per-class precision/recall averaged over the classes with a positive,
    ``CF1 = 2 CP CR / (CP + CR)``; ``OP``/``OR`` pool every decision of every
    class, ``OF1 = 2 OP OR / (OP + OR)``. All in percent, with the formulas
    of mmpretrain's ``MultiLabelMetric.calculate``. Each image keeps its
    decisions and its targets as packed bits (``ceil(C / 8)`` bytes each).

    Args:
        thr (float, optional): A score ``>= thr`` is a predicted positive.
        topk (int, optional): Used instead when ``thr`` is None.
        target_thr (float): Soft targets ``>= target_thr`` count as positive.
        collect_device (str): See mmengine's ``BaseMetric``.
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

    def _decide(self, scores: torch.Tensor) -> torch.Tensor:
        """Predicted positives [B, C], as ``MultiLabelMetric.calculate``."""
        if self.thr is not None:
            return scores >= self.thr
        decided = torch.zeros_like(scores, dtype=torch.bool)
        return decided.scatter_(1, scores.topk(self.topk).indices, True)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep each image's decisions and positives as packed bits."""
        if not data_samples:
            return
        scores = torch.stack([s['pred_score'].detach().float().cpu()
                              for s in data_samples])
        decided = self._decide(scores).numpy()
        for sample, row in zip(data_samples, decided):
            target = binarize_soft_targets(sample, scores.shape[1],
                                           self.target_thr).cpu().numpy()
            self.results.append(dict(pred_bits=np.packbits(row),
                                     gt_bits=np.packbits(target),
                                     num_classes=scores.shape[1]))

    @staticmethod
    def _count(results: List[dict], images_per_step: int = 4096):
        """Per-class true positives, predicted and actual positives [C]."""
        num_classes = results[0]['num_classes']
        tp = torch.zeros(num_classes, dtype=torch.int64)
        pred_sum, gt_sum = torch.zeros_like(tp), torch.zeros_like(tp)
        for start in range(0, len(results), images_per_step):
            part = results[start:start + images_per_step]

            def unpack(key):
                bits = np.stack([r[key] for r in part])
                return torch.from_numpy(
                    np.unpackbits(bits, axis=1, count=num_classes)).bool()

            decided, positive = unpack('pred_bits'), unpack('gt_bits')
            tp += (decided & positive).sum(0)
            pred_sum += decided.sum(0)
            gt_sum += positive.sum(0)
        return tp, pred_sum, gt_sum

    def compute_metrics(self, results: List[dict]) -> dict:
        """Return ``CP, CR, CF1, OP, OR, OF1`` with a threshold suffix."""
        tp, pred_sum, gt_sum = self._count(results)
        # mmpretrain's _precision_recall_f1_support, from the counts
        precision = tp / torch.clamp(pred_sum, min=1).float() * 100
        recall = tp / torch.clamp(gt_sum, min=1).float() * 100
        has_pos = gt_sum > 0
        cp = precision[has_pos].mean().item() if has_pos.any() else 0.0
        cr = recall[has_pos].mean().item() if has_pos.any() else 0.0
        op = (tp.sum() / torch.clamp(pred_sum.sum(), min=1).float() *
              100).item()
        orec = (tp.sum() / torch.clamp(gt_sum.sum(), min=1).float() *
                100).item()

        def f1(p: float, r: float) -> float:
            return 2 * p * r / (p + r) if p + r > 0 else 0.0

        suffix = (f'_thr-{self.thr:.2f}' if self.thr is not None and
                  self.thr != 0.5 else '' if self.thr is not None else
                  f'_top{self.topk}')
        values = dict(CP=cp, CR=cr, CF1=f1(cp, cr), OP=op, OR=orec,
                      OF1=f1(op, orec))
        return {k + suffix: v for k, v in values.items()}
