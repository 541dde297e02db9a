"""The fine-tune study of the evidence protocol: its rendering, and one real tiny run of its three
phases (schedule rule, lr selection on the held-out part of train, finals on val)."""
import glob
import json
import os
import os.path as osp
import shutil

import pytest
from mmengine.config import Config

from hvp_mtl.apis.demo import Demo
from hvp_mtl.apis.demo.arms import arm_probe, prepare_arm
from hvp_mtl.apis.demo.finetune_protocol import choose_schedule
from hvp_mtl.apis.demo.finetune_report import plot_finetune_curves, render_finetune_study
from hvp_mtl.apis.demo.finetune_reuse import ReusedStudy
from hvp_mtl.apis.demo.finetune_seeds import combine_finetune_studies
from hvp_mtl.apis.demo.finetune_study import StudyPlan, run_dir, run_finetune_study
from hvp_mtl.apis.demo.headline import headline_choices, run_headline
from hvp_mtl.apis.demo.report import render_results_file


def _row(val, lr, grid):
    return dict(val_top1=val, lr=lr, grid=grid)


def _study():
    grid = {'0.0003': 40.0, '0.001': 45.0, '0.003': 42.0}
    probe = dict(rankme=6.5, top5_share=0.977, colour_top2_r2=0.949, colour_total_r2=0.856,
                 linear=52.75, knn_raw=30.5, knn_whitened=53.75)
    return dict(command='python demo/run_demo.py --finetune-study', commit='abcdef0123456',
                study=dict(seed=0, schedule_lr=1e-3, arms=dict(random='random init',
                                                               hvp='HVP-MTL (EMA teacher)'),
                           schedule=dict(heldout={'16': 60.0, '32': 66.5, '64': 67.0}, epochs=32,
                                         why='64 epochs gain 0.50 < 1 points over 32'),
                           curves=dict(random={'16': [20.0, 30.0]}, hvp={'16': [25.0, 31.0]}),
                           probes=dict(random=None, hvp=probe),
                           regimes=dict(low10=dict(label='10 images per class',
                                                   random=_row(30.0, 0.001, grid),
                                                   hvp=_row(27.5, 0.003, grid)))))


def test_the_study_file_renders_its_rule_rows_and_difference(tmp_path):
    text = render_results_file(_study())
    assert text == render_finetune_study(_study())
    assert 'chosen: **32** epochs (64 epochs gain 0.50 < 1 points over 32)' in text
    assert ('| 10 images per class | HVP-MTL (EMA teacher) | 27.50 | -2.50 | 0.003 | 0.0003: '
            '40.00, 0.001: 45.00, 0.003: 42.00 |') in text
    assert '| 10 images per class | random init | 30.00 | - | 0.001 |' in text
    assert '| HVP-MTL (EMA teacher) | 6.5 | 0.977 | 0.949 | 0.856 | 52.75 | 30.50 | 53.75 |' in text
    assert '| random init | not run |' in text
    assert 'commit abcdef0123' in text
    out = plot_finetune_curves(_study(), str(tmp_path / 'curves.png'))
    assert osp.getsize(out) > 1000


def _dumped(work):
    return Config.fromfile(sorted(glob.glob(osp.join(work, '*.py')))[-1])


TINY_PLAN = StudyPlan(schedules=(2, 3), lr_grid=(1e-3, ), low_label=(2, ), pretrain_iters=2)


@pytest.fixture(scope='module')
def tiny_study(tmp_path_factory):
    """One real tiny study (random init, HVP-MTL) of the three phases."""
    root = tmp_path_factory.mktemp('study')
    demo = Demo(str(root / 'work'), str(root / 'data'), 'tiny')
    return demo, run_finetune_study(demo, 0, plan=TINY_PLAN)


@pytest.mark.slow
@pytest.mark.integration
def test_a_tiny_study_chooses_on_held_out_and_evaluates_the_finals_on_val(tiny_study):
    plan = TINY_PLAN
    demo, found = tiny_study
    work = demo.work_dir
    rule = found['schedule']['heldout']
    assert found['schedule']['epochs'] == choose_schedule(rule)[0]
    epochs = found['schedule']['epochs']
    assert [len(c) for c in found['curves']['random'].values()] == [2, 3]  # held-out every epoch
    lpft = run_dir(work, 0, 'random', 'lpft', 'select', 1e-3, epochs)
    assert _dumped(lpft).train_cfg.val_interval == epochs  # the grid's runs: at the end
    assert len(found['curves']['hvp'][3]) == 3
    assert set(found['regimes']) == {'full', 'low2', 'lpft'}
    held = osp.join(work, 'finetune_study', 'seed_0', 'splits', 'held.txt')
    for regime, rows in found['regimes'].items():
        for arm in ('random', 'hvp'):
            assert rows[arm]['lr'] == 1e-3 and 0 <= rows[arm]['val_top1'] <= 100
            select = _dumped(run_dir(work, 0, arm, regime, 'select', 1e-3, epochs))
            final = _dumped(run_dir(work, 0, arm, regime, 'final', 1e-3, epochs))
            # choices on the held-out part of train; the finals once on val, never on held-out
            assert select.val_dataloader.dataset.ann_file == held
            assert select.val_dataloader.dataset.data_prefix == 'train'
            assert final.val_dataloader.dataset.ann_file == 'meta/val.txt'
            train = osp.basename(final.train_dataloader.dataset.ann_file)
            assert train == {'low2': 'low2.txt'}.get(regime, 'train.txt')
            assert osp.basename(select.train_dataloader.dataset.ann_file) == (
                'low2.txt' if regime == 'low2' else 'fit.txt')
            if regime == 'lpft':
                assert final.load_from.startswith(
                    run_dir(work, 0, arm, regime, 'final', 1e-3, epochs) + '_lp')
    fit = open(osp.join(osp.dirname(held), 'fit.txt')).read().split()[::2]
    assert not set(fit) & set(open(held).read().split()[::2])
    assert json.dumps(found)  # a results file can hold it
    # the headline (make demo) takes the study's choices and reruns its final runs: same rows
    choices = headline_choices(combine_finetune_studies([dict(study=found)]), 0, 'low2')
    assert choices['epochs'] == epochs and choices['lr'] == dict(random=1e-3, hvp=1e-3)
    for arm in ('random', 'hvp'):
        shutil.rmtree(run_dir(work, 0, arm, 'low2', 'final', 1e-3, epochs))
    demo.requested.clear()
    headline = run_headline(demo, 0, choices, plan, 'low2')
    assert [s for s in demo.requested if ' final ' in s] == [
        f'ft s0 {arm} low2 final lr0.001 e{epochs}' for arm in ('random', 'hvp')]
    assert 'cause s0 full pretrain' in demo.requested  # found done: its times are recorded
    row = headline['finetune_seeds']['tables']['finetune']['rows'][0]
    assert row['values'] == {arm: [found['regimes']['low2'][arm]['val_top1']]
                             for arm in ('random', 'hvp')}
    assert "seed 0's own choices" in render_results_file(headline)


@pytest.mark.slow
@pytest.mark.integration
def test_an_arm_added_to_a_finished_study_runs_only_its_own_runs(tiny_study, tmp_path):
    """--reuse: a new work dir, the finished study's file: random init's and HVP-MTL's runs
    are not made again, the new arm's are, by the same rules; the output names the file."""
    demo, found = tiny_study
    path = tmp_path / 'finetune_seed0.json'
    path.write_text(json.dumps(dict(commit='abc1234', study=found)))
    plan = TINY_PLAN._replace(arms=('random', 'hvp', 'wo_mim'))
    reused = ReusedStudy.load(str(path), 0, plan)
    extended = Demo(str(tmp_path / 'work'), demo.data, 'tiny')
    out = run_finetune_study(extended, 0, plan=plan, reused=reused)
    study = osp.join(extended.work_dir, 'finetune_study', 'seed_0')
    assert sorted(p for p in os.listdir(study) if p != 'splits') == ['wo_mim']
    assert not osp.isdir(osp.join(extended.work_dir, 'cause', 'seed_0', 'full'))
    epochs = out['schedule']['epochs']
    assert (out['schedule'], epochs) == (found['schedule'], found['schedule']['epochs'])
    for regime, rows in out['regimes'].items():
        for arm in ('random', 'hvp'):
            assert rows[arm] == json.loads(json.dumps(found['regimes'][regime][arm]))
        row = rows['wo_mim']
        assert row['lr'] == 1e-3 and 0 <= row['val_top1'] <= 100
        assert osp.isdir(run_dir(extended.work_dir, 0, 'wo_mim', regime, 'final', 1e-3, epochs))
    assert out['probes']['wo_mim']['rankme'] >= 1.0
    assert out['reused'] == dict(file=str(path), commit='abc1234', arms=['random', 'hvp'])
    text = render_finetune_study(dict(study=out))
    assert f'from `{path}` (commit abc1234)' in text and '| HVP-MTL w/o MIM' in text


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize('arm', ['simmim', 'swav'])
def test_mmpretrain_peers_pretrain_export_and_probe_on_the_demo_backbone(tmp_path, arm):
    """mmpretrain's own algorithm through its inherited config: a real pre-training, the export
    loads into the demo's classification backbone (the probe builds it), its probe rows."""
    demo = Demo(str(tmp_path / 'work'), str(tmp_path / 'data'), 'tiny')
    demo.make_world()
    backbone = prepare_arm(demo, 0, arm, 2)
    probe = json.loads(open(arm_probe(demo.work_dir, 0, arm, 2)).read())
    assert probe['checkpoint'] == backbone
    assert probe['representation']['rankme'] >= 1.0 and 0 <= probe['linear']['top1'] <= 100
