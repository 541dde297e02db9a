"""Smoke tests of the performance benchmarks (smallest settings, 1-2 steps).

They run the scripts as a user does and check that every case is measured
and every table row and ratio line is printed with finite numbers; the
numbers themselves are hardware-dependent and live in docs/PERFORMANCE.md.
"""
import json
import math
import os
import re
import subprocess
import sys

import pytest

from tests.helpers.scripts import ROOT, run_script, table_rows

pytestmark = pytest.mark.slow

STEP_CASES = ('full', 'no-mlc', 'no-swav', 'no-mim', 'no-distill', 'floor', 'simmim',
              'montage', 'grad-share', 'collapse-monitor')


def test_step_benchmark_prints_every_case_and_ratio(tmp_path):
    result_file = tmp_path / 'step.json'
    stdout = run_script('tools/perf/step.py', '--backbone', 'tiny', '--batch', '2',
                        '--size', '64', '--num-classes', '24', '--iters', '2',
                        '--warmup', '0', '--threads', '1', '--clock', 'cpu',
                        '--monitor-images', '6', '--json', str(result_file))
    rows = table_rows(stdout)
    assert set(STEP_CASES) <= set(rows), stdout
    for case in STEP_CASES:
        median_ms, _, images_per_s, peak_mib, persistent_mib = rows[case]
        assert float(median_ms) > 0 and float(images_per_s) > 0
        assert float(peak_mib) >= 0 and float(persistent_mib) > 0
    for label in ('(a)/(c) full / backbone floor', '(a)/(d) per view',
                  'multi-label decoder + loss (C=24)', 'share of the full step: swav',
                  'share of the full step: mim', 'full + montage task / full', 'paper run'):
        assert label in stdout, stdout
    ratio = re.search(r'\(a\)/\(c\) full / backbone floor\s+([0-9.]+)', stdout)
    assert ratio and math.isfinite(float(ratio.group(1))) and float(ratio.group(1)) > 0

    saved = json.loads(result_file.read_text())
    assert set(saved['times']) == set(STEP_CASES)
    assert all(len(v) == 2 for v in saved['times'].values())  # --iters 2 rounds
    # the full model holds more state than the bare-backbone floor
    assert float(rows['full'][4]) > float(rows['floor'][4])
    # the fifth task's cost: the paired ratio against the full step
    montage = re.search(r'full \+ montage task / full\s+([0-9.]+)', stdout)
    assert montage and float(montage.group(1)) > 0
    assert len(saved['ratios']['montage/full']) == 3
    # the gradient-share measurement costs at least the step it measures again
    share = re.search(r'step \+ TaskGradientShareHook measurement / full\s+([0-9.]+)', stdout)
    assert share and float(share.group(1)) > 1, stdout
    assert len(saved['ratios']['grad-share/full']) == 3
    monitor = re.search(r'CollapseMonitorHook measurement \(6 images\) / full\s+([0-9.]+)', stdout)
    assert monitor and float(monitor.group(1)) > 0, stdout


def test_data_pipeline_benchmark_reports_rate_and_cores(tmp_path):
    result_file = tmp_path / 'data_pipeline.json'
    stdout = run_script('tools/perf/data_pipeline.py', '--sets', 'photos,generated-64',
                        '--num-images', '4', '--samples', '4', '--warmup', '1',
                        '--repeats', '1', '--max-short-side', '48',
                        '--work-dir', str(tmp_path), '--json', str(result_file))
    paths = ('reference', 'pre-resized', 'reduced-decode', 'both', 'both, cv2 jitter')
    rows = [[c.strip() for c in line.strip('|').split('|')] for line in stdout.splitlines()
            if line.startswith('| photos') or line.startswith('| generated-64')]
    assert [r[1] for r in rows] == list(paths) * 2, stdout
    for _, path, rate, ratio, cores200, cores400 in rows:
        rate = float(rate.split()[0])
        assert rate > 0 and float(ratio) > 0
        if path == 'reference':
            assert float(ratio) == 1
        assert math.isclose(float(cores200), 200 / rate, rel_tol=0.05, abs_tol=0.1)
        assert math.isclose(float(cores400), 400 / rate, rel_tol=0.05, abs_tol=0.1)
    assert 'views (3, 224, 224), mask (56, 56)' in stdout  # the Swin-B config's views
    stages = table_rows(stdout.split('CPU ms per image by stage')[1])
    for stage in ('LoadImageFromFile', 'LoadImageBytes', 'MultiViewWithMask', 'PackInputs',
                  'view 0: RandomResizedCrop', 'mask: SimMIMMaskGenerator'):
        assert stage in stages, stdout
    saved = json.loads(result_file.read_text())
    assert set(saved['rates']) == {'photos', 'generated-64'}
    assert all(len(saved['rates'][s][p]) == 1 for s in saved['rates'] for p in paths)
    assert saved['sets']['photos']['images'] == 4


def test_gpu_suite_dry_run_on_cpu(tmp_path):
    """tools/perf/gpu_suite.sh --device cpu: every part of the GPU suite at
    tiny sizes (the shipped Swin-B config's run with tiny model overrides)."""
    env = dict(os.environ, PYTHON=sys.executable)
    out = subprocess.run(['bash', 'tools/perf/gpu_suite.sh', '--device', 'cpu',
                          '--results', str(tmp_path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = dict(line[len('SUITE '):].split('=', 1) for line in out.stdout.splitlines()
                 if line.startswith('SUITE ') and '=' in line)
    results = json.loads((tmp_path / 'gpu_suite.json').read_text())
    for case in ('full', 'floor', 'simmim'):
        stats = results['a_eager'][case]
        assert stats['ms_per_step'] > 0 and stats['images_per_s'] > 0, stats
        assert float(lines[f'a_eager.{case}.ms_per_step']) > 0
    assert math.isfinite(results['a_eager']['full/floor']['median'])
    for hook_case in ('grad-share', 'collapse-monitor'):  # eager only: the hooks' cost
        assert results['a_eager'][f'{hook_case}/full']['median'] > 0, results['a_eager']
    assert 'skipped' in results['a_compiled']  # no Inductor build on a CPU
    train = results['c_training']
    assert train['iterations'] == 3 and train['num_classes'] == 11166
    assert train['optim_wrapper'] == 'GuardedAmpOptimWrapper'
    assert train['dtype'] == 'torch.bfloat16'
    checks = results['checks']
    for key in ('training_losses_finite', 'training_no_skipped_step',
                'training_teacher_moved', 'training_no_loss_scaler', 'sdpa_all_4d'):
        assert checks[key] is True, (key, results)
    assert results['b_sdpa']['qkv_rank_counts'] == {'4': sum(
        results['b_sdpa']['sdpa_backends'].values())}
    hours = results['d_projection']['a_eager.full']['hours_30ep_64gpu']
    rate = results['a_eager']['full']['images_per_s']
    assert hours == pytest.approx(30 * 17.6e6 / (64 * rate) / 3600)


@pytest.mark.dist
def test_ddp_find_unused_comparison_runs(tmp_path):
    stdout = run_script('tools/perf/ddp_unused.py', '--backbone', 'tiny',
                        '--iters', '2', '--warmup', '0', '--num-classes', '24')
    rows = table_rows(stdout)
    for flag in ('True', 'False'):
        assert float(rows[f'find_unused_parameters={flag}'][0]) > 0
    ratio = re.search(r'ratio True / False: ([0-9.]+)', stdout)
    assert ratio and float(ratio.group(1)) > 0
