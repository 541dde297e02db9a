"""The HVP-MTL losses (eq. 1-6) against independent reference implementations.

References: mmpretrain's ``AsymmetricLoss``, ``distributed_sinkhorn``,
``SwAVLoss``, ``SimMIMHead`` + ``PixelReconstructionLoss`` (built through the
registry) and the original ASL / official SwAV code re-stated in
``reference_impls.py``.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.models.losses.swav_loss import distributed_sinkhorn
from mmpretrain.registry import MODELS

from hvp_mtl.models.losses import (
    MaskedReconstructionLoss,
    SwappedPredictionLoss,
    SymmetricKLDistillationLoss,
    WeightedAsymmetricLoss,
    truncated_sinkhorn,
)
from tests.helpers.reference_impls import (
    ASLAsymmetricLoss,
    ASLAsymmetricLossOptimized,
    swav_distributed_sinkhorn,
    swav_training_loss,
)

BATCH, CLASSES = 8, 40


def _logits_targets(seed, dtype=torch.float32, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(BATCH, CLASSES, generator=gen, dtype=dtype) * scale
    targets = (torch.rand(BATCH, CLASSES, generator=gen) < 0.3).to(dtype)
    return logits, targets


def _eq1_by_hand(logits, targets, eta, gamma_pos, gamma_neg, clip, eps):
    """Eq. (1) element by element in float64, ASL margin and eps included."""
    x, t = logits.double(), targets.double()
    p = 1 / (1 + torch.exp(-x))
    p_m = torch.clamp(p - clip, min=0)
    pos = eta * (1 - p)**gamma_pos * torch.log(torch.clamp(p, min=eps))
    neg = p_m**gamma_neg * torch.log(torch.clamp(1 - p_m, min=eps))
    return -(t * pos + (1 - t) * neg).sum() / x.shape[0]


# ----------------------------------------------------------- eq. (1): WASL


@pytest.mark.parametrize('gamma_pos,gamma_neg', [(4., 1.), (0., 4.)])
@pytest.mark.parametrize('clip', [0., 0.05])
def test_wasl_eta1_equals_mmpretrain_asymmetric_loss(gamma_pos, gamma_neg,
                                                     clip):
    logits, targets = _logits_targets(0)
    ours = MODELS.build(
        dict(type='WeightedAsymmetricLoss',
             eta=1.,
             gamma_pos=gamma_pos,
             gamma_neg=gamma_neg,
             clip=clip))
    # mmpretrain reduces with reduction='mean' + avg_factor as
    # loss.sum() / avg_factor: with avg_factor=B that is sum over classes,
    # mean over the batch -- no rescaling needed.
    reference = MODELS.build(
        dict(type='AsymmetricLoss',
             gamma_pos=gamma_pos,
             gamma_neg=gamma_neg,
             clip=clip,
             reduction='mean',
             use_sigmoid=True,
             eps=1e-8))
    x, t = logits.double(), targets.double()
    expected = reference(x, t, avg_factor=BATCH)
    torch.testing.assert_close(ours(x, t), expected, rtol=1e-12, atol=0)
    # In fp32 ours stays within 1e-6 of that value; mmpretrain's own fp32
    # result drifts up to ~1.4e-6 (it forms log(1 - sigmoid(x)) directly).
    ours_fp32 = ours(logits, targets)
    assert ours_fp32.dtype == torch.float32
    torch.testing.assert_close(ours_fp32.double(), expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(ours_fp32,
                               reference(logits, targets, avg_factor=BATCH),
                               rtol=1e-5,
                               atol=0)


@pytest.mark.parametrize('gamma_pos,gamma_neg', [(1., 4.), (4., 1.)])
def test_wasl_eta1_equals_original_asl_values_and_grads(gamma_pos, gamma_neg):
    logits, targets = _logits_targets(1, torch.float64)
    ours = WeightedAsymmetricLoss(eta=1.,
                                  gamma_pos=gamma_pos,
                                  gamma_neg=gamma_neg,
                                  clip=0.05)
    reference = ASLAsymmetricLoss(gamma_neg=gamma_neg,
                                  gamma_pos=gamma_pos,
                                  clip=0.05,
                                  eps=1e-8)
    x_ours = logits.clone().requires_grad_()
    x_ref = logits.clone().requires_grad_()
    loss = ours(x_ours, targets)
    expected = reference(x_ref, targets) / BATCH  # ASL sums over the batch
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-9, atol=1e-12)


def test_wasl_constant_focusing_weights_match_asl_optimized():
    logits, targets = _logits_targets(2, torch.float64)
    grads = {}
    for disable in (True, False):
        ours = WeightedAsymmetricLoss(eta=1.,
                                      gamma_pos=1.,
                                      gamma_neg=4.,
                                      clip=0.05,
                                      disable_torch_grad_focal_loss=disable)
        reference = ASLAsymmetricLossOptimized(
            gamma_neg=4.,
            gamma_pos=1.,
            clip=0.05,
            disable_torch_grad_focal_loss=disable)
        x_ours = logits.clone().requires_grad_()
        x_ref = logits.clone().requires_grad_()
        (ours(x_ours, targets) * BATCH).backward()
        reference(x_ref, targets).backward()
        torch.testing.assert_close(x_ours.grad, x_ref.grad)
        grads[disable] = x_ours.grad
    # The option really changes the gradient.
    assert (grads[True] - grads[False]).abs().max() > 1e-3
    with torch.no_grad():  # ours never re-enables autograd (ASL does)
        WeightedAsymmetricLoss(disable_torch_grad_focal_loss=True)(logits,
                                                                   targets)
        assert not torch.is_grad_enabled()


@pytest.mark.parametrize('clip', [0., 0.05])
def test_wasl_eta_matches_eq1_by_hand(clip):
    logits, targets = _logits_targets(3)
    ours = WeightedAsymmetricLoss(eta=10.,
                                  gamma_pos=4.,
                                  gamma_neg=1.,
                                  clip=clip)
    expected = _eq1_by_hand(logits, targets, 10., 4., 1., clip, 1e-8)
    torch.testing.assert_close(ours(logits.double(), targets.double()),
                               expected,
                               rtol=1e-12,
                               atol=0)
    torch.testing.assert_close(ours(logits, targets).double(),
                               expected,
                               rtol=1e-6,
                               atol=0)
    # eta scales exactly the positive part.
    only_pos = WeightedAsymmetricLoss(eta=10., clip=clip)(
        logits.double(), targets.double()) - WeightedAsymmetricLoss(
            eta=0., clip=clip)(logits.double(), targets.double())
    expected_pos = _eq1_by_hand(logits, targets, 10., 4., 1., clip, 1e-8) - \
        _eq1_by_hand(logits, targets, 0., 4., 1., clip, 1e-8)
    torch.testing.assert_close(only_pos, expected_pos)
    assert only_pos > 0


def test_wasl_soft_targets_are_linear_interpolation():
    logits, _ = _logits_targets(4, torch.float64)
    soft = torch.rand(BATCH,
                      CLASSES,
                      generator=torch.Generator().manual_seed(5),
                      dtype=torch.float64)
    loss = WeightedAsymmetricLoss()  # paper defaults: eta 10, gammas 4 / 1
    torch.testing.assert_close(loss(logits, soft),
                               _eq1_by_hand(logits, soft, 10., 4., 1., 0.05,
                                            1e-8),
                               rtol=1e-12,
                               atol=0)
    elementwise = loss.elementwise(logits, soft)
    interpolated = soft * loss.elementwise(logits, torch.ones_like(soft)) + \
        (1 - soft) * loss.elementwise(logits, torch.zeros_like(soft))
    torch.testing.assert_close(elementwise, interpolated)


@pytest.mark.parametrize('magnitude', [50., 1e4])
@pytest.mark.parametrize('gamma_neg', [1., 0.5])
def test_wasl_extreme_logits_finite(magnitude, gamma_neg):
    logits = torch.tensor([[magnitude, -magnitude, magnitude, -magnitude]])
    targets = torch.tensor([[1., 1., 0., 0.]])
    loss_fn = WeightedAsymmetricLoss(gamma_neg=gamma_neg)
    x = logits.clone().requires_grad_()
    loss = loss_fn(x, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    # Saturated: only the confidently wrong elements cost, bounded by eps.
    expected = _eq1_by_hand(logits, targets, 10., 4., gamma_neg, 0.05, 1e-8)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=1e-6)
    # Low-precision inputs under autocast are promoted to fp32.
    with torch.autocast('cpu', dtype=torch.bfloat16):
        x16 = logits.to(torch.bfloat16).requires_grad_()
        loss16 = loss_fn(x16, targets)
    loss16.backward()
    assert loss16.dtype == torch.float32
    assert torch.isfinite(x16.grad.float()).all()


def test_wasl_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match='same shape'):
        WeightedAsymmetricLoss()(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match='clip'):
        WeightedAsymmetricLoss(clip=1.5)


# ------------------------------------------------- truncated Sinkhorn-Knopp


def _cosine_scores(seed, batch=24, prototypes=30, dim=16, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(batch, dim, generator=gen), dim=1)
    protos = F.normalize(torch.randn(prototypes, dim, generator=gen), dim=1)
    return (feats @ protos.t()).to(dtype)


def test_sinkhorn_without_truncation_equals_mmpretrain_and_swav():
    for dtype in (torch.float32, torch.float64):
        scores = _cosine_scores(0, dtype=dtype)
        ours = truncated_sinkhorn(scores, 0.05, 3, t_max=math.inf)
        mmpretrain = distributed_sinkhorn(scores.clone(), 3, 1, 0.05)
        swav = swav_distributed_sinkhorn(scores.clone(), 0.05, 3, 1)
        tol = dict(rtol=1e-5, atol=1e-7) if dtype == torch.float32 else {}
        torch.testing.assert_close(ours, mmpretrain, **tol)
        torch.testing.assert_close(ours, swav, **tol)


def test_sinkhorn_truncation_is_a_clamp_of_the_exponent_input():
    # ε = 0.02 puts scores/ε in [-50, 50], so T_max = 10 clamps many entries.
    scores = _cosine_scores(1, dtype=torch.float64)
    ours = truncated_sinkhorn(scores, 0.02, 3, t_max=10.)
    clamped = (scores / 0.02).clamp(max=10.) * 0.02
    torch.testing.assert_close(ours,
                               swav_distributed_sinkhorn(clamped, 0.02, 3, 1))
    untruncated = truncated_sinkhorn(scores, 0.02, 3, t_max=math.inf)
    assert (ours - untruncated).abs().max() > 1e-3


def test_sinkhorn_fp16_range_inputs_give_doubly_normalised_codes():
    batch, prototypes = 64, 32
    gen = torch.Generator().manual_seed(2)
    scores = (torch.rand(batch, prototypes, generator=gen) * 2 - 1) * 6e4
    scores = scores.half()
    # Without the truncation the exponential overflows: SwAV/mmpretrain NaN.
    assert not torch.isfinite(distributed_sinkhorn(scores.float(), 3, 1,
                                                   0.05)).all()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        codes = truncated_sinkhorn(scores, 0.05, iterations=3, t_max=10.)
    assert codes.dtype == torch.float32 and torch.isfinite(codes).all()
    assert (codes >= 0).all()
    torch.testing.assert_close(codes.sum(1), torch.ones(batch))
    torch.testing.assert_close(codes.sum(0),
                               torch.full((prototypes, ), batch / prototypes),
                               rtol=0.05,
                               atol=0)
    # Every score far below the truncation: uniform codes, not 0/0.
    uniform = truncated_sinkhorn(torch.full((4, 5), -6e4), 0.05, 3, 10.)
    torch.testing.assert_close(uniform, torch.full((4, 5), 0.2))


# ------------------------------------------------------ eq. (2)-(3): SwAV


def test_swapped_prediction_equals_official_swav_training_loop():
    batch, dim, prototypes, queue_len = 16, 12, 20, 32
    gen = torch.Generator().manual_seed(3)
    protos = F.normalize(torch.randn(prototypes, dim, generator=gen), dim=1)
    feats = F.normalize(torch.randn(2 * batch, dim, generator=gen), dim=1)
    queue = F.normalize(torch.randn(2, queue_len, dim, generator=gen), dim=2)
    loss_fn = MODELS.build(dict(type='SwappedPredictionLoss', t_max=math.inf))
    for use_queue in (False, True):
        output = (feats @ protos.t()).double().requires_grad_()
        reference_output = output.detach().clone().requires_grad_()
        queue_scores = ((queue[0] @ protos.t()).double(), (
            queue[1] @ protos.t()).double()) if use_queue else (None, None)
        loss = loss_fn(output[:batch], output[batch:], *queue_scores)
        expected = swav_training_loss(
            reference_output,
            batch,
            nmb_crops=[2],
            crops_for_assign=[0, 1],
            temperature=0.1,
            epsilon=0.05,
            sinkhorn_iterations=3,
            queue=queue.double() if use_queue else None,
            prototypes=protos.double())
        torch.testing.assert_close(loss, expected)
        loss.backward()
        expected.backward()
        torch.testing.assert_close(output.grad, reference_output.grad)


def test_swapped_prediction_equals_mmpretrain_swav_loss():
    batch, dim, prototypes = 8, 12, 20
    gen = torch.Generator().manual_seed(4)
    feats = F.normalize(torch.randn(2 * batch, dim, generator=gen), dim=1)
    reference = MODELS.build(
        dict(type='SwAVLoss', feat_dim=dim, num_prototypes=prototypes))
    expected = reference(feats)  # normalises its prototypes in place
    scores = feats @ reference.prototypes.weight.detach().t()
    ours = SwappedPredictionLoss(t_max=math.inf)(scores[:batch],
                                                 scores[batch:])
    torch.testing.assert_close(ours, expected)


def test_swapped_prediction_truncated_is_finite_for_fp16_range():
    gen = torch.Generator().manual_seed(5)
    scores = ((torch.rand(2, 16, 24, generator=gen) * 2 - 1) *
              6e4).half().requires_grad_()
    loss = SwappedPredictionLoss()(scores[0], scores[1])
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(scores.grad.float()).all()


# ---------------------------------------------------------- eq. (4): MIM


def test_masked_reconstruction_equals_mmpretrain_simmim_head():
    batch, size, patch = 2, 32, 4
    gen = torch.Generator().manual_seed(6)
    pred = torch.randn(batch, 3, size, size, generator=gen)
    target = torch.randn(batch, 3, size, size, generator=gen)
    # Token-level mask (SimMIM: 8-px mask patches over 4-px tokens).
    blocks = (torch.rand(batch, size // 8, size // 8, generator=gen) < 0.6)
    token_mask = blocks.repeat_interleave(2, 1).repeat_interleave(2, 2)
    head = MODELS.build(
        dict(type='SimMIMHead',
             patch_size=patch,
             loss=dict(type='PixelReconstructionLoss',
                       criterion='L1',
                       channel=3)))
    expected = head.loss(pred, target, token_mask.float())
    # Ours takes the mask at pixel resolution; up-sample independently.
    pixel_mask = F.interpolate(token_mask[:, None].float(),
                               scale_factor=patch,
                               mode='nearest')[:, 0]
    loss_fn = MODELS.build(dict(type='MaskedReconstructionLoss'))
    assert isinstance(loss_fn, MaskedReconstructionLoss)
    pred_ours = pred.clone().requires_grad_()
    loss = loss_fn(pred_ours, target, pixel_mask)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    # Only masked pixels receive a gradient.
    assert (pred_ours.grad.abs().sum(1) > 0).eq(pixel_mask.bool()).all()
    # No masked pixel: zero loss, not NaN.
    empty = loss_fn(pred, target, torch.zeros(batch, size, size))
    assert empty.item() == 0.
    with pytest.raises(ValueError, match='pixel resolution'):
        loss_fn(pred, target, token_mask)


# ------------------------------------------------ eq. (6): distillation


@pytest.mark.parametrize('temperature', [1.0, 0.1])
def test_symmetric_kl_equals_kl_div(temperature):
    gen = torch.Generator().manual_seed(7)
    student = torch.randn(BATCH, CLASSES, generator=gen).requires_grad_()
    teacher = torch.randn(BATCH, CLASSES, generator=gen).requires_grad_()
    loss_fn = MODELS.build(
        dict(type='SymmetricKLDistillationLoss', temperature=temperature))
    loss = loss_fn(student, teacher)
    log_p = F.log_softmax(student.detach() / temperature, dim=1)
    log_q = F.log_softmax(teacher.detach() / temperature, dim=1)
    expected = 0.5 * (
        F.kl_div(log_q, log_p, reduction='batchmean', log_target=True) +
        F.kl_div(log_p, log_q, reduction='batchmean', log_target=True))
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    assert teacher.grad is None  # the teacher is detached
    assert loss_fn(student, student.detach().clone()).item() == 0.


def test_symmetric_kl_extreme_inputs_are_finite():
    student = torch.tensor([[1e4, -1e4, 0.], [-50., 50., 0.]],
                           dtype=torch.bfloat16).requires_grad_()
    teacher = torch.tensor([[-1e4, 1e4, 0.], [50., -50., 0.]])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = SymmetricKLDistillationLoss()(student, teacher)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(student.grad.float()).all()


def _eq1_gradient_by_hand(x, t, eta, gamma_pos, gamma_neg, clip, detached):
    """d(eq. 1)/dx element by element in float64, written out (no autograd).

    With ``p = sigmoid(x)``, ``dp/dx = p (1 - p)`` and ``p_m = p - clip`` where ``p > clip``:
    positives ``-t eta (1 - p)^g+ [(1 - p) - g+ p log p]`` (the second term is the focusing
    weight's own gradient), negatives ``(1 - t) p (1 - p) [p_m^g- / (1 - p_m) - g- p_m^(g- - 1)
    log(1 - p_m)]``; ``detached`` drops the focusing weights' terms.
    """
    p = 1 / (1 + torch.exp(-x))
    focus_pos = 0. if detached else 1.
    pos = -t * eta * (1 - p)**gamma_pos * ((1 - p) - focus_pos * gamma_pos * p * torch.log(p))
    p_m = torch.clamp(p - clip, min=0)
    neg_weight = p_m**gamma_neg / (1 - p_m)
    if not detached:
        neg_weight = neg_weight - gamma_neg * p_m**(gamma_neg - 1) * torch.log(1 - p_m)
    neg = (1 - t) * p * (1 - p) * torch.where(p > clip, neg_weight, torch.zeros_like(p))
    return pos + neg


@pytest.mark.parametrize('detached', [False, True])
def test_wasl_gradient_matches_its_derivative_by_hand(detached):
    gen = torch.Generator().manual_seed(7)
    x = torch.empty(BATCH, CLASSES, dtype=torch.float64).uniform_(-4, 4, generator=gen)
    p = torch.sigmoid(x)
    x = torch.where((p - 0.05).abs() < 0.01, x + 0.5, x)  # away from the margin's kink
    t = torch.rand(BATCH, CLASSES, generator=gen, dtype=torch.float64)  # soft targets
    loss = WeightedAsymmetricLoss(eta=10., gamma_pos=4., gamma_neg=1., clip=0.05,
                                  disable_torch_grad_focal_loss=detached)
    x_ours = x.clone().requires_grad_()
    loss(x_ours, t, avg_factor=1).backward()
    expected = _eq1_gradient_by_hand(x, t, 10., 4., 1., 0.05, detached)
    torch.testing.assert_close(x_ours.grad, expected, rtol=1e-10, atol=1e-12)


def test_wasl_attached_focusing_weight_is_3_8x_at_p_one_half():
    """The issue's figure: a positive at p = 0.5 with gamma+ = 4 gets 1 + 4 ln 2 = 3.77x the
    detached gradient."""
    grads = {}
    for detached in (False, True):
        x = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
        WeightedAsymmetricLoss(gamma_pos=4., disable_torch_grad_focal_loss=detached)(
            x, torch.ones(1, 1, dtype=torch.float64)).backward()
        grads[detached] = float(x.grad)
    assert grads[False] / grads[True] == pytest.approx(1 + 4 * math.log(2))
