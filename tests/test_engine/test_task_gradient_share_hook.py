"""TaskGradientShareHook in a real Runner pre-training: logged, warned, and harmless."""
import json
import math

import pytest
import torch
from mmengine.runner import Runner

from hvp_mtl.engine.hooks.task_gradient_share_hook import task_gradient_norms
from tests.helpers.tiny_configs import tiny_pretrain_cfg

TASKS = ('mim', 'swav', 'mlc', 'distill')


def _train(tmp_path, world, name, hook):
    cfg = tiny_pretrain_cfg('swin', tmp_path / name, world / 'pretrain', max_iters=4)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100, by_epoch=False)
    cfg.custom_hooks = [h for h in cfg.custom_hooks if h['type'] != 'TaskGradientShareHook']
    if hook:
        cfg.custom_hooks.append(dict(type='TaskGradientShareHook', **hook))
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


@pytest.fixture(scope='module')
def runs(tmp_path_factory, demo_world):
    tmp = tmp_path_factory.mktemp('task_grad')
    # dominance 0.3: one of four tasks always holds > 30 % of the sum, so the warning fires
    with_hook = _train(tmp, demo_world, 'hook', dict(interval=2, dominance=0.3))
    without = _train(tmp, demo_world, 'plain', None)
    return with_hook, without


def test_shares_reach_the_scalars_and_the_log(runs):
    runner = runs[0]
    scalars = [json.loads(line) for line in open(
        f'{runner.log_dir}/vis_data/scalars.json', encoding='utf-8')]
    measured = [s for s in scalars if 'task_grad/mlc_share' in s]
    assert [s['step'] for s in measured] == [1, 2, 4]  # first iteration, then every 2
    for s in measured:
        shares = [s[f'task_grad/{t}_share'] for t in TASKS]
        assert sum(shares) == pytest.approx(1.0)
        assert all(0 <= v <= 1 for v in shares)
        assert 0 < s['task_grad/clip_coef'] <= 1
        # the norm of the sum is at most the sum of the norms
        assert s['task_grad/sum_norm'] <= sum(s[f'task_grad/{t}_norm'] for t in TASKS) + 1e-6
    log = open(runner.logger.log_file, encoding='utf-8').read()
    assert 'task gradient shares at iter 4: mim' in log
    assert log.count('of the gradient norm (> 30 %)') == 1  # warned once


def test_the_hook_leaves_training_unchanged(runs):
    with_hook, without = (r.model.state_dict() for r in runs)
    assert with_hook.keys() == without.keys()
    for key in with_hook:
        assert torch.equal(with_hook[key], without[key]), key


def test_task_gradient_norms_against_separate_backward_passes():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(3, 4))
    x = torch.randn(5, 4)
    losses = dict(loss_a=(x @ weight.t()).pow(2).mean(), loss_b=3 * weight.sum(),
                  a_unweighted=torch.tensor(1.0))
    norms = task_gradient_norms(losses, [weight], ('a', 'b', 'c'))
    assert set(norms) == {'a', 'b'}
    assert weight.grad is None  # nothing accumulated
    for task in ('a', 'b'):
        ref = torch.nn.Parameter(weight.detach().clone())
        loss = (x @ ref.t()).pow(2).mean() if task == 'a' else 3 * ref.sum()
        loss.backward()
        assert norms[task] == pytest.approx(float(ref.grad.norm()), rel=1e-6)
    assert norms['b'] == pytest.approx(3 * math.sqrt(12))
