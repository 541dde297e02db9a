"""The trivial baseline of every pre-training objective, and the learned / not learned rule.

A pre-training objective has been *learned* only where the model beats what a predictor that
looks at no image achieves. Each objective's trivial predictor:

=============  ===============================  ===============================================
objective      measured                         trivial baseline
=============  ===============================  ===============================================
``mlc``        macro mAP on held-out images     the label prior: every image gets the same
               (eq. 1's decoder, %)             score vector (the training class frequencies);
                                                its expected AP over the tied images' order
``swav``       swapped prediction, eq. (2)-(3)  a uniform prediction over the K prototypes:
                                                cross-entropy ``ln K`` for any codes
``mim``        masked L1, eq. (4)               predicting 0 in the normalised target space
                                                (the per-channel dataset mean)
``distill``    symmetric KL to the teacher,     predicting the teacher's *mean* distribution
               eq. (6)                          for every image (no image-specific tracking)
=============  ===============================  ===============================================

:func:`learned` applies one rule to all four: the measured value must close at least
``margin`` (default 10 %) of the gap between the baseline and a perfect score (100 % mAP, a
loss of 0).
"""
import math
from typing import Dict

import torch

from .class_chunked_ap import average_precision_per_class

__all__ = ['expected_random_ranking_ap', 'label_prior_map', 'label_prior_image_ap',
           'uniform_prediction_loss', 'zero_prediction_mim_loss', 'mean_teacher_distillation_loss',
           'code_statistics',
           'gap_closed', 'learned', 'LEARNED_MARGIN']

#: the share of the baseline-to-perfect gap an objective must close to count as learned
LEARNED_MARGIN = 0.10


def expected_random_ranking_ap(num_positives: torch.Tensor, num_images: int) -> torch.Tensor:
    """Expected AP of a class whose ``N`` images are ranked in uniformly random order.

    The positive at rank ``r`` (uniform on ``1..N``) has on average ``(r-1)(P-1)/(N-1)`` other
    positives above it, so its expected precision is ``(1 + (r-1)(P-1)/(N-1)) / r`` and

    ``E[AP] = (H_N + (P-1)/(N-1) * (N - H_N)) / N``,  ``H_N = sum_{r<=N} 1/r``.

    It tends to the prevalence ``P/N`` for large ``N`` and is larger for small ``N`` (one
    positive of two: 0.75).

    Args:
        num_positives (torch.Tensor): ``P`` per class, ``>= 1``.
        num_images (int): ``N``.

    Returns:
        torch.Tensor: float64, one expected AP in ``[0, 1]`` per class.
    """
    p = num_positives.double()
    n = float(num_images)
    harmonic = float(torch.arange(1, num_images + 1, dtype=torch.float64).reciprocal().sum())
    slope = (p - 1) / (n - 1) if num_images > 1 else torch.zeros_like(p)
    return (harmonic + slope * (n - harmonic)) / n


def label_prior_map(targets: torch.Tensor) -> float:
    """Macro mAP (%) of the label prior: one score vector for every image.

    Every image scored with the training class frequencies gives the images of one class the
    same score, whatever the frequencies: the prior carries no information about which image
    holds the class, and any order of those tied images is as likely as any other. Its mAP is
    the expectation over that order, :func:`expected_random_ranking_ap` per class, averaged
    over the classes with a positive (as :class:`SoftTargetAveragePrecision` averages). That
    is also what a model whose scores ignore the image achieves on average, so it is the bar
    for a decoder that learned something. (A fixed tie order would make the bar depend on
    the file order; scikit-learn's one-threshold convention gives the prevalence, which is
    lower than the expectation on small validation sets and so too easy to clear.)

    Args:
        targets (torch.Tensor): Positives, bool or 0/1 ``[N, C]``.

    Returns:
        float: mAP in percent over the classes with at least one positive.
    """
    positives = targets.bool().sum(dim=0)
    present = positives > 0
    if not present.any():
        raise ValueError('no class has a positive: the label-prior mAP is undefined')
    return float(expected_random_ranking_ap(positives[present], targets.shape[0]).mean() * 100)


def label_prior_image_ap(targets: torch.Tensor, train_frequencies: torch.Tensor) -> float:
    """Sample-wise mAP (%) of the label prior: each image's classes ranked by training frequency.

    The per-image counterpart of :func:`label_prior_map`, where the frequencies do matter: a
    frequent class (a root of the hierarchy) is ranked first in every image.

    Args:
        targets (torch.Tensor): Positives ``[N, C]``.
        train_frequencies (torch.Tensor): Share of training images where each class is
            positive ``[C]``.

    Returns:
        float: Mean over images with a positive of the AP of their class ranking, percent.
    """
    scores = train_frequencies.float().expand(targets.shape[0], -1)
    ap = average_precision_per_class(scores.t(), targets.t())
    return float(ap[~ap.isnan()].mean() * 100)


def uniform_prediction_loss(num_prototypes: int) -> float:
    """Eq. (3) of a uniform prediction: ``-sum_k q_k log(1/K) = ln K`` for codes summing to 1."""
    return math.log(num_prototypes)


def zero_prediction_mim_loss(loss_module, target: torch.Tensor,
                             pixel_mask: torch.Tensor) -> torch.Tensor:
    """Eq. (4) of a decoder that predicts 0 (the dataset mean) for every masked pixel.

    Args:
        loss_module (nn.Module): The reconstruction loss (``MaskedReconstructionLoss``).
        target (torch.Tensor): Normalised images ``[B, 3, H, W]``.
        pixel_mask (torch.Tensor): 1 = masked, ``[B, H, W]``.

    Returns:
        torch.Tensor: Scalar, the mean ``|x|`` over masked pixels and channels.
    """
    return loss_module(torch.zeros_like(target), target, pixel_mask)


def mean_teacher_distillation_loss(loss_module, teacher_sim: torch.Tensor) -> torch.Tensor:
    """Eq. (6) of a student that predicts the teacher's batch-mean similarities for every image.

    Args:
        loss_module (nn.Module): ``SymmetricKLDistillationLoss``.
        teacher_sim (torch.Tensor): Teacher similarities ``[B, C]``.

    Returns:
        torch.Tensor: Scalar loss of the image-blind student.
    """
    mean = teacher_sim.mean(dim=0, keepdim=True).expand_as(teacher_sim)
    return loss_module(mean, teacher_sim)


def code_statistics(codes: torch.Tensor) -> Dict[str, float]:
    """Sums over rows of SwAV codes ``[B, K]`` (each row sums to 1), for averaging later.

    Returns:
        dict: ``entropy_sum`` (sum over rows of each code's entropy, nats), ``rows``, and
        ``marginal`` (the codes summed over rows ``[K]``, for the entropy of their mean and the
        prototypes in use).
    """
    codes = codes.double()
    entropy = -(codes * codes.clamp_min(1e-30).log()).sum(dim=1)
    return dict(entropy_sum=float(entropy.sum()), rows=int(codes.shape[0]),
                marginal=codes.sum(dim=0))


def gap_closed(value: float, baseline: float, perfect: float) -> float:
    """Share of the way from ``baseline`` to ``perfect`` that ``value`` has gone (may be < 0)."""
    span = perfect - baseline
    if span == 0:
        return 0.0
    return (value - baseline) / span


def learned(value: float, baseline: float, perfect: float,
            margin: float = LEARNED_MARGIN) -> bool:
    """True when ``value`` closes at least ``margin`` of the baseline-to-perfect gap."""
    return gap_closed(value, baseline, perfect) >= margin
