"""The results of a ``demo/run_demo.py`` work dir, read back from its runs' evaluation logs.

Layout of a demo work dir (:mod:`.runner` writes it; this module only reads)::

    seed_<s>/<group>/pretrain_<method>/     pre-training run (method hvp | mcl)
    seed_<s>/<group>/backbone_<method>.pth  its exported backbone
    seed_<s>/<group>/finetune/<task>_<init>/ fine-tune runs, task cls|det|seg, init hvp|mcl|random
    seed_<s>/<group>/probe_<init>.json      linear probe and kNN on frozen features
    stages.json                             wall and CPU time of every stage

``group`` is ``main`` (the demo), ``ablation_<variant>`` (Table 5: pre-training without one
task) or ``size_<arch>`` (Table 6: another backbone size). Every number comes from the logs and
files the runs wrote (their last evaluation), never from memory.
"""
import json
import os.path as osp

from hvp_mtl.apis.work_dir_logs import latest_metric

# (task, toolkit, what runs, metric label, logged key, scale to percent); task `probe` reads
# probe_<init>.json, the others the fine-tune's last evaluation
DEMO_METRICS = [
    ('cls', 'mmpretrain', 'Swin + linear head (fine-tuned)', 'top-1', 'accuracy/top1', 1),
    ('probe', 'frozen features', 'linear probe (logistic regression)', 'top-1', 'linear/top1', 1),
    ('probe', 'frozen features', 'kNN (k = 20, T = 0.07)', 'top-1', 'knn/top1', 1),
    ('det', 'mmdet', 'Mask R-CNN + FPN', 'box AP', 'coco/bbox_mAP', 100),
    ('det', 'mmdet', 'Mask R-CNN + FPN', 'mask AP', 'coco/segm_mAP', 100),
    ('seg', 'mmseg', 'UperNet', 'mIoU', 'mIoU', 1),
]
INITS = [('hvp', 'HVP-MTL pre-trained'), ('mcl', 'MCL pre-trained'), ('random', 'random init')]
# Table 5 of the paper removes one task at a time; `full` is the main pre-training run.
ABLATIONS = [
    ('full', 'HVP-MTL, all four tasks'),
    ('wo_multilabel', 'w/o multi-label classification'),
    ('wo_contrastive', 'w/o contrastive (SwAV) clustering'),
    ('wo_mim', 'w/o masked image modelling'),
    ('wo_distillation', 'w/o momentum distillation'),
]


def seed_dir(demo_dir, seed, group='main'):
    """Folder of one seed's runs of one group (``main``, ``ablation_<v>``, ``size_<arch>``)."""
    return osp.join(demo_dir, f'seed_{seed}', group)


def finetune_dir(demo_dir, task, init, seed=0, group='main'):
    """Work dir of one fine-tune run of the demo."""
    return osp.join(seed_dir(demo_dir, seed, group), 'finetune', f'{task}_{init}')


def probe_file(demo_dir, init, seed=0, group='main'):
    """JSON written by the frozen-feature probes (``demo/probe_backbone.py``)."""
    return osp.join(seed_dir(demo_dir, seed, group), f'probe_{init}.json')


def measured_value(demo_dir, task, key, scale, init, seed, group='main'):
    """One number of one run, in percent; ``None`` when the run is not there."""
    if task == 'probe':
        path = probe_file(demo_dir, init, seed, group)
        if not osp.isfile(path):
            return None
        with open(path, encoding='utf-8') as f:
            value = json.load(f)
        for part in key.split('/'):
            value = value.get(part) if isinstance(value, dict) else None
        return None if value is None else float(value) * scale
    work_dir = finetune_dir(demo_dir, task, init, seed, group)
    value, _ = latest_metric(work_dir, key) if osp.isdir(work_dir) else (None, None)
    return None if value is None else value * scale


def collect_table(demo_dir, seeds, arms, tasks=None):
    """Per-seed values of every metric row for every arm.

    Args:
        demo_dir (str): The ``--work-dir`` of ``demo/run_demo.py``.
        seeds (list[int]): The seeds run.
        arms (dict[str, tuple[str, str]]): ``{arm: (group, init)}``, where each arm's runs are.
        tasks (set[str], optional): Keep only the rows of these tasks.

    Returns:
        list[dict]: Rows ``{task, toolkit, model, metric, values: {arm: [value per seed]}}``.
    """
    rows = []
    for task, toolkit, model, label, key, scale in DEMO_METRICS:
        if tasks is not None and task not in tasks:
            continue
        values = {
            arm: [measured_value(demo_dir, task, key, scale, init, s, group) for s in seeds]
            for arm, (group, init) in arms.items()
        }
        rows.append(dict(task=task, toolkit=toolkit, model=model, metric=label, values=values))
    return rows


def read_stages(demo_dir):
    """``{stage: {'wall': s, 'cpu': s}}`` from ``stages.json`` (empty when there is none)."""
    path = osp.join(demo_dir, 'stages.json')
    if not osp.isfile(path):
        return {}
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def render_demo_markdown(demo_dir):
    """Markdown of a demo work dir's ``results.json``: what ``demo/run_demo.py`` printed."""
    from .report import render_results
    path = osp.join(demo_dir, 'results.json')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: no results file; run demo/run_demo.py --work-dir '
                                f'{demo_dir} first')
    with open(path, encoding='utf-8') as f:
        return render_results(json.load(f))
