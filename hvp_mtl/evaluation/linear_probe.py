"""Linear probe: multinomial logistic regression on frozen backbone features.

The measure self-supervised work reports beside fine-tuning and the kNN probe
(:mod:`.knn_probe`): the backbone stays frozen, only a linear classifier is
trained on its pooled features, so the number says how linearly separable the
pre-trained representation is, independent of how well a short fine-tune
recovers from its initialisation.

:func:`linear_probe_sweep` is the protocol the probe rows report (DINOv2's logistic-regression
evaluation): the L2 strength is chosen from a grid on a held-out part of the *train* split (a
stratified, seeded split), the probe is then refitted on the whole train split with that strength
and evaluated once on val, with and without standardisation. Val never enters the choice.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F

__all__ = ['fit_linear_probe', 'predict_linear_probe', 'linear_probe_accuracy',
           'WEIGHT_DECAY_GRID', 'stratified_holdout', 'select_weight_decay', 'linear_probe_sweep']

#: the L2 strengths of the sweep (DINOv2 sweeps 45 values of C over 1e-6..1e5; 8 here, CPU)
WEIGHT_DECAY_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def _standardise(train: torch.Tensor, val: torch.Tensor):
    """Centre and scale both sets by the train set's per-dimension statistics."""
    train, val = train.double(), val.double()
    mean = train.mean(0, keepdim=True)
    std = train.std(0, unbiased=False, keepdim=True).clamp_min(1e-6)
    return (train - mean) / std, (val - mean) / std


def fit_linear_probe(features: torch.Tensor,
                     labels: torch.Tensor,
                     num_classes: int,
                     weight_decay: float = 1e-4,
                     max_iter: int = 500) -> torch.Tensor:
    """Minimise ``mean CE(x W^T + b, y) + weight_decay / 2 * ||W||^2`` by full-batch LBFGS.

    The problem is convex, so the optimum does not depend on a seed; the start
    is zero.

    Args:
        features (Tensor): Training features, ``[N, D]``.
        labels (Tensor): Class indices, ``[N]`` (int64).
        num_classes (int): ``C``.
        weight_decay (float): L2 penalty on ``W`` (not on ``b``). Defaults to 1e-4.
        max_iter (int): LBFGS iterations. Defaults to 500.

    Returns:
        Tensor: ``[C, D + 1]``, the weights with the bias as last column.
    """
    x = features.double()
    y = labels.long()
    weight = torch.zeros(num_classes, x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20,
                                  line_search_fn='strong_wolfe')

    def closure():
        optimizer.zero_grad()
        logits = x @ weight[:, :-1].T + weight[:, -1]
        loss = F.cross_entropy(logits, y) + weight_decay / 2 * weight[:, :-1].pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach()


@torch.no_grad()
def predict_linear_probe(weight: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Class indices ``argmax(x W^T + b)``, ``[N]``; ``weight`` from :func:`fit_linear_probe`."""
    return (features.double() @ weight[:, :-1].T + weight[:, -1]).argmax(1)


def linear_probe_accuracy(train_features: torch.Tensor,
                          train_labels: torch.Tensor,
                          val_features: torch.Tensor,
                          val_labels: torch.Tensor,
                          num_classes: int,
                          weight_decay: float = 1e-4,
                          max_iter: int = 500) -> Dict[str, float]:
    """Fit on the train features, report top-1 (percent) on train and val.

    Features are standardised with the train set's statistics first.

    Args:
        train_features (Tensor): ``[N, D]``.
        train_labels (Tensor): ``[N]``.
        val_features (Tensor): ``[M, D]``.
        val_labels (Tensor): ``[M]``.
        num_classes (int): ``C``.
        weight_decay (float): See :func:`fit_linear_probe`.
        max_iter (int): See :func:`fit_linear_probe`.

    Returns:
        dict[str, float]: ``top1`` (val), ``train_top1`` and ``chance`` (100 / C).
    """
    train, val = _standardise(train_features.double(), val_features.double())
    weight = fit_linear_probe(train, train_labels, num_classes, weight_decay, max_iter)
    train_pred = predict_linear_probe(weight, train)
    val_pred = predict_linear_probe(weight, val)
    return dict(top1=100.0 * (val_pred == val_labels.long()).double().mean().item(),
                train_top1=100.0 * (train_pred == train_labels.long()).double().mean().item(),
                chance=100.0 / num_classes)


def _top1(weight, features, labels) -> float:
    return 100.0 * (predict_linear_probe(weight, features) == labels.long()).double().mean().item()


def stratified_holdout(labels: torch.Tensor, fraction: float = 0.2, seed: int = 0):
    """Split indices of ``labels`` into (fit, held-out), ``fraction`` of every class held out.

    Seeded (``torch.Generator``), so the split is the same for every arm probed with one seed;
    a class with one image stays in the fit part.

    Returns:
        tuple[Tensor, Tensor]: Sorted int64 indices ``fit`` and ``held``.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = labels.long()
    held = []
    for c in labels.unique(sorted=True).tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        held.append(idx[:int(round(fraction * len(idx))) if len(idx) > 1 else 0])
    held = torch.cat(held).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held] = False
    return mask.nonzero().flatten(), held


def select_weight_decay(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                        grid: Sequence[float] = WEIGHT_DECAY_GRID, standardise: bool = True,
                        holdout_fraction: float = 0.2, seed: int = 0, max_iter: int = 500):
    """Choose the L2 strength on a held-out part of the train split (the only data it sees).

    Args:
        features (Tensor): Train features ``[N, D]``.
        labels (Tensor): ``[N]``.
        num_classes (int): ``C``.
        grid (Sequence[float]): Candidate ``weight_decay`` values.
        standardise (bool): Standardise by the fit part's statistics first.
        holdout_fraction (float): Share of each class held out. Defaults to 0.2.
        seed (int): Seed of the split.
        max_iter (int): LBFGS iterations per fit.

    Returns:
        tuple[float, dict]: The chosen value (the largest of the best, on ties: the most
        regularised) and ``{weight_decay: held-out top-1}``.
    """
    fit_idx, held_idx = stratified_holdout(labels, holdout_fraction, seed)
    fit_x, held_x = features[fit_idx].double(), features[held_idx].double()
    if standardise:
        fit_x, held_x = _standardise(fit_x, held_x)
    scores = {}
    for wd in grid:
        weight = fit_linear_probe(fit_x, labels[fit_idx], num_classes, wd, max_iter)
        scores[float(wd)] = _top1(weight, held_x, labels[held_idx])
    best = max(scores.values())
    return max(wd for wd, v in scores.items() if v == best), scores


def linear_probe_sweep(train_features: torch.Tensor, train_labels: torch.Tensor,
                       val_features: torch.Tensor, val_labels: torch.Tensor, num_classes: int,
                       grid: Sequence[float] = WEIGHT_DECAY_GRID, standardise: bool = True,
                       holdout_fraction: float = 0.2, seed: int = 0,
                       max_iter: Optional[int] = 500) -> Dict[str, object]:
    """The probe row: L2 chosen on the train split's held-out part, refit on train, val once.

    Returns:
        dict: ``top1`` (val), ``train_top1``, ``weight_decay`` (chosen), ``holdout_top1``
        (``{weight_decay: top-1}`` of the sweep), ``standardised``, ``chance``.
    """
    wd, scores = select_weight_decay(train_features, train_labels, num_classes, grid, standardise,
                                     holdout_fraction, seed, max_iter)
    train, val = train_features.double(), val_features.double()
    if standardise:
        train, val = _standardise(train, val)
    weight = fit_linear_probe(train, train_labels, num_classes, wd, max_iter)
    return dict(top1=_top1(weight, val, val_labels), train_top1=_top1(weight, train, train_labels),
                weight_decay=wd, holdout_top1=scores, standardised=standardise,
                chance=100.0 / num_classes)
