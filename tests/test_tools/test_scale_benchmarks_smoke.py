"""Smoke tests of the full-size-workload benchmarks (issue: the validation
metric, the sampler, tar-shard descriptors) at their smallest settings: the
scripts run as a user runs them and print every row with sane numbers; the
real-size figures are in docs/PERFORMANCE.md."""
import pytest

from tests.helpers.scripts import run_script, table_rows

pytestmark = pytest.mark.slow


@pytest.mark.dist
def test_val_metric_benchmark_equal_map_and_memory_rows():
    out = run_script('tools/perf/val_metric.py', '--images', '64',
                     '--classes', '300', '--dense-fraction', '0.5')
    rows = table_rows(out)
    ours, ours_part, dense_part = (float(v) for v in rows['mAP'][:3])
    assert ours_part == dense_part and 0 < ours <= 100
    assert 'mAP ours - dense @ 32: 0.00e+00' in out
    assert len(rows['peak extra RSS (MB)']) == 5


def test_sampler_benchmark_same_order_and_smaller():
    out = run_script('tools/perf/sampler_memory.py', '--samples',
                     '200000', '--world-size', '4')
    rows = table_rows(out)
    ours, before = (float(v) for v in rows['peak extra RSS per rank (MB)'][:2])
    assert ours < before
    assert 'same order: yes (50,000 indices per rank)' in out


def test_tar_shard_benchmark_lru_holds_and_unbounded_fails():
    out = run_script('tools/perf/tar_shard_fds.py', '--shards', '200',
                     '--nofile', '64', '--reads', '800', '--workers', '2',
                     '--lru', '16')
    rows = table_rows(out)
    assert rows['reads done'][0] == '800' and rows['error'][0] == 'none'
    assert int(rows['max open shard fds in a worker'][0]) <= 16
    assert 'DataEnvironmentError' in rows['error'][1]
