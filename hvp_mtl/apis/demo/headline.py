"""The protocol's headline rows at one seed, within the budget of ``make demo``.

``demo/run_demo.py --headline`` (what ``make demo`` runs) measures, at seed ``--first-seed``:
random init and the HVP-MTL export (the cause study's full arm at the protocol's 1,000
iterations, its EMA teacher) fine-tuned on **10 images per class** by the protocol's final run,
and both arms' frozen-feature probes (linear probe, whitened and raw kNN, RankMe, colour share).

The full protocol chooses the schedule and each arm's lr on a held-out part of train (the
fine-tune study, about an hour per seed); the headline does not choose: it reads those choices
from the committed study over seeds (:data:`CHOICES_FILE`): the seed's own where the file has
that seed, otherwise the most frequent over its seeds. Its runs are the study's runs (same
directories, configs and seeds), so a headline at a seed the study has run reproduces that
study's row, and a study run later in the same work dir reuses them.
"""
import json
import os.path as osp
from collections import Counter

from hvp_mtl.apis.work_dir_logs import latest_metric

from .arms import ARMS, arm_probe
from .cause import probe_row
from .finetune_seeds import combine_finetune_studies
from .finetune_study import KEY, StudyPlan, _Study, run_dir
from .learning_curve import read_json

__all__ = ['CHOICES_FILE', 'HEADLINE_REGIME', 'headline_choices', 'run_headline',
           'read_headline']

#: the committed fine-tune study over seeds (``--combine-studies``), relative to the repository
CHOICES_FILE = osp.join('docs', 'results', 'finetune_seeds.json')
HEADLINE_REGIME = 'low10'
HEADLINE_ARMS = ('random', 'hvp')


def headline_choices(combined, seed, regime=HEADLINE_REGIME, arms=HEADLINE_ARMS):
    """The schedule and each arm's lr the protocol chose, from a ``finetune_seeds`` file.

    Args:
        combined (dict): A loaded ``finetune_seeds.json``.
        seed (int): The headline's seed.
        regime (str): The study regime whose lrs are read.
        arms (Sequence[str]): The arms.

    Returns:
        dict: ``epochs``, ``lr`` (``{arm: lr}``) and ``source`` (a sentence: whose choice).
    """
    c = combined['finetune_seeds']
    seeds = c['seeds']
    if regime not in c['lrs']:
        raise KeyError(f'the study file has no regime {regime!r} (it has {sorted(c["lrs"])})')

    def pick(values, what):
        values = list(values)
        if seed in seeds and values[seeds.index(seed)] is not None:
            return values[seeds.index(seed)]
        measured = [v for v in values if v is not None]
        if not measured:
            raise KeyError(f'the study file has no {what} at any seed')
        return Counter(measured).most_common(1)[0][0]

    own = seed in seeds
    return dict(epochs=pick(c['schedules'], 'schedule'),
                lr={arm: pick(c['lrs'][regime][arm], f'lr of {arm}') for arm in arms},
                source=(f"seed {seed}'s own choices" if own else 'the most frequent choices of '
                        'seeds ' + ', '.join(map(str, seeds))) + ' in the study over seeds')


def run_headline(demo, seed, choices, plan=StudyPlan(arms=HEADLINE_ARMS),
                 regime=HEADLINE_REGIME):
    """Pre-train, export and probe each arm of ``plan``, then its final run of ``regime`` at
    ``choices``; returns :func:`read_headline`."""
    demo.make_world()
    study = _Study(demo, seed, (0, 1), plan)
    for arm in plan.arms:
        study.prepare(arm)
    for arm in plan.arms:
        study.one(arm, regime, 'final', choices['lr'][arm], choices['epochs'])
    return read_headline(demo.work_dir, seed, choices, plan, regime)


def read_headline(work_dir, seed, choices, plan=StudyPlan(arms=HEADLINE_ARMS),
                  regime=HEADLINE_REGIME):
    """The headline as a one-seed ``finetune_seeds`` results file (rendered like the study
    over seeds), with ``choices`` recorded; ``None`` where a run is missing."""
    epochs, rows = choices['epochs'], dict(label=plan.regimes[regime])
    for arm in plan.arms:
        value, _ = latest_metric(run_dir(work_dir, seed, arm, regime, 'final', choices['lr'][arm],
                                         epochs), KEY)
        rows[arm] = dict(val_top1=value, lr=choices['lr'][arm], grid={})
    probes = {}
    for arm in plan.arms:
        path = arm_probe(work_dir, seed, arm, plan.pretrain_iters)
        probes[arm] = probe_row(read_json(path)) if osp.isfile(path) else None
    study = dict(seed=seed, arms={a: ARMS[a] for a in plan.arms}, schedule=dict(epochs=epochs),
                 regimes={regime: rows}, probes=probes)
    out = combine_finetune_studies([dict(study=study)])
    out['finetune_seeds']['note'] = (f'Headline of the protocol: schedule and lr not chosen here '
                                     f'but taken from {choices["source"]} ({CHOICES_FILE}).')
    return out


def load_choices(root, seed):
    """:func:`headline_choices` of the committed file under ``root``."""
    path = osp.join(root, CHOICES_FILE)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} not found: the headline takes its schedule and lrs '
                                'from the committed fine-tune study over seeds '
                                '(demo/run_demo.py --combine-studies)')
    with open(path, encoding='utf-8') as f:
        return headline_choices(json.load(f), seed)
