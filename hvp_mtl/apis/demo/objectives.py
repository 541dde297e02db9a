"""Did each demo pre-training learn its own objectives? Read back, summarised and rendered.

Every HVP-MTL pre-training of the demo writes ``objectives.json``
(:class:`~hvp_mtl.engine.hooks.ObjectiveMetricsHook`): each objective on the held-out
``pretrain/val.txt`` beside its trivial baseline, at step 0 and through the run. The results
file keeps, per pre-training run and objective, the first and last value of every seed, the
baseline and the learned / not learned verdict (:func:`hvp_mtl.evaluation.objective_baselines
.learned`); a run counts as having learned an objective when it did in most of its seeds.
"""
import json
import os.path as osp

from hvp_mtl.evaluation.objective_baselines import LEARNED_MARGIN

from .stats import summarise
from .table import seed_dir

__all__ = ['collect_objectives', 'render_objectives', 'run_learned', 'unlearned_supervision_notes',
           'OBJECTIVE_LABELS']

OBJECTIVE_LABELS = dict(
    mlc=('multi-label (eq. 1)', 'macro mAP % (higher is better)', 'label prior'),
    swav=('SwAV (eq. 2-3)', 'swapped prediction (lower)', 'uniform, ln K'),
    mim=('SimMIM (eq. 4)', 'masked L1 (lower)', 'predict 0'),
    distill=('distillation (eq. 6)', 'symmetric KL to teacher (lower)', "teacher's mean"))


def _read(path):
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def collect_objectives(work_dir, seeds, runs):
    """Per pre-training run, each objective's values over seeds.

    Args:
        work_dir (str): The demo work dir.
        seeds (list[int]): Seeds run.
        runs (dict[str, tuple[str, str, str]]): ``{key: (label, group, init)}`` of the HVP-MTL
            pre-trainings.

    Returns:
        dict: ``{key: {label, objectives: {task: {start, end, baseline, learned, steps}}}}``,
        each a list over seeds (``None`` where a seed has no file); runs without any file are
        left out.
    """
    out = {}
    for key, (label, group, init) in runs.items():
        histories = [_read(osp.join(seed_dir(work_dir, s, group), f'pretrain_{init}',
                                    'objectives.json')) for s in seeds]
        if not any(histories):
            continue
        tasks = {}
        for history in histories:
            for task in (history[-1]['objectives'] if history else {}):
                tasks.setdefault(task, dict(start=[], end=[], baseline=[], learned=[], steps=[]))
        for history in histories:
            for task, entry in tasks.items():
                first = history[0]['objectives'].get(task) if history else None
                last = history[-1]['objectives'].get(task) if history else None
                entry['start'].append(first and first['value'])
                entry['end'].append(last and last['value'])
                entry['baseline'].append(last and last['baseline'])
                entry['learned'].append(last and last['learned'])
                entry['steps'].append(history[-1]['step'] if history else None)
        out[key] = dict(label=label, objectives=tasks)
    return out


def _learned_count(entry):
    verdicts = [v for v in entry['learned'] if v is not None]
    return sum(verdicts), len(verdicts)


def run_learned(entry):
    """True when the objective was learned in most of the seeds that measured it."""
    k, n = _learned_count(entry)
    return n > 0 and 2 * k > n


def _mean(values, digits):
    s = summarise([v for v in values if v is not None])
    if s['mean'] is None:
        return 'not measured'
    return f'{s["mean"]:.{digits}f}' + ('' if s['std'] is None else f' ± {s["std"]:.{digits}f}')


def render_objectives(objectives):
    """Markdown table: each run's objectives at step 0 and at the end, against the baseline."""
    if not objectives:
        return ''
    lines = ['#### Pre-training objectives on held-out images against their trivial baselines',
             '', '| pre-training | objective | measured | at step 0 | at the end | trivial '
             'baseline | verdict |', '|---|---|---|---|---|---|---|']
    for run in objectives.values():
        for task, entry in run['objectives'].items():
            name, metric, baseline = OBJECTIVE_LABELS.get(task, (task, 'value', 'baseline'))
            digits = 2 if task == 'mlc' else 4
            k, n = _learned_count(entry)
            verdict = f'{"learned" if run_learned(entry) else "not learned"} ({k} of {n} seeds)'
            lines.append(f'| {run["label"]} | {name} | {metric} | {_mean(entry["start"], digits)}'
                         f' | {_mean(entry["end"], digits)} | {baseline}: '
                         f'{_mean(entry["baseline"], digits)} | {verdict} |')
    lines += ['', f'Learned: the value at the end closes at least {LEARNED_MARGIN:.0%} of the gap '
              'between the trivial baseline and a perfect score (100 % mAP, a loss of 0), on '
              'the held-out `pretrain/val.txt` (the losses through the training pipeline with '
              'seeded views; mAP on resized images).']
    return '\n'.join(lines) + '\n'


def unlearned_supervision_notes(objectives, arms_of_runs):
    """Lines for transfer verdicts whose pre-training learned none of its supervised signal.

    Args:
        objectives (dict): :func:`collect_objectives`' result.
        arms_of_runs (dict[str, str]): ``{run key: arm label in the transfer tables}``.

    Returns:
        list[str]: One sentence per such arm (the multi-label objective not learned).
    """
    notes = []
    for key, arm in arms_of_runs.items():
        entry = objectives.get(key, {}).get('objectives', {}).get('mlc')
        if entry is not None and not run_learned(entry):
            notes.append(f'{arm}: its pre-training learned none of its supervised signal (the '
                         'multi-label mAP did not clear the label prior by the margin in most '
                         'seeds), so its transfer verdicts say nothing about the method.')
    return notes
