"""The trivial baselines of the four objectives, against hand computations."""
import itertools
import math

import pytest
import torch

from hvp_mtl.evaluation.objective_baselines import (
    code_statistics,
    expected_random_ranking_ap,
    gap_closed,
    label_prior_image_ap,
    label_prior_map,
    learned,
    mean_teacher_distillation_loss,
    uniform_prediction_loss,
    zero_prediction_mim_loss,
)
from hvp_mtl.models.losses.masked_reconstruction_loss import MaskedReconstructionLoss
from hvp_mtl.models.losses.swapped_prediction_loss import SwappedPredictionLoss
from hvp_mtl.models.losses.symmetric_kl_distillation_loss import SymmetricKLDistillationLoss

# 4 images x 3 classes; class 2 has no positive (left out of the mean, as the mAP metric does)
TARGETS = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)


def _mean_ap_over_all_orders(targets):
    """Brute force: the AP of every class averaged over all N! orders of the images."""
    aps = []
    for order in itertools.permutations(range(targets.shape[0])):
        ranked = targets[list(order)].double()
        hits = ranked.cumsum(0)
        ranks = torch.arange(1, len(order) + 1, dtype=torch.float64)[:, None]
        ap = (ranked * hits / ranks).sum(0) / ranked.sum(0)
        aps.append(ap)
    return torch.stack(aps).mean(0)


def test_label_prior_map_is_the_expected_ap_of_a_random_order():
    # class 0: 3 of 4 images, class 1: 2 of 4; H_4 = 25/12
    h4 = 25 / 12
    by_hand = [(h4 + (3 - 1) / 3 * (4 - h4)) / 4, (h4 + (2 - 1) / 3 * (4 - h4)) / 4]
    brute = _mean_ap_over_all_orders(TARGETS[:, :2])
    assert brute.tolist() == pytest.approx(by_hand, rel=1e-12)
    assert label_prior_map(TARGETS) == pytest.approx(sum(by_hand) / 2 * 100)
    # one positive of two: 0.75, not the prevalence 0.5
    assert float(expected_random_ranking_ap(torch.tensor([1]), 2)) == pytest.approx(0.75)
    # large N: close to the prevalence
    assert float(expected_random_ranking_ap(torch.tensor([1000]), 10000)) == pytest.approx(
        0.1, abs=2e-3)
    with pytest.raises(ValueError, match='no class has a positive'):
        label_prior_map(torch.zeros(2, 3, dtype=torch.bool))


def test_label_prior_image_ap_by_hand():
    # classes ranked by training frequency 0.6, 0.3, 0.1 -> order 0, 1, 2 in every image
    freq = torch.tensor([0.6, 0.3, 0.1])
    # image 0: positive at rank 1 -> AP 1; image 1: positive at rank 2 -> 1/2;
    # image 2: ranks 1, 2 -> (1 + 1) / 2 = 1; image 3: 1
    assert label_prior_image_ap(TARGETS, freq) == pytest.approx((1 + 0.5 + 1 + 1) / 4 * 100)


def test_uniform_prediction_is_ln_k_for_any_codes():
    loss = SwappedPredictionLoss(temperature=0.1)
    codes = torch.softmax(torch.randn(5, 32, generator=torch.Generator().manual_seed(0)), 1)
    uniform_scores = torch.zeros(5, 32)  # equal scores: a uniform softmax
    assert float(loss.swapped_term(uniform_scores, codes)) == pytest.approx(
        uniform_prediction_loss(32), rel=1e-6)
    assert uniform_prediction_loss(32) == pytest.approx(math.log(32))


def test_zero_prediction_mim_loss_is_mean_abs_target_on_masked_pixels():
    target = torch.tensor([[[[1., -2.], [3., 4.]]]]).expand(1, 3, 2, 2).clone()
    target[0, 1] *= -1
    mask = torch.tensor([[[1, 0], [0, 1]]])
    # masked pixels (0,0) and (1,1): |1| and |4| in every channel -> 2.5
    value = zero_prediction_mim_loss(MaskedReconstructionLoss(), target, mask)
    assert float(value) == pytest.approx(2.5)


def test_mean_teacher_distillation_by_hand():
    loss = SymmetricKLDistillationLoss(temperature=1.0)
    teacher = torch.tensor([[0.5, -0.5], [-0.5, 0.5]], dtype=torch.float64)
    # the mean of the two rows is [0, 0]: a uniform prediction; KL terms by hand
    value = mean_teacher_distillation_loss(loss, teacher)
    q = torch.softmax(teacher, 1)
    p = torch.full_like(q, 0.5)
    expected = 0.5 * ((p - q) * (p.log() - q.log())).sum(1).mean()
    assert float(value) == pytest.approx(float(expected), rel=1e-9)
    # a teacher that gives every image the same output: the blind student is perfect
    same = teacher[:1].expand(3, 2)
    assert float(mean_teacher_distillation_loss(loss, same)) == pytest.approx(0.0, abs=1e-12)


def test_code_statistics_by_hand():
    codes = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    stats = code_statistics(codes)
    assert stats['entropy_sum'] == pytest.approx(math.log(2))  # 0 + ln 2
    assert stats['rows'] == 2
    assert stats['marginal'].tolist() == pytest.approx([1.5, 0.5])


@pytest.mark.parametrize('value,baseline,perfect,closed,verdict', [
    (62.5, 50.0, 100.0, 0.25, True),   # mAP: a quarter of the way from prior to 100
    (52.0, 50.0, 100.0, 0.04, False),
    (3.10, math.log(32), 0.0, (math.log(32) - 3.10) / math.log(32), True),
    (3.28, math.log(32), 0.0, (math.log(32) - 3.28) / math.log(32), False),
    (1.2, 1.0, 0.0, -0.2, False),      # worse than the baseline
])
def test_gap_closed_and_learned(value, baseline, perfect, closed, verdict):
    assert gap_closed(value, baseline, perfect) == pytest.approx(closed)
    assert learned(value, baseline, perfect) is verdict
