"""The results table of a ``tools/run_demo.py`` work dir, read back from its runs' evaluation logs.

Layout of a demo work dir (``tools/run_demo.py`` writes it; this module only reads)::

    pretrain/                     HVP-MTL pre-training run
    finetune/<task>_<init>/       fine-tune runs, task in cls|det|seg, init in hvp|random
    ablations/<variant>/pretrain  Table-5-style pre-training without one task
    ablations/<variant>/cls       its mmpretrain fine-tune
    stages.json                   wall and CPU time of every stage

Every number comes from the logs the runs wrote (their last evaluation), never from memory.
"""
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from work_dir_logs import latest_metric  # noqa: E402

# (task dir, toolkit, what runs, metric label, logged key, scale to percent)
DEMO_METRICS = [
    ('cls', 'mmpretrain', 'Swin + linear head', 'top-1', 'accuracy/top1', 1),
    ('det', 'mmdet', 'Mask R-CNN + FPN', 'box AP', 'coco/bbox_mAP', 100),
    ('det', 'mmdet', 'Mask R-CNN + FPN', 'mask AP', 'coco/segm_mAP', 100),
    ('seg', 'mmseg', 'UperNet', 'mIoU', 'mIoU', 1),
]
INITS = [('hvp', 'HVP-MTL pre-trained'), ('random', 'random init')]
# Table 5 of the paper removes one task at a time; `full` is the main pre-training run.
ABLATIONS = [
    ('full', 'HVP-MTL, all four tasks'),
    ('wo_multilabel', 'w/o multi-label classification'),
    ('wo_contrastive', 'w/o contrastive (SwAV) clustering'),
    ('wo_mim', 'w/o masked image modelling'),
    ('wo_distillation', 'w/o momentum distillation'),
]


def finetune_dir(demo_dir, task, init):
    """Work dir of one fine-tune run of the demo."""
    return osp.join(demo_dir, 'finetune', f'{task}_{init}')


def ablation_dir(demo_dir, variant, stage):
    """Work dir of an ablation's ``pretrain`` or ``cls`` stage (``full`` is the main run)."""
    if variant == 'full':
        return osp.join(demo_dir, 'pretrain') if stage == 'pretrain' else finetune_dir(
            demo_dir, 'cls', 'hvp')
    return osp.join(demo_dir, 'ablations', variant, stage)


def _value(work_dir, key, scale):
    value, _ = latest_metric(work_dir, key) if osp.isdir(work_dir) else (None, None)
    return None if value is None else value * scale


def demo_results(demo_dir):
    """Every measured number of a demo work dir.

    Args:
        demo_dir (str): The ``--work-dir`` of ``tools/run_demo.py``.

    Returns:
        dict: ``{'downstream': [{toolkit, model, metric, hvp, random}], 'ablations':
        [{variant, name, top1}], 'stages': {stage: seconds}}``; unmeasured values are ``None``.
    """
    downstream = []
    for task, toolkit, model, label, key, scale in DEMO_METRICS:
        entry = dict(task=task, toolkit=toolkit, model=model, metric=label)
        for init, _ in INITS:
            entry[init] = _value(finetune_dir(demo_dir, task, init), key, scale)
        downstream.append(entry)
    ablations = []
    for variant, name in ABLATIONS:
        top1 = _value(ablation_dir(demo_dir, variant, 'cls'), 'accuracy/top1', 1)
        if variant == 'full' or top1 is not None or osp.isdir(
                osp.join(demo_dir, 'ablations', variant)):
            ablations.append(dict(variant=variant, name=name, top1=top1))
    stages_file = osp.join(demo_dir, 'stages.json')
    stages = {}
    if osp.isfile(stages_file):
        with open(stages_file, encoding='utf-8') as f:
            stages = json.load(f)
    return dict(downstream=downstream, ablations=ablations, stages=stages)


def _cell(value):
    return 'not measured' if value is None else f'{value:.2f}'


def render_demo_markdown(demo_dir, title='Demo: HVP-MTL pre-training vs random initialisation'):
    """Markdown tables of a demo work dir (downstream comparison, and ablations when run)."""
    res = demo_results(demo_dir)
    lines = [
        f'### {title}', '',
        '| toolkit | model | metric | HVP-MTL pre-trained | random init | difference |',
        '|---|---|---|---|---|---|'
    ]
    for e in res['downstream']:
        measured = e['hvp'] is not None and e['random'] is not None
        diff = f'{e["hvp"] - e["random"]:+.2f}' if measured else '—'
        lines.append(f'| {e["toolkit"]} | {e["model"]} | {e["metric"]} | {_cell(e["hvp"])} | '
                     f'{_cell(e["random"])} | {diff} |')
    measured_ablations = [a for a in res['ablations'] if a['variant'] != 'full']
    if measured_ablations:
        full = res['ablations'][0]['top1']
        random_top1 = res['downstream'][0]['random']
        lines += [
            '', '#### Table-5-style ablation (mmpretrain top-1 after the same fine-tune)', '',
            '| pre-training | top-1 | difference to all four tasks |', '|---|---|---|'
        ]
        for a in res['ablations'] + [
                dict(variant='random', name='no pre-training (random init)', top1=random_top1)
        ]:
            diff = '—' if a['variant'] == 'full' or a['top1'] is None or full is None \
                else f'{a["top1"] - full:+.2f}'
            lines.append(f'| {a["name"]} | {_cell(a["top1"])} | {diff} |')
    wall = {k: v for k, v in res['stages'].items() if not k.endswith(' (cpu)')}
    if wall:
        cpu = sum(v for k, v in res['stages'].items() if k.endswith(' (cpu)'))
        parts = ', '.join(f'{k} {v:.0f} s' for k, v in wall.items())
        lines += [
            '', f'Wall time {sum(wall.values()) / 60:.1f} min, CPU time {cpu / 60:.1f} min '
            f'({parts}).'
        ]
    return '\n'.join(lines) + '\n'
