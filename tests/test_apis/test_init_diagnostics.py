"""The measures of ``hvp_mtl.apis.init_diagnostics`` against hand computations."""
import pytest
import torch

from hvp_mtl.apis.init_diagnostics import effective_rank, stage_weight_stats, top_variance_share
from hvp_mtl.apis.init_remedies import reinit_stages, shrink_perturb


def test_effective_rank_by_hand():
    rank_one = torch.tensor([[1.0, 2.0], [-1.0, -2.0], [3.0, 6.0]])
    assert effective_rank(rank_one) == pytest.approx(1.0)
    eye = torch.eye(3)
    equal = torch.cat([eye, -eye])  # centred, three equal singular values
    assert effective_rank(equal) == pytest.approx(3.0)
    assert top_variance_share(equal, k=1) == pytest.approx(1 / 3)
    # singular values 2 and 1: p = (2/3, 1/3), exp(H) by hand
    two = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]]) / 2 ** 0.5
    p = torch.tensor([2 / 3, 1 / 3], dtype=torch.float64)
    assert effective_rank(two) == pytest.approx(float(torch.exp(-(p * p.log()).sum())))


def test_stage_weight_stats_by_hand():
    from mmpretrain.models.backbones import SwinTransformer
    torch.manual_seed(0)
    swin = SwinTransformer(arch=dict(embed_dims=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]),
                           img_size=32, window_size=2)
    swin.init_weights()
    with torch.no_grad():
        swin.stages[1].blocks[0].norm1.weight.fill_(-2.0)  # |gamma|: 2 for one of its norms
    stats = stage_weight_stats(swin)
    assert len(stats) == 4
    for i, stage in enumerate(swin.stages):
        weights = [p.flatten() for n, p in stage.named_parameters() if '.norm' not in f'.{n}']
        assert stats[i]['weight_norm'] == pytest.approx(float(torch.cat(weights).norm()), rel=1e-6)
        norms = [m for m in stage.modules() if isinstance(m, torch.nn.LayerNorm)]
        gains = torch.cat([m.weight.abs().flatten() for m in norms])
        assert stats[i]['ln_gain'] == pytest.approx(float(gains.mean()), rel=1e-6)
    assert stats[1]['ln_gain'] > 1.0 and stats[0]['ln_gain'] == pytest.approx(1.0)


def test_remedies_by_hand():
    state = {'backbone.stages.0.w': torch.tensor([2.0]), 'backbone.stages.1.w': torch.tensor([4.0]),
             'backbone.norm1.weight': torch.tensor([3.0]), 'backbone.step': torch.tensor([7])}
    reference = {k: torch.ones_like(v) for k, v in state.items()}
    reference['backbone.extra_buffer'] = torch.zeros(2)  # the random state may hold more
    mixed = shrink_perturb(state, reference, 0.5, 0.25)
    assert float(mixed['backbone.stages.0.w']) == 1.25 and int(mixed['backbone.step']) == 7
    last = reinit_stages(state, reference, 1, num_stages=2)
    assert float(last['backbone.stages.1.w']) == 1.0 and float(last['backbone.norm1.weight']) == 1
    assert float(last['backbone.stages.0.w']) == 2.0
    with pytest.raises(ValueError, match='lacks'):
        shrink_perturb(dict(state, **{'backbone.new': torch.zeros(1)}), reference, 1, 0)
