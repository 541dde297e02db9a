"""Linear probe: multinomial logistic regression on frozen backbone features.

The measure self-supervised work reports beside fine-tuning and the kNN probe
(:mod:`.knn_probe`): the backbone stays frozen, only a linear classifier is
trained on its pooled features, so the number says how linearly separable the
pre-trained representation is, independent of how well a short fine-tune
recovers from its initialisation.
"""
from typing import Dict

import torch
import torch.nn.functional as F

__all__ = ['fit_linear_probe', 'predict_linear_probe', 'linear_probe_accuracy']


def _standardise(train: torch.Tensor, val: torch.Tensor):
    """Centre and scale both sets by the train set's per-dimension statistics."""
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
