"""The main job end to end at its smallest size, with two seeds and both pre-trainings: generate
the world, pre-train HVP-MTL and MCL, export, fine-tune and evaluate in mmpretrain, mmdet and
mmseg from each export and from random init, probe the frozen features, and write one results
file whose numbers are the ones the evaluation runs logged, per seed."""
import json
import pathlib
import re
import subprocess
import sys

import pytest

from hvp_mtl.apis.demo.table import DEMO_METRICS, finetune_dir, probe_file, seed_dir
from hvp_mtl.apis.work_dir_logs import evaluations

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEEDS = (0, 1)
INITS = ('hvp', 'mcl', 'random')

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _demo(work_dir, data_root, timeout=1500):
    """Run the tiny demo; on a timeout SIGTERM lets it stop its running stage first."""
    cmd = [sys.executable, str(ROOT / 'demo' / 'run_demo.py'), '--size', 'tiny', '--seeds',
           str(len(SEEDS)), '--method', 'both', '--work-dir', str(work_dir), '--data-root',
           str(data_root)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=60)
        pytest.fail(f'the tiny demo took over {timeout} s:\n{stdout[-3000:]}')
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('demo')
    proc = _demo(tmp / 'work', tmp / 'data')
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return tmp, proc.stdout


def test_every_number_is_the_one_its_run_logged_per_seed(demo):
    tmp, stdout = demo
    work = tmp / 'work'
    results = json.loads((work / 'results.json').read_text())
    assert results['seeds'] == list(SEEDS) and re.fullmatch(r'[0-9a-f]{40}', results['commit'])
    assert results['command'].startswith('python demo/run_demo.py --size tiny')
    table = results['tables']['main']
    assert list(table['arms']) == list(INITS)
    assert table['comparisons'] == [['hvp', 'random'], ['mcl', 'random']]
    rows = {(r['toolkit'], r['model'], r['metric']): r for r in table['rows']}
    assert len(rows) == len(DEMO_METRICS)
    for task, toolkit, model, metric, key, scale in DEMO_METRICS:
        row = rows[(toolkit, model, metric)]
        for init in INITS:
            assert len(row['values'][init]) == len(SEEDS)
            for seed, value in zip(SEEDS, row['values'][init]):
                assert value is not None and 0.0 <= value <= 100.0, (row, init, seed)
                if task == 'probe':
                    probe = json.loads(pathlib.Path(probe_file(str(work), init, seed)).read_text())
                    logged = probe[key.split('/')[0]]['top1']
                else:  # the toolkit's evaluator ran once, at the end of each fine-tune
                    evals = evaluations(finetune_dir(str(work), task, init, seed))
                    assert len(evals) == 1 and evals[0]['kind'] == 'val', (task, init, seed)
                    logged = evals[0]['metrics'][key] * scale
                assert value == pytest.approx(logged)
    text = (work / 'results.md').read_text()
    assert text in stdout  # what is printed is what is written
    assert re.search(r'\d+\.\d\d ± \d+\.\d\d \(n = 2\)', text)
    assert re.search(r'helped|hurt|within seed spread', text)
    assert (work / 'main_chart.png').stat().st_size > 5_000


def test_the_seed_reaches_every_run(demo):
    tmp, _ = demo
    work = tmp / 'work'
    for seed in SEEDS:
        runs = [pathlib.Path(seed_dir(str(work), seed)) / f'pretrain_{m}' for m in ('hvp', 'mcl')]
        runs += [pathlib.Path(finetune_dir(str(work), t, i, seed)) for t in ('cls', 'det', 'seg')
                 for i in INITS]
        for run in runs:
            dumped = sorted(run.glob('*.py'))
            assert dumped and f'seed={seed}' in dumped[-1].read_text(), run
    # a different seed is a different random initialisation
    random_rows = [r['values']['random'] for r in
                   json.loads((work / 'results.json').read_text())['tables']['main']['rows']]
    assert any(v[0] != v[1] for v in random_rows)


def test_every_stage_ran_as_a_logged_subprocess(demo):
    tmp, stdout = demo
    work = tmp / 'work'
    stages = json.loads((work / 'stages.json').read_text())
    expected = ['data']
    for seed in SEEDS:
        expected += [f's{seed} {s} {m}' for m in ('hvp', 'mcl') for s in ('pretrain', 'export')]
        expected += [f's{seed} {t} {i}' for t in ('cls', 'probe', 'det', 'seg') for i in INITS]
    for stage in expected:
        assert stages[stage]['wall'] > 0 and stages[stage]['cpu'] > 0, stage
        log = (work / 'logs' / (stage.replace(' ', '_') + '.log')).read_text()
        assert log.startswith('+ ') and re.search(r'(tools|demo)/', log.splitlines()[0])
    for seed in SEEDS:
        hvp_log = (work / 'logs' / f's{seed}_pretrain_hvp.log').read_text()
        for task in ('loss_mlc', 'loss_swav', 'loss_mim', 'loss_distill'):
            assert task in hvp_log  # every objective is trained and logged
        assert 'loss_q_level_3' in (work / 'logs' / f's{seed}_pretrain_mcl.log').read_text()
        for task in ('det', 'seg'):  # MCL's export loads completely into mmdet and mmseg
            log = (work / 'logs' / f's{seed}_{task}_mcl.log').read_text()
            assert re.search(r'Pretrained load check: (\d+)/\1 tensors of model.backbone '
                             r'loaded from \S+backbone_mcl.pth \(100.0%\)', log), task
    assert 's0 pretrain hvp' in stdout and '####' in stdout  # the progress bar
    assert (work / 'pretrain_loss_curves.png').stat().st_size > 10_000
    assert (work / 'pretrain_mim.png').stat().st_size > 10_000


def test_a_second_run_resumes_and_reprints_the_same_table(demo):
    tmp, _ = demo
    before = json.loads((tmp / 'work' / 'results.json').read_text())
    proc = _demo(tmp / 'work', tmp / 'data')
    assert proc.returncode == 0, proc.stderr[-3000:]
    # every stage: data, 2 x (2 pre-trainings + 2 exports + 12 fine-tunes/probes), 2 figures
    assert proc.stdout.count('already done') == 1 + len(SEEDS) * 16 + 2
    after = json.loads((tmp / 'work' / 'results.json').read_text())
    assert after['tables'] == before['tables'] and after['stages'] == before['stages']


def test_objectives_of_every_hvp_pretraining_reach_the_results(demo):
    tmp, stdout = demo
    results = json.loads((tmp / 'work' / 'results.json').read_text())
    runs = results['objectives']
    assert list(runs) == ['main/hvp']  # MCL's objective is not one of the four
    objectives = runs['main/hvp']['objectives']
    assert set(objectives) == {'mim', 'swav', 'mlc', 'distill'}
    for task, entry in objectives.items():
        assert len(entry['end']) == len(SEEDS) and all(v is not None for v in entry['end'])
        assert all(isinstance(v, bool) for v in entry['learned']), task
        history = json.loads(pathlib.Path(seed_dir(str(tmp / 'work'), 1), 'pretrain_hvp',
                                          'objectives.json').read_text())
        assert entry['end'][1] == history[-1]['objectives'][task]['value']
        assert history[0]['step'] == 0 and history[-1]['step'] == 4  # the tiny size's 4
    text = (tmp / 'work' / 'results.md').read_text()
    assert 'Pre-training objectives on held-out images against their trivial baselines' in text


def test_init_diagnostics_and_remedies_on_the_demo_export(demo):
    """The diagnostics tool and the two remedies on the tiny demo's export (real files)."""
    import torch

    from hvp_mtl.apis.init_diagnostics import diagnose
    from hvp_mtl.apis.init_remedies import (
        load_backbone,
        random_backbone_state,
        reinit_stages,
        shrink_perturb,
    )
    tmp, _ = demo
    config = str(ROOT / 'configs' / 'demo' / 'swin-demo_cls.py')
    cls_root = str(tmp / 'data' / 'cls') + '/'
    options = {f'{s}_dataloader.dataset.data_root': cls_root for s in ('train', 'val', 'test')}
    export = str(pathlib.Path(seed_dir(str(tmp / 'work'), 0), 'backbone_hvp.pth'))
    out = tmp / 'diag.json'
    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / 'analysis_tools' /
                                               'init_diagnostics.py'), config, '--init', 'random',
                           '--init', f'hvp={export}', '--out', str(out), '--cfg-options',
                           *[f'{k}={v}' for k, v in options.items()]],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'stage 3 effective rank' in proc.stdout
    result = json.loads(out.read_text())
    assert result == diagnose(config, dict(random=None, hvp=export), 0, options)  # seeded
    for init in ('random', 'hvp'):
        assert len(result[init]['features']) == 4 and result[init]['grad_norms']['head'] > 0
    # the remedies: identity, the random init itself, and stages replaced
    state, _ = load_backbone(export)
    reference = random_backbone_state(config, 0, options)
    same = shrink_perturb(state, reference, 1.0, 0.0)
    assert all(torch.equal(same[k], state[k]) for k in state)
    fresh = shrink_perturb(state, reference, 0.0, 1.0)
    assert all(torch.equal(fresh[k], reference[k]) for k in state if state[k].is_floating_point())
    diag_random = result['random']['weights']
    re4 = reinit_stages(state, reference, 4)
    assert all(torch.equal(re4[k], reference[k]) for k in state if '.stages.' in k)
    assert all(torch.equal(re4[k], state[k]) for k in state if k.startswith('backbone.patch_embed'))
    assert diag_random[0]['ln_gain'] == 1.0  # LayerNorms of a random init: gamma 1
