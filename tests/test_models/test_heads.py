"""Heads: multi-label decoder (both modes), SwAV clustering head, SimMIM decoder."""
import copy

import pytest
import torch
import torch.nn as nn
from mmpretrain.models.heads import SimMIMHead
from mmpretrain.models.necks import SimMIMLinearDecoder

from hvp_mtl.models.heads import (
    MIMLinearDecoderHead,
    MultiLabelDecoderHead,
    SDPAttention,
    SwAVClusteringHead,
)

C, D0 = 37, 24


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _decoder(mode, **kwargs):
    torch.manual_seed(0)
    cfg = dict(num_classes=C, in_channels=D0, mode=mode, embed_dims=16, num_groups=5,
               num_heads=2, feedforward_channels=32, num_layers=2, dropout=0.)
    cfg.update(kwargs)
    return MultiLabelDecoderHead(**cfg)


@pytest.mark.parametrize('mode', ['grouped', 'per_class'])
def test_decoder_shapes_loss_and_similarity(mode):
    head = _decoder(mode)
    feats = torch.randn(3, D0, 4, 5)
    logits, embedding = head((torch.randn(1), feats))  # backbone tuple: last entry used
    assert logits.shape == (3, C) and embedding.shape == (3, 16)
    sim = head.label_similarity(embedding)
    assert sim.shape == (3, C) and sim.abs().max() <= 1 + 1e-6
    targets = (torch.rand(3, C) < 0.2).float() * 0.9
    loss = head.loss(logits, targets)
    (loss + sim.sum()).backward()
    assert torch.isfinite(loss)
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_decoder_modes_and_self_attention():
    assert _decoder('per_class').layers[0].self_attn is not None  # Query2Label as published
    assert _decoder('grouped').layers[0].self_attn is None  # ML-Decoder
    with pytest.raises(ValueError, match='self-attention'):
        _decoder('grouped', query_self_attn=True)
    with pytest.raises(ValueError, match='mode'):
        _decoder('sparse')


def test_grouped_mode_maps_every_class_exactly_once():
    head = _decoder('grouped')
    groups = head.class_to_group()
    assert head.num_groups == 5 and head.group_size == 8
    assert head.class_embeddings().shape == (C, 16)
    assert head.class_embeddings().data_ptr() == head.group_weight.data_ptr()  # a view
    counts = torch.bincount(groups, minlength=head.num_groups)
    assert counts.sum() == C and counts.max() <= head.group_size and counts.min() > 0
    feats = torch.randn(2, D0, 3, 3)
    for cls in [0, 7, 8, 20, C - 1]:
        head.zero_grad()
        logits, _ = head(feats)
        logits[:, cls].sum().backward()
        touched_groups = head.group_queries.grad.abs().sum(1).nonzero().flatten()
        touched_labels = head.group_weight.grad.abs().sum(-1).flatten().nonzero().flatten()
        assert touched_groups.tolist() == [groups[cls].item()]
        assert touched_labels.tolist() == [cls]


def test_batch_broadcast_of_queries_matches_per_image_runs():
    head = _decoder('per_class', norm_first=True).eval()
    feats = torch.randn(3, D0, 4, 4)
    with torch.no_grad():
        batched, emb = head(feats)
        single = [head(feats[i:i + 1]) for i in range(3)]
    torch.testing.assert_close(batched, torch.cat([s[0] for s in single]))
    torch.testing.assert_close(emb, torch.cat([s[1] for s in single]))


def test_sdp_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    ours = SDPAttention(16, 4)
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight,
                                            ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias,
                                          ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    q, k, v = torch.randn(2, 7, 16), torch.randn(2, 9, 16), torch.randn(2, 9, 16)
    torch.testing.assert_close(ours(q, k, v), ref(q, k, v, need_weights=False)[0])
    # a query batch of 1 is broadcast over the key batch
    torch.testing.assert_close(ours(q[:1], k, v), ref(q[:1].expand(2, -1, -1), k, v)[0])


def _swav(**kwargs):
    torch.manual_seed(0)
    cfg = dict(in_channels=D0, hidden_channels=32, out_channels=8, num_prototypes=12,
               freeze_prototypes_iters=2)
    cfg.update(kwargs)
    return SwAVClusteringHead(**cfg)


def test_swav_prototypes_unit_norm_and_frozen_then_trained():
    head = _swav()
    with torch.no_grad():
        head.prototypes.weight.mul_(3.)
    optimizer = torch.optim.AdamW(head.parameters(), lr=0.1, weight_decay=0.05)
    feats = torch.randn(8, D0, 2, 2)  # 2 views x 4 images
    head.after_train_step(before_training=True)  # TeacherAndPrototypesHook's before_train
    for step in range(4):
        optimizer.zero_grad()
        before = head.prototypes.weight.detach().clone()
        norms = before.norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms))
        loss, logs = head.loss(feats)
        assert torch.equal(head.prototypes.weight, before)  # loss() changes no parameter
        loss.backward()
        assert torch.isfinite(loss)
        frozen = step < 2
        assert logs['prototypes_frozen'].item() == float(frozen)
        assert 0 < logs['cluster_usage'].item() <= 1
        if frozen:
            assert head.prototypes.weight.grad is None
        else:
            assert head.prototypes.weight.grad.abs().sum() > 0
        optimizer.step()
        moved = not torch.allclose(head.prototypes.weight, before)
        assert moved != frozen  # the optimizer skips frozen prototypes
        head.after_train_step()  # what TeacherAndPrototypesHook does after each step
    assert head.iteration.item() == 4


def test_swav_state_restores_counter_and_queue():
    head = _swav(queue_length=8, freeze_prototypes_iters=3)
    feats = torch.randn(8, D0, 2, 2)
    used = []
    for _ in range(3):
        used.append(head.loss(feats)[1]['queue_used'].item())
        head.after_train_step()  # the queue and the counter change after the step
    assert used == [0., 0., 1.]  # 4 embeddings per view and step: full after 2 steps
    embeddings = head(feats)
    torch.testing.assert_close(head.queue[0, :4], embeddings[:4])  # newest at the front
    torch.testing.assert_close(head.queue[1, :4], embeddings[4:])
    state = copy.deepcopy(head.state_dict())
    assert {'iteration', 'queue', 'queue_count'} <= set(state)
    restored = _swav(queue_length=8, freeze_prototypes_iters=3)
    restored.load_state_dict(state)
    assert restored.iteration.item() == 3 and restored.queue_count.item() == 8
    loss, logs = restored.loss(feats)
    assert logs['prototypes_frozen'].item() == 0. and logs['queue_used'].item() == 1.
    loss.backward()
    assert restored.prototypes.weight.grad is not None


@pytest.mark.parametrize('stride,patch', [(32, 4), (16, 16)])
def test_mim_head_matches_mmpretrain_simmim(stride, patch):
    torch.manual_seed(0)
    ours = MIMLinearDecoderHead(in_channels=D0, encoder_stride=stride)
    neck = SimMIMLinearDecoder(in_channels=D0, encoder_stride=stride)
    neck.decoder.load_state_dict(ours.decoder.state_dict())
    ref_head = SimMIMHead(patch_size=patch,
                          loss=dict(type='PixelReconstructionLoss', criterion='L1', channel=3))
    feats = torch.randn(2, D0, 2, 2)
    size = 2 * stride
    target = torch.randn(2, 3, size, size)
    mask = (torch.rand(2, size // patch, size // patch) < 0.6).long()
    pred = ours(feats)
    assert pred.shape == (2, 3, size, size)
    torch.testing.assert_close(pred, neck(feats))
    torch.testing.assert_close(ours.loss(feats, target, mask),
                               ref_head.loss(neck(feats), target, mask))


def test_heads_build_their_losses_inside_an_mmseg_scope():
    """Nested builds must not resolve in the current default scope (mmdet/mmseg runs)."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        head = MODELS.build(dict(
            type='mmpretrain.MIMLinearDecoderHead', in_channels=D0, encoder_stride=32,
            loss=dict(type='MaskedReconstructionLoss')))
    assert type(head.loss_module).__name__ == 'MaskedReconstructionLoss'
