"""Read what mmengine wrote into a work dir: training scalars, evaluation metrics, progress.

mmengine's ``Runner`` gives every launch its own ``<work_dir>/<timestamp>/`` folder:

- training and validation: ``<timestamp>/vis_data/scalars.json``, one JSON object per line
  (train lines hold ``loss*``, ``lr``, ``iter``/``epoch``, ``step``; validation lines hold the
  evaluator's metrics such as ``accuracy/top1``, ``coco/bbox_mAP``, ``mIoU`` and ``step``);
- ``tools/test.py``: ``<timestamp>/<timestamp>.json``, one JSON object with the test metrics;
- the config as run: ``<work_dir>/<config name>.py``.

The functions here only read; they are shared by :mod:`hvp_mtl.apis.paper_tables`
(``tools/benchmark_tables.py``), :mod:`hvp_mtl.apis.loss_curves`
(``tools/analysis_tools/plot_loss_curves.py``) and the demo's tables.
"""
import json
import os.path as osp
import re
from glob import glob

TIMESTAMP = re.compile(r'^\d{8}_\d{6}$')


def launch_dirs(work_dir):
    """Timestamped launch folders of a work dir, oldest first.

    Args:
        work_dir (str): A run's work dir.

    Returns:
        list[str]: Paths of ``<work_dir>/<YYYYMMDD_HHMMSS>`` folders, sorted by time.
    """
    found = [
        d for d in glob(osp.join(work_dir, '*'))
        if osp.isdir(d) and TIMESTAMP.match(osp.basename(d))
    ]
    return sorted(found, key=osp.basename)


def read_json_lines(path):
    """Parse a JSON-lines file; a line cut short by a killed run is skipped.

    Args:
        path (str): File with one JSON object per line.

    Returns:
        list[dict]: The parsed records, in file order.
    """
    records = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # the last line of a run killed mid-write
    return records


def strip_mode_prefix(key):
    """``val/accuracy/top1`` -> ``accuracy/top1`` (runs logged with ``log_with_hierarchy``)."""
    for prefix in ('val/', 'test/', 'train/'):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def training_records(work_dir):
    """Training-iteration scalars of every launch (a resumed run continues the series).

    Args:
        work_dir (str): A run's work dir.

    Returns:
        list[dict]: Records with a ``loss`` key, ordered by launch then line.
    """
    records = []
    for launch in launch_dirs(work_dir):
        path = osp.join(launch, 'vis_data', 'scalars.json')
        if osp.isfile(path):
            records += [{
                strip_mode_prefix(k): v
                for k, v in r.items()
            } for r in read_json_lines(path) if any('loss' in k for k in r)]
    return records


def evaluations(work_dir):
    """All evaluation results of a work dir, oldest first.

    Validation results come from ``scalars.json`` lines without a loss; test results from the
    ``<timestamp>.json`` that ``tools/test.py`` writes.

    Args:
        work_dir (str): A run's work dir.

    Returns:
        list[dict]: ``{'kind': 'val'|'test', 'launch': timestamp, 'step': int|None,
        'metrics': {name: value}}`` in time order.
    """
    results = []
    for launch in launch_dirs(work_dir):
        stamp = osp.basename(launch)
        scalars = osp.join(launch, 'vis_data', 'scalars.json')
        if osp.isfile(scalars):
            for record in read_json_lines(scalars):
                if any('loss' in k for k in record) or 'lr' in record:
                    continue
                metrics = {
                    strip_mode_prefix(k): v
                    for k, v in record.items()
                    if k not in ('step', 'time',
                                 'data_time') and not k.endswith(('/time', '/data_time'))
                }
                if metrics:
                    results.append(
                        dict(kind='val', launch=stamp, step=record.get('step'), metrics=metrics))
        test_json = osp.join(launch, f'{stamp}.json')
        if osp.isfile(test_json):
            try:
                with open(test_json, encoding='utf-8') as f:
                    record = json.load(f)
            except json.JSONDecodeError:
                continue
            metrics = {
                strip_mode_prefix(k): v
                for k, v in record.items()
                if isinstance(v, (int, float)) and not k.endswith(('time', 'data_time'))
            }
            if metrics:
                results.append(dict(kind='test', launch=stamp, step=None, metrics=metrics))
    return results


def latest_metric(work_dir, key):
    """The most recent evaluation value of ``key`` (test results win over older validations).

    Args:
        work_dir (str): A run's work dir.
        key (str): Metric name as the evaluator logs it, e.g. ``'coco/bbox_mAP'``.

    Returns:
        tuple[float | None, dict | None]: The value and the evaluation record it came from.
    """
    for record in reversed(evaluations(work_dir)):
        if key in record['metrics'] and isinstance(record['metrics'][key], (int, float)):
            return float(record['metrics'][key]), record
    return None, None


def dumped_config(work_dir):
    """The config file the Runner dumped into the work dir (``None`` when there is none)."""
    configs = sorted(glob(osp.join(work_dir, '*.py')), key=osp.getmtime)
    return configs[-1] if configs else None


def planned_length(work_dir):
    """``('epoch', max_epochs)`` / ``('iter', max_iters)`` from the dumped config, or ``None``."""
    path = dumped_config(work_dir)
    if path is None:
        return None
    try:
        from mmengine.config import Config
        train_cfg = Config.fromfile(path, import_custom_modules=False).get('train_cfg') or {}
    except Exception:  # a config that no longer parses: progress unknown, not an error
        return None
    if 'max_epochs' in train_cfg:
        return 'epoch', int(train_cfg['max_epochs'])
    if 'max_iters' in train_cfg:
        return 'iter', int(train_cfg['max_iters'])
    return None


def progress(work_dir):
    """How far training got: ``(unit, done, planned)``; ``done``/``planned`` may be ``None``."""
    plan = planned_length(work_dir)
    records = training_records(work_dir)
    unit = plan[0] if plan else ('epoch' if any('epoch' in r for r in records) else 'iter')
    done = max((int(r[unit]) for r in records if unit in r), default=None)
    if unit == 'iter' and done is None and records:
        done = max(int(r.get('step', 0)) for r in records)
    return unit, done, plan[1] if plan else None
