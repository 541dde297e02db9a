"""The table tool on work dirs written by real mmengine Runners: complete, partial (stopped after
one of three epochs), trained without evaluation, test-only, and missing runs."""
import csv
import os.path as osp
import pathlib
import subprocess
import sys

import pytest
import torch
import yaml
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import DataLoader, TensorDataset

import hvp_mtl.apis.paper_tables as bt
from hvp_mtl.apis.work_dir_logs import read_json_lines

ROOT = pathlib.Path(__file__).resolve().parents[2]

import hvp_mtl  # noqa: E402,F401  (weights_only allow-list, as tools/test.py has it)

TABLES = bt.load_tables()
ROWS = {r['id']: r for t in TABLES for r in t['rows']}


class SignModel(BaseModel):
    """A linear scorer trained to predict the sign of the input sum."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 1)

    def forward(self, inputs, labels, mode='tensor'):
        score = self.fc(inputs).squeeze(1)
        if mode == 'loss':
            loss = torch.nn.functional.binary_cross_entropy_with_logits(score, labels)
            return dict(loss_main=loss, loss_aux=0.1 * score.pow(2).mean())
        return [dict(pred=float(s > 0), gt=float(y)) for s, y in zip(score, labels)]


class SignAccuracy(BaseMetric):
    """Accuracy logged under the given keys, in the evaluator's unit (percent or fraction)."""

    def __init__(self, keys, scale):
        super().__init__()
        self.keys, self.scale, self.history = keys, scale, []

    def process(self, data_batch, data_samples):
        self.results += [float(s['pred'] == s['gt']) for s in data_samples]

    def compute_metrics(self, results):
        acc = sum(results) / len(results) * self.scale
        out = {k: acc for k in self.keys}
        self.history.append(out)
        return out


class StopAfterFirstEpoch(Hook):
    priority = 'LOWEST'  # after the LoggerHook has written the validation scalars

    def after_val_epoch(self, runner, metrics=None):
        raise KeyboardInterrupt('stopped like a preempted job')


def _loader(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(24, 4, generator=g)
    ds = TensorDataset(x, (x.sum(1) > 0).float())
    return DataLoader(ds,
                      batch_size=6,
                      collate_fn=lambda b: dict(inputs=torch.stack([i for i, _ in b]),
                                                labels=torch.stack([y for _, y in b])))


def _run(work_dir, name, metric=None, max_epochs=2, val_interval=1, hooks=()):
    train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=val_interval)
    runner = Runner(model=SignModel(),
                    work_dir=str(work_dir),
                    experiment_name=name,
                    train_dataloader=_loader(0),
                    val_dataloader=_loader(1) if metric else None,
                    val_evaluator=[metric] if metric else None,
                    val_cfg=dict() if metric else None,
                    optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.5)),
                    train_cfg=train_cfg,
                    default_hooks=dict(logger=dict(type='LoggerHook', interval=1)),
                    custom_hooks=list(hooks),
                    cfg=dict(train_cfg=train_cfg),
                    randomness=dict(seed=0))
    runner.train()
    return runner


@pytest.fixture(scope='module')
def work_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp('tables') / 'work_dirs'
    runs = {}
    # Table 2 HVP-MTL row: complete (2/2 epochs, validated every epoch, mmpretrain-style percent).
    cls_metric = SignAccuracy(['accuracy/top1'], 100.)
    done = _run(root / bt.run_name(ROWS['t2.hvp_mtl']), 'complete', cls_metric)
    runs['complete'] = cls_metric.history
    # Table 3 HVP-MTL row: stopped after epoch 1 of 3 (mmdet logs AP as a fraction).
    det_metric = SignAccuracy(['coco/bbox_mAP', 'coco/segm_mAP'], 1.)
    with pytest.raises(KeyboardInterrupt):
        _run(root / bt.run_name(ROWS['t3.hvp_mtl']),
             'partial',
             det_metric,
             max_epochs=3,
             hooks=[StopAfterFirstEpoch()])
    runs['partial'] = det_metric.history
    # Table 4 HVP-MTL row: trained, but never evaluated.
    _run(root / bt.run_name(ROWS['t4.hvp_mtl']), 'noeval', None, max_epochs=1)
    # Somewhere else: tools/test.py-style evaluation of the complete run's checkpoint.
    test_metric = SignAccuracy(['accuracy/top1'], 100.)
    tester = Runner(model=SignModel(),
                    work_dir=str(root.parent / 'elsewhere' / 'sup_in1k'),
                    experiment_name='testonly',
                    test_dataloader=_loader(2),
                    test_evaluator=[test_metric],
                    test_cfg=dict(),
                    load_from=osp.join(done.work_dir, 'epoch_2.pth'),
                    cfg=dict())
    tester.test()
    runs['test'] = test_metric.history
    return root, runs


def _lines(root, **overrides):
    lines = bt.fill_tables(TABLES, [str(root)], overrides)
    return {(l['row_id'], l['metric']): l for l in lines}


@pytest.mark.slow
def test_complete_partial_noeval_missing(work_dirs):
    root, runs = work_dirs
    lines = _lines(root)
    full = lines[('t2.hvp_mtl', 'top-1')]
    assert full['status'] == 'complete'
    assert full['ours'] == pytest.approx(
        runs['complete'][-1]['accuracy/top1'])  # the last validation
    assert full['ours_minus_paper'] == pytest.approx(full['ours'] -
                                                     ROWS['t2.hvp_mtl']['paper']['top-1'])

    box, mask = lines[('t3.hvp_mtl', 'box AP')], lines[('t3.hvp_mtl', 'mask AP')]
    assert box['status'] == 'partial (epoch 1/3)'
    assert box['ours'] == pytest.approx(100 *
                                        runs['partial'][-1]['coco/bbox_mAP'])  # fraction -> AP
    assert mask['paper'] == 'not stated' and mask['ours_minus_paper'] == ''

    seg = lines[('t4.hvp_mtl', 'mIoU')]
    assert seg[
        'status'] == 'complete' and seg['ours'] == 'no evaluation yet'  # trained, not evaluated
    for row_id in ('t6.hvp_mtl_swin-t', 't5.wo_mim', 't1.dino'):
        line = next(l for k, l in lines.items() if k[0] == row_id)
        assert line['status'] == 'not run' and line['ours'] == 'not run' and line['work_dir'] == ''


@pytest.mark.slow
def test_run_override_points_a_row_at_a_test_only_run(work_dirs):
    root, runs = work_dirs
    lines = _lines(root, **{'t1.supervised_in1k': str(root.parent / 'elsewhere' / 'sup_in1k')})
    line = lines[('t1.supervised_in1k', 'top-1')]
    assert line['status'] == 'evaluated'
    assert line['ours'] == pytest.approx(runs['test'][-1]['accuracy/top1'])
    assert line['paper'] == ROWS['t1.supervised_in1k']['paper']['top-1']


def test_paper_column_holds_only_the_numbers_the_paper_states():
    stated = {(r, m): v for r, row in ROWS.items() for m, v in (row.get('paper') or {}).items()}
    assert stated == {
        ('t1.hvp_mtl', 'top-1'): 84.2,
        ('t1.supervised_in1k', 'top-1'): 81.8,
        ('t1.supervised_jft300m', 'top-1'): 84.2,
        ('t2.hvp_mtl', 'top-1'): 85.3,
        ('t2.supervised_in1k', 'top-1'): 83.3,
        ('t3.hvp_mtl', 'box AP'): 47.9,
        ('t3.supervised_in22k', 'box AP'): 46.9,
        ('t4.hvp_mtl', 'mIoU'): 50.6
    }
    assert {t['id'] for t in TABLES} == {1, 2, 3, 4, 5, 6}
    for row in ROWS.values():
        for ref in (row.get('reference') or {}).values():
            assert isinstance(ref['value'], float) and ref['source']


@pytest.mark.slow
def test_cli_writes_markdown_and_csv(work_dirs, tmp_path):
    root, runs = work_dirs
    md, out_csv = tmp_path / 'tables.md', tmp_path / 'tables.csv'
    cmd = [sys.executable, str(ROOT / 'tools' / 'benchmark_tables.py'), '--work-dirs', str(root),
           '--run', f't1.supervised_in1k={root.parent / "elsewhere" / "sup_in1k"}',
           '--out-md', str(md), '--out-csv', str(out_csv)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = md.read_text()
    for table_id in range(1, 7):
        assert f'### Table {table_id}:' in text
    rows = list(csv.DictReader(out_csv.open()))
    by_key = {(r['row_id'], r['metric']): r for r in rows}
    ours = float(by_key[('t2.hvp_mtl', 'top-1')]['ours'])
    assert ours == pytest.approx(runs['complete'][-1]['accuracy/top1'], abs=1e-4)
    assert by_key[('t5.wo_mim', 'top-1')]['paper'] == 'not stated'
    assert by_key[('t6.supervised_swin-s', 'top-1')]['ours'] == 'not run'
    assert f'| {ROWS["t2.hvp_mtl"]["name"]} | top-1 | 85.3 |' in text
    assert 'partial (epoch 1/3)' in text and 'not run' in text and 'not stated' in text


def test_cli_rejects_an_unknown_row(tmp_path):
    cmd = [sys.executable, str(ROOT / 'tools' / 'benchmark_tables.py'), '--work-dirs',
           str(tmp_path), '--run', f'nope={tmp_path}']
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and 'nope' in proc.stderr


def test_bad_table_file_names_file_and_row(tmp_path):
    bad = tmp_path / 'tables.yml'
    data = yaml.safe_load((ROOT / 'tools' / 'paper_tables.yml').read_text())
    data['tables'][2]['rows'][0]['paper'] = {'AP50': 70.0}
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=r'tables\.yml: table 3, row .t3\.hvp_mtl.*AP50'):
        bt.load_tables(str(bad))


def test_a_line_cut_by_a_killed_run_is_skipped(tmp_path):
    path = tmp_path / 'scalars.json'
    path.write_text('{"loss": 1.0, "step": 1}\n{"loss": 0.5, "step": 2}\n{"loss": 0.4, "st')
    assert [r['step'] for r in read_json_lines(str(path))] == [1, 2]
