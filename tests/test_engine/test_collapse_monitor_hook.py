"""CollapseMonitorHook in a real Runner pre-training: logged, harmless, and it warns on a
deliberately collapsed model (every image mapped to the same feature)."""
import json

import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

from tests.helpers.tiny_configs import tiny_pretrain_cfg

HOOK = dict(type='CollapseMonitorHook', interval=2, num_images=24, chunk=10)


def _train(tmp_path, world, name, hook, collapsed=False):
    cfg = tiny_pretrain_cfg('swin', tmp_path / name, world / 'pretrain', max_iters=4)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100, by_epoch=False)
    cfg.custom_hooks = [h for h in cfg.custom_hooks if h['type'] != 'CollapseMonitorHook']
    if hook:
        cfg.custom_hooks.append(hook)
    if collapsed:
        # the backbone's output norms return their bias: every image maps to the same vector;
        # loaded as a checkpoint (after the runner's weight init), lr 0 keeps it there
        init_default_scope('mmpretrain')
        model = MODELS.build(cfg.model)
        model.init_weights()
        for index in model.backbone.out_indices:
            norm = getattr(model.backbone, f'norm{index}')
            norm.weight.data.zero_()
            norm.bias.data.fill_(1.)
        torch.save(dict(state_dict=model.state_dict(), meta={}), tmp_path / 'collapsed.pth')
        cfg.load_from = str(tmp_path / 'collapsed.pth')
        cfg.optim_wrapper.optimizer.lr = 0.
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def _scalars(runner):
    return [json.loads(line) for line in open(f'{runner.log_dir}/vis_data/scalars.json',
                                              encoding='utf-8')]


@pytest.fixture(scope='module')
def runs(tmp_path_factory, demo_world):
    tmp = tmp_path_factory.mktemp('collapse')
    return (_train(tmp, demo_world, 'hook', HOOK), _train(tmp, demo_world, 'plain', None),
            _train(tmp, demo_world, 'collapsed', HOOK, collapsed=True))


def test_rank_and_share_reach_the_scalars_and_the_log(runs):
    runner = runs[0]
    measured = [s for s in _scalars(runner) if 'collapse/student_rankme' in s]
    assert [s['step'] for s in measured] == [1, 2, 4]  # first iteration, then every 2
    dims = runner.model.backbone.num_features[-1]
    for s in measured:
        for arm in ('student', 'teacher'):
            assert 1 < s[f'collapse/{arm}_rankme'] <= min(24, dims)
            assert 0 < s[f'collapse/{arm}_top5_share'] <= 1
        assert s['collapse/threshold'] == pytest.approx(max(2, 0.02 * min(24, dims)))
    log = open(runner.logger.log_file, encoding='utf-8').read()
    assert 'collapse monitor at iter 4: student_rankme' in log
    assert 'may be collapsing' not in log


def test_the_hook_leaves_training_unchanged(runs):
    with_hook, without = (r.model.state_dict() for r in runs[:2])
    assert with_hook.keys() == without.keys()
    for key in with_hook:
        assert torch.equal(with_hook[key], without[key]), key


def test_a_collapsed_model_is_warned_about_once(runs):
    runner = runs[2]
    measured = [s for s in _scalars(runner) if 'collapse/student_rankme' in s]
    assert measured and all(s['collapse/student_rankme'] < 1.01 for s in measured)
    assert all(s['collapse/teacher_rankme'] < 1.01 for s in measured)
    log = open(runner.logger.log_file, encoding='utf-8').read()
    assert log.count('the features may be collapsing: student_rankme, teacher_rankme') == 1
