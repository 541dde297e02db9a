"""The linear probe (logistic regression on frozen features): separable data is classified
perfectly, the solution is the optimum of its convex objective (zero gradient, checked by autograd
on the objective written out here), and random labels stay near chance on held-out data."""
import torch
import torch.nn.functional as F

from hvp_mtl.evaluation import fit_linear_probe, linear_probe_accuracy


def _blobs(num_per_class, num_classes, dim, spread, seed):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=g) * 4
    labels = torch.arange(num_classes).repeat_interleave(num_per_class)
    feats = centres[labels] + spread * torch.randn(len(labels), dim, generator=g)
    return feats, labels


def test_separable_classes_reach_100_percent():
    train, train_labels = _blobs(30, 5, 16, 0.3, seed=0)
    val, val_labels = _blobs(10, 5, 16, 0.3, seed=0)  # same centres, fresh draws below
    val = val + 0.1 * torch.randn(val.shape, generator=torch.Generator().manual_seed(1))
    result = linear_probe_accuracy(train, train_labels, val, val_labels, num_classes=5)
    assert result['top1'] == 100.0 and result['train_top1'] == 100.0
    assert result['chance'] == 20.0


def test_solution_is_the_optimum_of_the_regularised_objective():
    feats, labels = _blobs(20, 3, 8, 3.0, seed=2)  # overlapping: a finite optimum
    weight_decay = 1e-2
    weight = fit_linear_probe(feats, labels, 3, weight_decay=weight_decay)
    w = weight.clone().requires_grad_(True)
    x = feats.double()
    objective = F.cross_entropy(x @ w[:, :-1].T + w[:, -1], labels) \
        + weight_decay / 2 * (w[:, :-1]**2).sum()
    objective.backward()
    assert w.grad.abs().max() < 1e-6
    # moving away from the solution in any coordinate direction does not lower the objective
    for direction in torch.eye(w.numel(), dtype=torch.float64)[::5]:
        moved = (weight + 1e-3 * direction.view_as(weight))
        moved_obj = F.cross_entropy(x @ moved[:, :-1].T + moved[:, -1], labels) \
            + weight_decay / 2 * (moved[:, :-1]**2).sum()
        assert moved_obj >= objective.detach() - 1e-12


def test_random_labels_stay_near_chance_on_held_out_data():
    g = torch.Generator().manual_seed(3)
    train, val = torch.randn(300, 8, generator=g), torch.randn(600, 8, generator=g)
    train_labels = torch.randint(0, 4, (300, ), generator=g)
    val_labels = torch.randint(0, 4, (600, ), generator=g)
    result = linear_probe_accuracy(train, train_labels, val, val_labels, num_classes=4)
    assert abs(result['top1'] - 25.0) < 6.0  # 600 draws: binomial sigma 1.8 points


def test_the_sweep_chooses_on_the_train_split_only_and_val_cannot_move_it():
    """Two very different val sets: the same held-out curve, the same choice, the same weights."""
    from hvp_mtl.evaluation.linear_probe import linear_probe_sweep, stratified_holdout
    train, train_labels = _blobs(20, 4, 12, 2.5, seed=3)
    val, val_labels = _blobs(10, 4, 12, 2.5, seed=4)
    grid = (1e-4, 1e-2, 1.0, 30.0)
    first = linear_probe_sweep(train, train_labels, val, val_labels, 4, grid=grid, max_iter=100)
    order = torch.randperm(len(val_labels), generator=torch.Generator().manual_seed(0))
    shuffled = val_labels[order]
    second = linear_probe_sweep(train, train_labels, -5 * val, shuffled, 4, grid=grid,
                                max_iter=100)
    assert first['holdout_top1'] == second['holdout_top1']
    assert set(first['holdout_top1']) == set(grid)
    assert first['weight_decay'] == second['weight_decay']
    assert first['train_top1'] == second['train_top1']
    assert first['top1'] != second['top1']  # val was used, once, after the choice
    # a strong penalty on well-separated blobs collapses the probe towards chance on held-out data
    assert first['holdout_top1'][30.0] <= max(first['holdout_top1'].values())
    fit, held = stratified_holdout(train_labels, 0.2, seed=0)
    assert len(held) == 16 and set(train_labels[held].tolist()) == {0, 1, 2, 3}
    assert not set(fit.tolist()) & set(held.tolist()) and len(fit) + len(held) == 80
    raw = linear_probe_sweep(train, train_labels, val, val_labels, 4, grid=grid,
                             standardise=False, max_iter=100)
    assert raw['standardised'] is False and first['standardised'] is True
