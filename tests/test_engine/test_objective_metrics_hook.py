"""ObjectiveMetricsHook in a real Runner pre-training: logged, written, and harmless."""
import json
import math

import pytest
import torch
from mmengine.runner import Runner

from hvp_mtl.datasets import TencentMLImages
from hvp_mtl.evaluation.objective_baselines import label_prior_map
from tests.helpers.tiny_configs import DICTIONARY, tiny_pretrain_cfg

pytestmark = pytest.mark.slow


def _train(tmp_path, world, name, with_hook):
    cfg = tiny_pretrain_cfg('swin', tmp_path / name, world / 'pretrain', max_iters=4)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100, by_epoch=False)
    if with_hook:
        cfg.custom_hooks = list(cfg.custom_hooks) + [
            dict(type='ObjectiveMetricsHook', interval=2, batch_size=4)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


@pytest.fixture(scope='module')
def runs(tmp_path_factory, demo_world):
    tmp = tmp_path_factory.mktemp('objectives')
    with_hook = _train(tmp, demo_world, 'hook', True)
    without = _train(tmp, demo_world, 'plain', False)
    return with_hook, without


def test_objectives_file_has_every_task_against_its_baseline(runs, demo_world):
    runner = runs[0]
    with open(f'{runner.work_dir}/objectives.json', encoding='utf-8') as f:
        history = json.load(f)
    assert [e['step'] for e in history] == [0, 2, 4]
    val = TencentMLImages(ann_file='val.txt', data_root=str(demo_world / 'pretrain'),
                          dictionary_file=DICTIONARY, data_prefix='images/')
    targets = torch.stack([torch.from_numpy(val.get_data_info(i)['gt_score']) >= 0.5
                           for i in range(len(val))])
    for entry in history:
        objectives = entry['objectives']
        assert set(objectives) == {'mim', 'swav', 'mlc', 'distill'}
        assert objectives['swav']['baseline'] == pytest.approx(math.log(16))  # 16 prototypes
        assert objectives['mlc']['baseline'] == pytest.approx(label_prior_map(targets))
        assert objectives['mim']['baseline'] > 0 and objectives['distill']['baseline'] >= 0
        for task, value in objectives.items():
            assert math.isfinite(value['value']), task
            assert isinstance(value['learned'], bool)
        assert 0 <= objectives['swav']['prototypes_in_use'] <= 16
        assert 0 <= objectives['swav']['code_entropy'] <= math.log(16) + 1e-6
        assert 'teacher_map' in objectives['mlc'] and 'prior_image_ap' in objectives['mlc']
    # the same held-out views every time: at step 0 the student is the teacher
    first = history[0]['objectives']
    assert first['distill']['value'] == pytest.approx(0.0, abs=1e-6)
    assert first['mlc']['teacher_map'] == pytest.approx(first['mlc']['value'])


def test_objectives_reach_the_log_and_the_scalars(runs):
    runner = runs[0]
    log = open(runner.logger.log_file, encoding='utf-8').read()
    for task in ('mim', 'swav', 'mlc', 'distill'):
        assert f'objective {task} at iter 4:' in log
    scalars = [json.loads(line) for line in open(
        f'{runner.log_dir}/vis_data/scalars.json', encoding='utf-8')]
    steps = {s['step'] for s in scalars if 'objectives/mlc' in s}
    assert steps == {0, 2, 4}


def test_the_hook_leaves_training_unchanged(runs):
    with_hook, without = (r.model.state_dict() for r in runs)
    assert with_hook.keys() == without.keys()
    for key in with_hook:
        assert torch.equal(with_hook[key], without[key]), key
