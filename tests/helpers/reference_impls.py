"""Independent reference implementations, used only as test oracles.

They re-state the published reference code operation by operation (same
order of floating-point operations, same reductions), adapted only where the
originals read global ``args`` or assume CUDA. They are deliberately written
in the originals' naive style and share no code with ``hvp_mtl``.

Sources:

* ASL -- Alibaba-MIIL/ASL, commit 05b193d8a39bbc5fb2c3be7b52d5188416594544,
  ``src/loss_functions/losses.py``: ``AsymmetricLoss`` (whose
  ``disable_torch_grad_focal_loss`` lines are commented out at that commit, so
  its weights always carry gradient) and ``AsymmetricLossOptimized`` (which
  toggles grad mode around the focusing weights; ``torch._C.set_grad_enabled``
  there is ``torch.set_grad_enabled`` here, as newer torch lacks the former).
* SwAV -- facebookresearch/swav, commit
  5e073db0cc69dea22aa75e92bfdd75011e888f28, ``main_swav.py``:
  ``distributed_sinkhorn`` and the loss of ``train()``.
* MCL -- GuoQiushan/MCL, commit 1912aa90885d14f83c705490b3e91ee5d2221030:
  ``MCL.random_combine_img`` (``openselfsup/models/mcl.py``), the cell split
  of ``DetConvGpNonLinearHead.forward`` (``openselfsup/models/necks.py``)
  and the loss of ``LatentMultiPredictContrastHead.forward``
  (``openselfsup/models/heads/latent_pred_head.py``).
"""
import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


class ASLAsymmetricLoss(nn.Module):
    """ASL ``AsymmetricLoss``: ``-loss.sum()`` over batch and classes."""

    def __init__(self, gamma_neg=4, gamma_pos=1, clip=0.05, eps=1e-8):
        super().__init__()
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip
        self.eps = eps

    def forward(self, x, y):
        x_sigmoid = torch.sigmoid(x)
        xs_pos = x_sigmoid
        xs_neg = 1 - x_sigmoid
        # Asymmetric clipping (probability margin).
        if self.clip is not None and self.clip > 0:
            xs_neg = (xs_neg + self.clip).clamp(max=1)
        # Basic CE.
        los_pos = y * torch.log(xs_pos.clamp(min=self.eps))
        los_neg = (1 - y) * torch.log(xs_neg.clamp(min=self.eps))
        loss = los_pos + los_neg
        # Asymmetric focusing.
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            pt = xs_pos * y + xs_neg * (1 - y)
            one_sided_gamma = self.gamma_pos * y + self.gamma_neg * (1 - y)
            loss = loss * torch.pow(1 - pt, one_sided_gamma)
        return -loss.sum()


class ASLAsymmetricLossOptimized(nn.Module):
    """ASL ``AsymmetricLossOptimized`` with its no-grad focusing option."""

    def __init__(self,
                 gamma_neg=4,
                 gamma_pos=1,
                 clip=0.05,
                 eps=1e-8,
                 disable_torch_grad_focal_loss=False):
        super().__init__()
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip
        self.eps = eps
        self.disable_torch_grad_focal_loss = disable_torch_grad_focal_loss

    def forward(self, x, y):
        targets, anti_targets = y, 1 - y
        xs_pos = torch.sigmoid(x)
        xs_neg = 1.0 - xs_pos
        if self.clip is not None and self.clip > 0:
            xs_neg = (xs_neg + self.clip).clamp(max=1)
        loss = targets * torch.log(xs_pos.clamp(min=self.eps))
        loss = loss + anti_targets * torch.log(xs_neg.clamp(min=self.eps))
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            if self.disable_torch_grad_focal_loss:
                torch.set_grad_enabled(False)
            asymmetric_w = torch.pow(
                1 - xs_pos * targets - xs_neg * anti_targets,
                self.gamma_pos * targets + self.gamma_neg * anti_targets)
            if self.disable_torch_grad_focal_loss:
                torch.set_grad_enabled(True)
            loss = loss * asymmetric_w
        return -loss.sum()


def _swav_all_reduce(tensor):
    # Official SwAV always runs under torch.distributed; here a single process
    # without a process group is the world_size == 1 case.
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)


@torch.no_grad()
def swav_distributed_sinkhorn(out, epsilon, sinkhorn_iterations, world_size):
    """Official SwAV ``distributed_sinkhorn`` (``args`` made parameters)."""
    Q = torch.exp(out / epsilon).t()  # K x B
    B = Q.shape[1] * world_size  # number of samples to assign
    K = Q.shape[0]  # number of prototypes
    # make the matrix sum to 1
    sum_Q = torch.sum(Q)
    _swav_all_reduce(sum_Q)
    Q /= sum_Q
    for _ in range(sinkhorn_iterations):
        # normalize each row: total weight per prototype must be 1/K
        sum_of_rows = torch.sum(Q, dim=1, keepdim=True)
        _swav_all_reduce(sum_of_rows)
        Q /= sum_of_rows
        Q /= K
        # normalize each column: total weight per sample must be 1/B
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= B
    Q *= B  # the columns must sum to 1 so that Q is an assignment
    return Q.t()


def swav_training_loss(output,
                       bs,
                       nmb_crops,
                       crops_for_assign,
                       temperature,
                       epsilon,
                       sinkhorn_iterations,
                       queue=None,
                       prototypes=None,
                       world_size=1):
    """The SwAV loss of ``train()`` in ``main_swav.py``.

    ``output`` holds the prototype scores of all crops stacked crop after
    crop (``[sum(nmb_crops) * bs, K]``). ``queue`` (``[len(crops_for_assign),
    L, D]`` stored embeddings) is scored with ``prototypes`` (``[K, D]``) and
    prepended, as in the original once the queue is full; the queue update
    itself is left out because it does not change this step's loss.
    """
    loss = 0
    for i, crop_id in enumerate(crops_for_assign):
        with torch.no_grad():
            out = output[bs * crop_id:bs * (crop_id + 1)].detach()
            if queue is not None:
                out = torch.cat((torch.mm(queue[i], prototypes.t()), out))
            q = swav_distributed_sinkhorn(out, epsilon, sinkhorn_iterations,
                                          world_size)[-bs:]
        subloss = 0
        for v in np.delete(np.arange(np.sum(nmb_crops)), crop_id):
            x = output[bs * v:bs * (v + 1)] / temperature
            subloss -= torch.mean(torch.sum(q * F.log_softmax(x, dim=1),
                                            dim=1))
        loss += subloss / (np.sum(nmb_crops) - 1)
    loss /= len(crops_for_assign)
    return loss


def mcl_random_combine_img(img, batch_size, downsample_ratio=2):
    """MCL ``random_combine_img``: (montages, tile labels)."""
    num_per_img = int(downsample_ratio ** 2)
    n_h, n_w = downsample_ratio, downsample_ratio
    num_img, C = img.shape[0], img.shape[1]
    random_idx = torch.randperm(num_per_img * batch_size, device=img.device)
    random_idx = torch.fmod(random_idx, num_img).long()
    img_downsampled = F.interpolate(img, scale_factor=1. / downsample_ratio)
    img_downsampled = img_downsampled.type(img.type())
    img_ds = img_downsampled[random_idx]
    H, W = img_ds.shape[2], img_ds.shape[3]
    img_ds = img_ds.reshape(batch_size, n_h, n_w, C, H, W)
    img_ds = img_ds.permute(0, 3, 1, 4, 2, 5).contiguous()
    img_ds = img_ds.reshape(batch_size, C, n_h * H, n_w * W)
    gt_label = torch.arange(num_img, device=img.device)
    return img_ds, gt_label[random_idx]


def mcl_cells(cls_feat, avg_size):
    """The cell split of MCL ``DetConvGpNonLinearHead.forward``."""
    batch_size, c = cls_feat.shape[0], cls_feat.shape[1]
    n_h, n_w = cls_feat.shape[2] // avg_size, cls_feat.shape[3] // avg_size
    cls_feat = cls_feat.reshape(batch_size, c, n_h, avg_size, n_w, avg_size)
    return cls_feat.permute(0, 2, 4, 1, 3, 5).reshape(-1, c, avg_size, avg_size)


def mcl_head_loss(pred_norm, target_norm, labels, loss_weight, T=1.0):
    """The loss of MCL ``LatentMultiPredictContrastHead.forward`` (after its
    predictor and L2 normalisation)."""
    logits = torch.einsum('nc,mc->nm', [pred_norm, target_norm])
    return nn.CrossEntropyLoss()(logits / T, labels) * (2 * T) * loss_weight

