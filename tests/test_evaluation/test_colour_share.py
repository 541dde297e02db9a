"""Colour share of a representation, against plain numpy references."""
import numpy as np
import pytest
import torch

from hvp_mtl.evaluation.colour_share import (
    colour_explained_share,
    image_colour_statistics,
    r_squared,
)


def numpy_r2(y, x):
    """R² of ``y ~ [1, x]`` by numpy's least squares (the reference)."""
    design = np.hstack([np.ones((len(x), 1)), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    res = y - design @ coef
    return 1 - (res ** 2).sum() / ((y - y.mean(0)) ** 2).sum()


def numpy_top_pc_scores(z, k):
    centred = z - z.mean(0)
    eigvals, eigvecs = np.linalg.eigh(centred.T @ centred)
    return centred @ eigvecs[:, ::-1][:, :k]


def test_image_colour_statistics_against_numpy():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 3, 7, 9), dtype=np.uint8)
    stats = image_colour_statistics(torch.from_numpy(images))
    flat = images.reshape(5, 3, -1) / 255.0
    expected = np.hstack([flat.mean(2), flat.std(2)])
    assert stats.shape == (5, 6)
    np.testing.assert_allclose(stats.numpy(), expected, rtol=0, atol=1e-12)
    # float input in [0, 1] is taken as it is
    np.testing.assert_allclose(image_colour_statistics(torch.from_numpy(images / 255.0)).numpy(),
                               expected, atol=1e-12)


@pytest.mark.parametrize('mix', [0.0, 0.5, 0.9])
def test_colour_explained_share_matches_numpy(mix):
    rng = np.random.default_rng(1)
    n, d = 300, 40
    colour = rng.normal(size=(n, 6))
    signal = colour @ rng.normal(size=(6, d)) * 3
    features = mix * signal + (1 - mix) * rng.normal(size=(n, d))
    got = colour_explained_share(torch.from_numpy(features), torch.from_numpy(colour), k=2)
    ref_top = numpy_r2(numpy_top_pc_scores(features, 2), colour)
    ref_total = numpy_r2(features - features.mean(0), colour)
    assert got['top2_r2'] == pytest.approx(ref_top, abs=1e-9)
    assert got['total_r2'] == pytest.approx(ref_total, abs=1e-9)
    assert got['chance_r2'] == pytest.approx(6 / (n - 1))


def test_colour_share_bounds():
    rng = np.random.default_rng(2)
    colour = torch.from_numpy(rng.normal(size=(400, 6)))
    linear = colour @ torch.from_numpy(rng.normal(size=(6, 16))) + 0.5
    exact = colour_explained_share(linear, colour)
    assert exact['top2_r2'] == pytest.approx(1.0, abs=1e-9)
    assert exact['total_r2'] == pytest.approx(1.0, abs=1e-9)
    independent = colour_explained_share(torch.from_numpy(rng.normal(size=(400, 16))), colour)
    # in-sample R² of features independent of colour stays near P / (N - 1) = 0.015
    assert independent['total_r2'] < 3 * independent['chance_r2']
    assert independent['top2_r2'] < 0.06


def test_r_squared_edge_cases():
    x = torch.randn(10, 2, dtype=torch.float64)
    assert r_squared(torch.ones(10, 3), x) == 0.0  # no variance to explain
    with pytest.raises(ValueError, match='9 rows of regressors for 10'):
        r_squared(torch.randn(10, 3), x[:9])
    with pytest.raises(ValueError, match=r'\[N, C, H, W\]'):
        image_colour_statistics(torch.zeros(3, 4, 4))
