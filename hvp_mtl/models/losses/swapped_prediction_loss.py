"""SwAV swapped-prediction loss, eq. (2)-(3)."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from .sinkhorn import truncated_sinkhorn


@MODELS.register_module()
class SwappedPredictionLoss(nn.Module):
    """Clustering loss of HVP-MTL, eq. (2)-(3) of arXiv 2310.07510.

    For two views ``s`` and ``t`` of the same images with prototype scores
    ``z_s, z_t`` (``[B, K]``, cosine similarities to the prototypes):

    .. code-block:: text

        q_v = truncated_sinkhorn(z_v)                  # codes, no gradient
        p_v = softmax(z_v / temperature)
        l(z_t, q_s) = -mean_b sum_k q_s[b, k] * log p_t[b, k]     # eq. (3)
        loss = (l(z_t, q_s) + l(z_s, q_t)) / 2                    # eq. (2)

    Normalisation: eq. (2) writes the *sum* of the two swapped terms; this
    returns their *mean*, which is exactly what official SwAV (and
    mmpretrain's ``SwAVLoss``) compute for two crops (``subloss / (n_crops -
    1)`` then ``/ len(crops_for_assign)``). So a SwAV weight carries over
    unchanged; the paper's sum is twice this value.

    Queue: ``queue_scores{0,1}`` (``[L, K]``, stored features of earlier
    batches scored against the *current* prototypes) are prepended to that
    view's scores before Sinkhorn, and only the last ``B`` rows of the codes
    (the current batch) are used, as in official SwAV. Under DDP the Sinkhorn
    normalisation is global (see :func:`truncated_sinkhorn`).

    Everything runs in fp32 with autocast disabled; codes are computed from
    detached scores, so gradients flow only through ``log p``.

    Args:
        temperature (float): Softmax temperature ``tau``. Defaults to 0.1.
        epsilon (float): Sinkhorn regularisation. Defaults to 0.05.
        sinkhorn_iterations (int): Sinkhorn iterations. Defaults to 3.
        t_max (float): Truncation of ``scores / epsilon`` before ``exp``
            (paper: 10); ``inf`` disables it. Defaults to 10.
    """

    def __init__(self,
                 temperature: float = 0.1,
                 epsilon: float = 0.05,
                 sinkhorn_iterations: int = 3,
                 t_max: float = 10.) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)
        self.sinkhorn_iterations = int(sinkhorn_iterations)
        self.t_max = float(t_max)

    @torch.no_grad()
    def codes(self,
              scores: torch.Tensor,
              queue_scores: Optional[torch.Tensor] = None) -> torch.Tensor:
        """SwAV codes of one view's batch.

        Args:
            scores (torch.Tensor): Batch scores ``[B, K]``.
            queue_scores (torch.Tensor, optional): Queue scores ``[L, K]``,
                prepended before Sinkhorn.

        Returns:
            torch.Tensor: Codes of the batch rows, ``[B, K]``, fp32.
        """
        scores = scores.detach()
        batch_size = scores.size(0)
        if queue_scores is not None:
            if queue_scores.dim() != 2 or queue_scores.size(1) != scores.size(
                    1):
                raise ValueError('queue scores must have shape [L, '
                                 f'{scores.size(1)}], got '
                                 f'{tuple(queue_scores.shape)}')
            scores = torch.cat(
                [queue_scores.detach().to(scores.dtype), scores])
        codes = truncated_sinkhorn(scores,
                                   epsilon=self.epsilon,
                                   iterations=self.sinkhorn_iterations,
                                   t_max=self.t_max)
        return codes[codes.size(0) - batch_size:]

    def swapped_term(self, scores: torch.Tensor,
                     codes: torch.Tensor) -> torch.Tensor:
        """Eq. (3): ``-mean_b sum_k codes * log_softmax(scores / tau)``.

        Args:
            scores (torch.Tensor): Scores of the predicting view ``[B, K]``.
            codes (torch.Tensor): Codes of the other view ``[B, K]``.

        Returns:
            torch.Tensor: Scalar cross-entropy, fp32.
        """
        with torch.autocast(device_type=scores.device.type, enabled=False):
            dtype = torch.promote_types(scores.dtype, torch.float32)
            log_prob = F.log_softmax(scores.to(dtype) / self.temperature,
                                     dim=1)
            return -(codes.to(dtype) * log_prob).sum(dim=1).mean()

    def forward(self,
                scores_view0: torch.Tensor,
                scores_view1: torch.Tensor,
                queue_scores0: Optional[torch.Tensor] = None,
                queue_scores1: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Swapped prediction loss of the two views, eq. (2).

        Args:
            scores_view0 (torch.Tensor): Prototype scores of view 0 ``[B, K]``.
            scores_view1 (torch.Tensor): Prototype scores of view 1 ``[B, K]``.
            queue_scores0 (torch.Tensor, optional): Queue scores of view 0
                ``[L, K]``.
            queue_scores1 (torch.Tensor, optional): Queue scores of view 1
                ``[L, K]``.

        Returns:
            torch.Tensor: Scalar loss (mean of the two swapped terms).
        """
        if scores_view0.dim() != 2 or scores_view0.shape != scores_view1.shape:
            raise ValueError('scores of both views must have the same shape '
                             f'[B, K], got {tuple(scores_view0.shape)} and '
                             f'{tuple(scores_view1.shape)}')
        codes0 = self.codes(scores_view0, queue_scores0)
        codes1 = self.codes(scores_view1, queue_scores1)
        return 0.5 * (self.swapped_term(scores_view0, codes1) +
                      self.swapped_term(scores_view1, codes0))

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, epsilon={self.epsilon}, '
                f'sinkhorn_iterations={self.sinkhorn_iterations}, '
                f't_max={self.t_max}')
