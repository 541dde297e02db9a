"""RankMe and the top-k principal-component share against their formulas on banks of known rank,
and the kNN feature spaces against a plain numpy implementation."""
import numpy as np
import pytest
import torch

from hvp_mtl.evaluation.feature_whitening import FEATURE_SPACES, knn_feature_spaces
from hvp_mtl.evaluation.knn_classifier import knn_neighbours
from hvp_mtl.evaluation.representation_rank import (
    rankme,
    representation_rank_stats,
    top_pc_variance_share,
)


def bank_with_singular_values(values, n=64, d=32, seed=0):
    """``U diag(values) V^T`` with random orthonormal ``U`` [n, r], ``V`` [d, r]."""
    rng = np.random.default_rng(seed)
    r = len(values)
    u, _ = np.linalg.qr(rng.standard_normal((n, r)))
    v, _ = np.linalg.qr(rng.standard_normal((d, r)))
    return torch.from_numpy(u @ np.diag(values) @ v.T)


@pytest.mark.parametrize('rank', [1, 3, 8, 32])
def test_rankme_of_equal_singular_values_is_the_rank(rank):
    bank = bank_with_singular_values([2.5] * rank)
    assert rankme(bank) == pytest.approx(rank, rel=1e-4)


def test_rankme_is_the_entropy_formula_of_the_paper():
    values = np.array([10., 4., 1., 0.5, 0.1])
    # the bank is 64 x 32: 32 singular values, 27 of them zero (each still gets eps)
    full = np.r_[values, np.zeros(27)]
    p = full / full.sum() + 1e-7
    expected = np.exp(-(p * np.log(p)).sum())
    assert rankme(bank_with_singular_values(values)) == pytest.approx(expected, rel=1e-6)
    # a random full-rank bank lies strictly between 1 and min(N, D)
    gauss = torch.randn(64, 32, generator=torch.Generator().manual_seed(1))
    assert 1 < rankme(gauss) < 32


def test_top_share_counts_centred_variance_in_the_largest_components():
    rng = np.random.default_rng(2)
    scales = np.array([10., 5., 1., 1., 1., 1., 0.5, 0.5])
    x = rng.standard_normal((400, 8)) * scales + 7.0  # a shared offset must not count
    centred = x - x.mean(0)
    eig = np.sort(np.linalg.eigvalsh(centred.T @ centred))[::-1]
    for k in (1, 2, 5):
        assert top_pc_variance_share(torch.from_numpy(x), k) == pytest.approx(
            eig[:k].sum() / eig.sum(), rel=1e-9)
    rank_two = bank_with_singular_values([3., 1.], n=50, d=16)
    assert top_pc_variance_share(rank_two, 5) == pytest.approx(1.0)
    stats = representation_rank_stats(torch.from_numpy(x))
    assert set(stats) == {'rankme', 'top5_share'}


def numpy_space(bank, queries, mode, eps=1e-6, rel_eps=1e-6):
    """The reference: the same transforms written directly in numpy."""
    bank, queries = bank.astype(np.float64), queries.astype(np.float64)
    if mode == 'raw':
        b, q = bank, queries
    else:
        mu = bank.mean(0)
        b, q = bank - mu, queries - mu
        if mode == 'whitened':
            lam, vec = np.linalg.eigh(b.T @ b / len(bank))
            keep = lam > rel_eps * lam.max()
            w = vec[:, keep] / np.sqrt(lam[keep] + eps)
            b, q = b @ w, q @ w
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    return unit(b), unit(q)


@pytest.mark.parametrize('mode', FEATURE_SPACES)
def test_knn_spaces_match_numpy(mode):
    rng = np.random.default_rng(3)
    # one dominant direction (colour-like) and informative small ones
    bank = rng.standard_normal((120, 10)) * np.r_[50., np.ones(9)] + 3.0
    queries = rng.standard_normal((30, 10)) * np.r_[50., np.ones(9)] + 3.0
    got_b, got_q = knn_feature_spaces(torch.from_numpy(bank), torch.from_numpy(queries), mode)
    ref_b, ref_q = numpy_space(bank, queries, mode)
    # eigenvectors are defined up to sign: compare the cosine similarities, which are not
    np.testing.assert_allclose((got_q @ got_b.T).numpy(), ref_q @ ref_b.T, atol=1e-10)
    bank_index = torch.arange(len(bank))  # the "labels" returned are the bank rows' indices
    _, idx = knn_neighbours(got_q.float(), got_b.float(), bank_index, k=5)
    ref_idx = np.argsort(-(ref_q @ ref_b.T), axis=1)[:, :5]
    assert (idx.numpy() == ref_idx).mean() > 0.95  # float32 ties aside


def test_whitening_sees_classes_that_live_in_the_small_directions():
    """Large label-free directions (like image colour) hide the classes from raw cosine."""
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((4, 9)) * 2

    def draw(n):
        y = rng.integers(0, 4, n)
        big = np.c_[rng.standard_normal((n, 1)) * 60 + 20, rng.standard_normal((n, 20)) * 60]
        x = np.c_[big, centres[y] + 0.5 * rng.standard_normal((n, 9))]
        return torch.from_numpy(x), torch.from_numpy(y)

    (bank, bank_y), (query, query_y) = draw(400), draw(200)
    accuracy = {}
    for mode in FEATURE_SPACES:
        b, q = knn_feature_spaces(bank, query, mode)
        _, nearest = knn_neighbours(q.float(), b.float(), bank_y, k=1)
        accuracy[mode] = (nearest[:, 0] == query_y).double().mean().item()
    assert accuracy['whitened'] > 0.6 > 0.4 > accuracy['raw'], accuracy


def test_the_space_is_fitted_on_the_bank_only():
    rng = np.random.default_rng(4)
    bank = torch.from_numpy(rng.standard_normal((80, 6)))
    q1 = torch.from_numpy(rng.standard_normal((10, 6)))
    q2 = torch.cat([q1[:5], 100 * torch.ones(5, 6, dtype=torch.float64)])
    for mode in FEATURE_SPACES:
        b1, out1 = knn_feature_spaces(bank, q1, mode)
        b2, out2 = knn_feature_spaces(bank, q2, mode)
        assert torch.equal(b1, b2) and torch.equal(out1[:5], out2[:5])
    with pytest.raises(ValueError, match='unknown feature space'):
        knn_feature_spaces(bank, q1, 'pca')
