"""The main job end to end at its smallest size: generate the world, pre-train HVP-MTL, export,
fine-tune and evaluate in mmpretrain, mmdet and mmseg from the export and from random init, and
print one table whose numbers are the ones the evaluation runs logged."""
import json
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tools' / 'analysis_tools'))
from demo_table import DEMO_METRICS, INITS, finetune_dir  # noqa: E402
from work_dir_logs import evaluations  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _demo(work_dir, data_root, timeout=840):
    """Run the tiny demo; on a timeout SIGTERM lets it stop its running stage first."""
    cmd = [sys.executable, str(ROOT / 'tools' / 'run_demo.py'), '--size', 'tiny',
           '--work-dir', str(work_dir), '--data-root', str(data_root)]
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


def test_table_has_a_measured_number_per_toolkit_and_init(demo):
    tmp, stdout = demo
    work = tmp / 'work'
    table = (work / 'results.md').read_text()
    assert table in stdout  # what is printed is what is written
    results = json.loads((work / 'results.json').read_text())
    assert {e['toolkit'] for e in results['downstream']} == {'mmpretrain', 'mmdet', 'mmseg'}
    for entry in results['downstream']:
        for init, _ in INITS:
            value = entry[init]
            assert value is not None and 0.0 <= value <= 100.0, (entry, init)
            row = next(line for line in table.splitlines() if line.startswith(
                f'| {entry["toolkit"]} | {entry["model"]} | {entry["metric"]} |'))
            assert f'{value:.2f}' in row
    # the numbers are those the toolkit's evaluator logged (once, at the end of each fine-tune)
    for task, toolkit, _, metric, key, scale in DEMO_METRICS:
        for init, _ in INITS:
            evals = evaluations(finetune_dir(str(work), task, init))
            assert len(evals) == 1 and evals[0]['kind'] == 'val', (task, init)
            logged = evals[0]['metrics'][key] * scale
            entry = next(e for e in results['downstream']
                         if e['toolkit'] == toolkit and e['metric'] == metric)
            assert entry[init] == pytest.approx(logged)
    assert re.search(r'pre-training (helped|did not help)|no difference', stdout)


def test_every_stage_ran_as_a_logged_subprocess(demo):
    tmp, stdout = demo
    work = tmp / 'work'
    stages = json.loads((work / 'stages.json').read_text())
    expected = ['data', 'pretrain', 'export'
                ] + [f'{t} {i}' for t in ('cls', 'det', 'seg') for i in ('hvp', 'random')]
    for stage in expected:
        assert stages[stage] > 0 and stages[f'{stage} (cpu)'] > 0, stage
        log = (work / 'logs' / (stage.replace(' ', '_') + '.log')).read_text()
        assert log.startswith('+ ') and 'tools/' in log.splitlines()[0]
    pretrain_log = (work / 'logs' / 'pretrain.log').read_text()
    for task in ('loss_mlc', 'loss_swav', 'loss_mim', 'loss_distill'):
        assert task in pretrain_log  # every objective is trained and logged
    assert 'pretrain' in stdout and '####' in stdout  # the progress bar
    assert (work / 'backbone.pth').is_file()
    assert (work / 'pretrain_loss_curves.png').stat().st_size > 10_000
    assert (work / 'pretrain_mim.png').stat().st_size > 10_000


def test_a_second_run_resumes_and_reprints_the_same_table(demo):
    tmp, _ = demo
    before = (tmp / 'work' / 'results.md').read_text()
    proc = _demo(tmp / 'work', tmp / 'data')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('already done') == 11  # every stage, figures included
    assert (tmp / 'work' / 'results.md').read_text() == before
