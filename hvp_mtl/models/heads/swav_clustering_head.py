"""SwAV clustering head with prototypes, queue and prototype freezing, eq. (2)-(3)."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..builder import build_module
from ..losses.sinkhorn import truncated_share
from ..protocols import TaskStep

__all__ = ['SwAVClusteringHead']


@MODELS.register_module()
class SwAVClusteringHead(BaseModule):
    """Clustering decoder with prototypes of HVP-MTL (arXiv 2310.07510, §3.2).

    Pipeline for a batch holding two views ``[2B, d0, H, W]`` (view 0 rows
    first): global average pooling -> MLP ``d0 -> hidden -> out`` (Linear,
    norm, ReLU, Linear) -> L2 normalisation -> scores against ``K`` L2-
    normalised prototypes (``Linear(out, K, bias=False)``) -> swapped
    prediction loss (``loss``, eq. 2-3, truncated Sinkhorn inside).

    All training state is in buffers, so a checkpoint restores it:

    * ``iteration``: training forwards seen. While ``iteration <
      freeze_prototypes_iters`` the prototypes stay in the graph but their
      gradient is cleared at the end of the backward pass (``.grad`` is
      None and the optimizer skips them), as official SwAV does after
      ``loss.backward()``. They are used every step, so DDP runs with
      ``find_unused_parameters=False`` (:meth:`_clear_grad_after_backward`;
      under FSDP the gradient is zeroed instead).
    * ``queue`` ``[2, L, out]`` and ``queue_count``: a per-process FIFO of
      past embeddings per view, filled from ``queue_start_iter`` on and used
      (re-scored against the current prototypes, no gradient) once full.

    ``forward``/``loss`` change no state: they read the counters and the
    queue and keep the step's embeddings aside; :meth:`after_train_step`
    (called by ``TeacherAndPrototypesHook`` through
    ``HVPMTL.after_train_step`` after every optimizer step taken) pushes
    them into the queue, advances ``iteration`` and L2-normalises the
    prototypes in place (official SwAV normalises at the start of each
    iteration, which is the same sequence). A step the non-finite guard
    skips never reaches it, so the queue, the counter and the prototypes
    stay as they were; the guard drops the kept embeddings (it resets this
    head's host-side state as a load does). Under gradient accumulation the
    micro-batches of one optimizer step read the same queue and all enter
    it at the step. The head works unchanged under FSDP, where a parameter
    written in ``forward`` would be a temporary all-gathered copy.
    mmpretrain's ``SwAVHook`` is not needed.

    Args:
        in_channels (int): Backbone width ``d0``.
        hidden_channels (int): MLP hidden width. Defaults to 2048.
        out_channels (int): Embedding width. Defaults to 128.
        num_prototypes (int): ``K``. Defaults to 3000.
        norm_cfg (dict): MLP norm, e.g. ``dict(type='BN1d')`` (SwAV) or
            ``dict(type='LN')``; use ``SyncBN`` for DDP BN statistics.
        freeze_prototypes_iters (int): Steps without prototype updates.
            Defaults to 313 (official SwAV).
        queue_length (int): Queue length per process, 0 = no queue.
        queue_start_iter (int): Step from which the queue is filled.
        loss (dict): Swapped-prediction loss config.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 hidden_channels: int = 2048,
                 out_channels: int = 128,
                 num_prototypes: int = 3000,
                 norm_cfg: dict = dict(type='BN1d'),
                 freeze_prototypes_iters: int = 313,
                 queue_length: int = 0,
                 queue_start_iter: int = 0,
                 loss: dict = dict(type='SwappedPredictionLoss'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.projector = nn.Sequential(
            nn.Linear(in_channels, hidden_channels),
            build_norm_layer(norm_cfg, hidden_channels)[1],
            nn.ReLU(inplace=True), nn.Linear(hidden_channels, out_channels))
        self.prototypes = nn.Linear(out_channels, num_prototypes, bias=False)
        self.loss_module = build_module(loss)
        self.freeze_prototypes_iters = freeze_prototypes_iters
        self.queue_length = queue_length
        self.queue_start_iter = queue_start_iter
        self.register_buffer('iteration', torch.zeros((), dtype=torch.long))
        self.register_buffer('queue', torch.zeros(2, queue_length,
                                                  out_channels))
        self.register_buffer('queue_count', torch.zeros((),
                                                        dtype=torch.long))
        # Host mirrors of the counters (read once after a load, then kept in
        # step) so deciding "frozen?" and "queue full?" never syncs.
        self._host_state: Optional[Tuple[int, int]] = None
        self._frozen_grad_hook = None
        # this step's detached embeddings (None: not queued), pushed by
        # after_train_step; trimmed to what the queue can still hold
        self._pending: List[Optional[torch.Tensor]] = []

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.reset_step_cache()

    def reset_step_cache(self) -> None:
        """Forget the host counters and the step's pending embeddings (``StepCache``)."""
        self._host_state = None
        self._pending = []

    def _counters(self) -> Tuple[int, int]:
        if self._host_state is None:
            self._host_state = (int(self.iteration), int(self.queue_count))
        return self._host_state

    def rank_local_state(self) -> Dict[str, torch.Tensor]:
        """The queue of this process (a checkpoint's state dict has rank 0's).

        Saved per rank in ``resume_state`` and restored by the resumable
        train loops, as official SwAV's ``queue{rank}.pth`` files.
        """
        return dict(queue=self.queue.detach().cpu().clone())

    def load_rank_local_state(self, state: Dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`rank_local_state`."""
        with torch.no_grad():
            self.queue.copy_(state['queue'])

    @property
    def trained_steps(self) -> int:
        """Training steps seen (the ``iteration`` buffer, no host sync)."""
        return self._counters()[0]

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """L2-normalise every prototype row in place."""
        weight = self.prototypes.weight
        weight.copy_(F.normalize(weight, dim=1))

    @torch.no_grad()
    def after_train_step(self, before_training: bool = False) -> None:
        """The step's state updates, after the optimizer step.

        Pushes the embeddings of the step's training forwards into the queue
        (oldest first), advances ``iteration`` by their number and
        L2-normalises the prototypes. ``before_training``: only normalises,
        and only an untrained head (after a resume or a load the prototypes
        are already right; re-normalising would change them by rounding).
        """
        if before_training:
            self._pending = []
            if self.trained_steps == 0:
                self.normalize_prototypes()
            return
        iteration, queue_count = self._counters()
        for embeddings in self._pending:
            if embeddings is not None:
                queue_count = self._push(embeddings, embeddings.shape[0] // 2,
                                         queue_count)
            iteration += 1
        if self._pending:
            self.iteration.fill_(iteration)
        self._host_state = (iteration, queue_count)
        self._pending = []
        self.normalize_prototypes()

    def forward(
        self, feats: Union[torch.Tensor, Sequence[torch.Tensor]]
    ) -> torch.Tensor:
        """L2-normalised embeddings ``[N, out]`` of ``[N, d0, H, W]``."""
        if not isinstance(feats, torch.Tensor):
            feats = feats[-1]
        pooled = feats.mean(dim=(2, 3)) if feats.dim() == 4 else feats
        return F.normalize(self.projector(pooled), dim=1)

    def prototype_scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine scores ``[N, K]`` of unit embeddings ``[N, out]`` against
        the prototypes, in fp32: they are divided by epsilon = 0.05 inside
        Sinkhorn, where bf16 rounding would be amplified 20x."""
        with torch.autocast(device_type=embeddings.device.type,
                            enabled=False):
            return embeddings.float() @ self.prototypes.weight.float().t()

    def loss(
        self, feats: Union[torch.Tensor, Sequence[torch.Tensor]]
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Swapped prediction loss of two views stacked in one batch.

        Args:
            feats (Tensor | Sequence[Tensor]): ``[2B, d0, H, W]``, rows
                ``[:B]`` view 0 and ``[B:]`` view 1 of the same images.

        Returns:
            tuple: scalar loss and diagnostics (``cluster_usage``: share of
            prototypes that are the best match of at least one row;
            ``prototypes_frozen``: 1 while frozen; ``queue_used``;
            ``tmax_clamped``: share of ``scores / epsilon`` entries that the
            ``T_max`` clamp cuts).
        """
        iteration, queue_count = self._counters()
        iteration += len(self._pending)  # earlier micro-batches of the step
        embeddings = self.forward(feats)
        batch = embeddings.shape[0] // 2
        frozen = iteration < self.freeze_prototypes_iters
        weight = self.prototypes.weight
        scores = self.prototype_scores(embeddings)
        if frozen and weight.requires_grad:
            self._clear_grad_after_backward(weight)
        scores0, scores1 = scores[:batch], scores[batch:]

        use_queue = (self.queue_length > 0
                     and queue_count >= self.queue_length)
        queue_scores = [None, None]
        if use_queue:
            with torch.no_grad(), torch.autocast(
                    device_type=scores.device.type, enabled=False):
                queue_scores = [q.float() @ weight.float().t()
                                for q in self.queue]
        loss = self.loss_module(scores0, scores1, *queue_scores)

        if self.training:  # for after_train_step: nothing changes here
            fill = (self.queue_length > 0
                    and iteration >= self.queue_start_iter)
            self._keep(embeddings.detach() if fill else None)

        with torch.no_grad():
            best = scores.argmax(dim=1)
            usage = torch.zeros(weight.shape[0], device=scores.device)
            usage = usage.scatter_(0, best, 1.).mean()
            # the paper's T_max clamp flattens every code whose cosine exceeds
            # t_max * epsilon (0.5 at the defaults): how often it bites
            clamped = truncated_share(scores, getattr(self.loss_module, 'epsilon', 0.05),
                                      getattr(self.loss_module, 't_max', float('inf')))
        diagnostics = dict(
            tmax_clamped=clamped,
            cluster_usage=usage,
            prototypes_frozen=scores.new_full((), float(frozen)),
            queue_used=scores.new_full((), float(use_queue)))
        return loss, diagnostics

    def task_loss(self, step: TaskStep
                  ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The task contract: :meth:`loss` of both views' last stage."""
        return self.loss(step.feats)

    def _clear_grad_after_backward(self, weight: torch.Tensor) -> None:
        """Leave the frozen prototypes without a gradient after backward.

        A hook on the tensor used in the graph (the parameter, or FSDP's
        unsharded view of it) queues an autograd end-of-backward callback,
        which queues a second one: DDP's gradient all-reduce and FSDP's
        reduce-scatter write ``.grad`` in final callbacks queued during the
        backward pass, so the second callback runs after them and sets the
        parameter's ``.grad`` to None.
        """
        if not torch.is_grad_enabled():
            return
        if self._frozen_grad_hook is not None:  # a loss() without backward
            self._frozen_grad_hook.remove()
        engine = torch.autograd.Variable._execution_engine

        # FSDP (the graph holds a view of the flat parameter, not the leaf):
        # its optimizer-state checkpoints need state for every parameter of
        # a unit, so the gradient is zeroed instead (AdamW then applies only
        # weight decay, which the re-normalisation undoes)
        sharded = not weight.is_leaf

        def clear() -> None:
            param = self.prototypes.weight
            if not sharded:
                param.grad = None
            elif param.grad is not None:
                param.grad.zero_()

        def after_backward() -> None:
            if self._frozen_grad_hook is not None:
                self._frozen_grad_hook.remove()
                self._frozen_grad_hook = None
            engine.queue_callback(clear)

        def on_grad(grad: torch.Tensor) -> None:
            engine.queue_callback(after_backward)

        self._frozen_grad_hook = weight.register_hook(on_grad)

    def _keep(self, embeddings: Optional[torch.Tensor]) -> None:
        """Keep a forward's embeddings for :meth:`after_train_step`; older
        ones that newer ones would push out of the queue are dropped."""
        self._pending.append(embeddings)
        newer = 0
        for i in range(len(self._pending) - 1, -1, -1):
            if newer >= self.queue_length and self._pending[i] is not None:
                self._pending[i] = None
            if self._pending[i] is not None:
                newer += self._pending[i].shape[0] // 2

    @torch.no_grad()
    def _push(self, embeddings: torch.Tensor, batch: int,
              queue_count: int) -> int:
        """FIFO: newest embeddings of each view enter at the front."""
        length = self.queue_length
        for view in range(2):
            new = embeddings[view * batch:(view + 1) * batch][-length:]
            keep = length - new.shape[0]
            if keep > 0:
                self.queue[view, new.shape[0]:] = self.queue[view, :keep].clone()
            self.queue[view, :new.shape[0]] = new.to(self.queue.dtype)
        queue_count = min(length, queue_count + batch)
        self.queue_count.fill_(queue_count)
        return queue_count
