"""The fine-tune study of the evidence protocol (docs/RESULTS.md, "Fine-tunes"), one seed.

``demo/run_demo.py --finetune-study`` fine-tunes the demo's classification config from random
initialisation and from each pre-trained arm of :data:`.arms.ARMS` (default: the HVP-MTL export,
the cause study's full arm at 1,000 iterations, its EMA teacher) by the rules of
:mod:`.finetune_protocol`:

0. **arms**: each pre-trained, exported and probed (:func:`.arms.prepare_arm`; done ones reused).
1. **schedule**: random init at lr 1e-3 (the config's) for each of :data:`SCHEDULES` epochs on
   the fit part of train, held-out top-1 after every epoch (the curves); the HVP-MTL arm at the
   longest, for its curve. :func:`choose_schedule` picks the epochs ``E``.
2. **selection, then final, regime by regime** (10 and 50 images per class of the fit part, all
   of train, LP-FT: the cheapest first). Selection: every arm at every lr of :data:`LR_GRID`,
   ``E`` epochs (LP-FT: ``E // 4`` epochs of the head on the frozen backbone, then ``E`` of
   everything) on the fit part or its subset, held-out top-1 at the end; :func:`choose_lr` per
   arm. Final: each arm at its lr, trained on all of train (low-label: the same subset),
   evaluated once on val.

Processes with different ``shard`` (``i/n``) split each phase's runs and wait for each other
between phases. The files are read back by :func:`read_finetune_study`. With ``reused`` (a
:class:`.finetune_reuse.ReusedStudy` of a committed study file of the same seed and plan), a run
whose value the file has is not run again and its value is read from the file: an arm is added
to a finished study without its other arms' runs.
"""
import os.path as osp
import time
from typing import NamedTuple, Tuple

from hvp_mtl.apis.work_dir_logs import evaluations, latest_metric

from .arms import ARMS, arm_backbone, arm_probe, prepare_arm
from .cause import CAUSE_ITERS, probe_row
from .finetune_protocol import (
    LOW_LABEL_PER_CLASS,
    LR_GRID,
    SCHEDULES,
    choose_lr,
    choose_schedule,
    per_class_subset,
    protocol_options,
    read_ann,
    stratified_split,
    write_ann,
)
from .finetune_reuse import ReusedStudy
from .learning_curve import read_json

__all__ = ['StudyPlan', 'SCHEDULE_LR', 'run_finetune_study', 'read_finetune_study']

#: the lr of the schedule rule's runs (the demo config's)
SCHEDULE_LR = 1e-3
KEY = 'accuracy/top1'


class StudyPlan(NamedTuple):
    """The study's grids: the protocol's by default (a test runs a smaller one)."""
    schedules: Tuple[int, ...] = SCHEDULES
    lr_grid: Tuple[float, ...] = LR_GRID
    low_label: Tuple[int, ...] = LOW_LABEL_PER_CLASS
    pretrain_iters: int = max(CAUSE_ITERS)
    lpft: bool = True
    #: keys of :data:`.arms.ARMS`; random init first (the schedule rule is its)
    arms: Tuple[str, ...] = ('random', 'hvp')

    @property
    def regimes(self):
        """``{regime: label}``: all of train, each low-label size, LP-FT (unless off)."""
        out = dict(full='all of train', **{f'low{n}': f'{n} images per class'
                                           for n in self.low_label})
        return dict(out, lpft='LP-FT, all of train') if self.lpft else out


def study_dir(work_dir, seed):
    return osp.join(work_dir, 'finetune_study', f'seed_{seed}')


def splits(demo, seed, low_label=LOW_LABEL_PER_CLASS):
    """``{name: list file}``: train, its fit and held-out parts, the low-label subsets of fit."""
    base = osp.join(study_dir(demo.work_dir, seed), 'splits')
    train = osp.join(demo.data, 'cls', 'meta', 'train.txt')
    fit, held = stratified_split(read_ann(train), seed=seed)
    out = dict(train=train, fit=write_ann(fit, osp.join(base, 'fit.txt')),
               held=write_ann(held, osp.join(base, 'held.txt')))
    for n in low_label:
        out[f'low{n}'] = write_ann(per_class_subset(fit, n, seed), osp.join(base, f'low{n}.txt'))
    return out


def run_dir(work_dir, seed, arm, regime, stage, lr, epochs):
    return osp.join(study_dir(work_dir, seed), arm, regime, f'{stage}_lr{lr:g}_e{epochs}')


class _Study:
    """The runs of one seed; ``jobs`` of a phase are ``(arm, regime, stage, lr, epochs)``."""

    def __init__(self, demo, seed, shard, plan, reused=None):
        self.demo, self.seed, self.shard, self.plan = demo, seed, shard, plan
        self.reused = reused or ReusedStudy.none()
        self.ann = splits(demo, seed, plan.low_label)
        self.backbones = {arm: arm_backbone(demo.work_dir, seed, arm, plan.pretrain_iters)
                          for arm in plan.arms}

    def prepare(self, arm):
        """Phase 0 job: pre-train, export and probe ``arm`` (:func:`.arms.prepare_arm`)."""
        prepare_arm(self.demo, self.seed, arm, self.plan.pretrain_iters)

    def work(self, arm, regime, stage, lr, epochs):
        return run_dir(self.demo.work_dir, self.seed, arm, regime, stage, lr, epochs)

    def one(self, arm, regime, stage, lr, epochs):
        """One run (LP-FT: its two stages); ``stage`` select (held-out) or final (val)."""
        train = self.ann['train' if stage == 'final' and regime in ('full', 'lpft')
                         else 'fit' if regime in ('full', 'lpft') else regime]
        held = dict(eval_ann=self.ann['held'], eval_prefix='train') if stage == 'select' else {}
        work, backbone = self.work(arm, regime, stage, lr, epochs), self.backbones[arm]
        name = f'ft s{self.seed} {arm} {regime} {stage} lr{lr:g} e{epochs}'
        load = {}
        if regime == 'lpft':
            probe_work = work + '_lp'
            opts = protocol_options(train, max(2, epochs // 4), lr, linear_probe=True, **held)
            self.demo.finetune(name + ' lp', 'cls', probe_work, backbone, self.seed, 'demo',
                               opts)
            with open(osp.join(probe_work, 'last_checkpoint'), encoding='utf-8') as f:
                load = dict(load_from=f.read().strip())
        opts = protocol_options(train, epochs, lr, **held, **load)
        if (regime, stage, lr) == ('full', 'select', SCHEDULE_LR):
            opts.append('train_cfg.val_interval=1')  # the schedule rule's held-out curve
        self.demo.finetune(name, 'cls', work, None if load else backbone, self.seed, 'demo',
                           opts)

    def phase(self, jobs, timeout=6 * 3600):
        """This shard's part of ``jobs``, then wait until every job of the phase is done
        (jobs whose value the reused file has are not run)."""
        index, count = self.shard
        jobs = [job for job in jobs if self.reused.value(*job) is None]
        for job in jobs[index::count]:
            self.one(*job)
        # done = its last epoch's held-out/val value logged (the checkpoint is written before it)
        self.wait(lambda: [self.work(*job) for job in jobs if not self.finished(*job)], timeout)

    def prepare_all(self, timeout=6 * 3600):
        """Phase 0: this shard's part of the arms, then wait for every arm's probe (an arm the
        reused file has whole is not prepared)."""
        index, count = self.shard
        arms = [arm for arm in self.plan.arms if not self.reused.has_arm(arm) or any(
            self.reused.value(*job) is None for job in self.schedule_jobs() if job[0] == arm)]
        for arm in arms[index::count]:
            self.prepare(arm)
        probes = [arm_probe(self.demo.work_dir, self.seed, arm, self.plan.pretrain_iters)
                  for arm in arms]
        self.wait(lambda: [p for p in probes if not osp.isfile(p)], timeout)

    def schedule_jobs(self):
        """Phase 1: random init at every schedule (the rule), HVP-MTL at the longest (its
        curve)."""
        longest = max(self.plan.schedules)
        return ([('random', 'full', 'select', SCHEDULE_LR, e)
                 for e in sorted(self.plan.schedules)[::-1]]
                + [(arm, 'full', 'select', SCHEDULE_LR, longest)
                   for arm in self.plan.arms if arm == 'hvp'])

    @staticmethod
    def wait(missing, timeout):
        """Until ``missing()`` (what is not done yet) is empty."""
        start = time.time()
        while missing():
            if time.time() - start > timeout:
                raise TimeoutError(f'runs of other shards not done after {timeout} s: '
                                   f'{missing()}')
            time.sleep(10)

    def finished(self, *job):
        """Whether the run has logged its value after its last epoch."""
        _, record = latest_metric(self.work(*job), KEY)
        return record is not None and record.get('step') == job[-1]

    def held(self, *job):
        value, _ = latest_metric(self.work(*job), KEY)
        return self.reused.value(*job) if value is None else value


def run_finetune_study(demo, seed=0, shard=(0, 1), plan=StudyPlan(), reused=None):
    """Run the three phases (finished runs are skipped); returns :func:`read_finetune_study`.

    Args:
        reused (ReusedStudy, optional): Values of a committed study file taken instead of runs.
    """
    demo.make_world()
    if plan.arms[0] != 'random':
        raise ValueError(f'the first arm must be random init (the schedule rule), got {plan.arms}')
    study = _Study(demo, seed, shard, plan, reused)
    study.prepare_all()
    study.phase(study.schedule_jobs())
    epochs, _ = choose_schedule({e: study.held('random', 'full', 'select', SCHEDULE_LR, e)
                                 for e in plan.schedules})
    for regime in sorted(plan.regimes, key=_cost):  # the cheapest regime's answer first
        study.phase([(arm, regime, 'select', lr, epochs) for arm in plan.arms
                     for lr in plan.lr_grid])
        study.phase([(arm, regime, 'final', choose_lr({
            lr: study.held(arm, regime, 'select', lr, epochs) for lr in plan.lr_grid}), epochs)
            for arm in plan.arms])
    return read_finetune_study(demo.work_dir, seed, plan, study.reused)


def _cost(regime):
    """Order of the regimes' runs: the low-label ones (smallest first), all of train, LP-FT."""
    return (0, int(regime[3:])) if regime.startswith('low') else (1 if regime == 'full' else 2, 0)


def _curve(work):
    """Held-out top-1 after each epoch of one run (its validations in order)."""
    return [round(r['metrics'][KEY], 2) for r in evaluations(work) if KEY in r['metrics']]


def read_finetune_study(work_dir, seed=0, plan=StudyPlan(), reused=None):
    """The study's numbers of one seed (``None`` where a run is missing; with ``reused``, a
    missing run's value from the reused file, which ``reused`` then names).

    Returns:
        dict: ``schedule`` (held-out top-1 per epochs of the rule's runs, the chosen epochs and
        why), ``curves`` (``{arm: {epochs: [held-out top-1 per epoch]}}``, lr 1e-3),
        ``probes`` (``{arm: the cause study's probe row}``: RankMe, colour share, linear, kNN)
        and ``regimes`` (``{regime: {label, arm: {grid: {lr: held-out}, lr, val_top1}}}``).
    """
    reused = reused or ReusedStudy.none()

    def value(arm, regime, stage, lr, epochs):
        found, _ = latest_metric(run_dir(work_dir, seed, arm, regime, stage, lr, epochs), KEY)
        return reused.value(arm, regime, stage, lr, epochs) if found is None else found

    def held(arm, regime, lr, epochs):
        return value(arm, regime, 'select', lr, epochs)

    def probe(arm):
        row = probe_row(read_json(arm_probe(work_dir, seed, arm, plan.pretrain_iters)))
        return reused.probe(arm) if row is None else row

    rule = {e: held('random', 'full', SCHEDULE_LR, e) for e in plan.schedules}
    out = dict(seed=seed, plan=plan._asdict(), arms={a: ARMS[a] for a in plan.arms},
               schedule_lr=SCHEDULE_LR, schedule=dict(heldout=rule), curves={}, regimes={},
               probes={a: probe(a) for a in plan.arms}, **reused.source())
    for arm in plan.arms:
        out['curves'][arm] = {
            e: _curve(run_dir(work_dir, seed, arm, 'full', 'select', SCHEDULE_LR, e))
            or reused.curve(arm, e) for e in plan.schedules}
    if any(v is None for v in rule.values()):
        return out
    epochs, why = choose_schedule(rule)
    out['schedule'].update(epochs=epochs, why=why)
    for regime, label in plan.regimes.items():
        rows = dict(label=label)
        for arm in plan.arms:
            grid = {lr: held(arm, regime, lr, epochs) for lr in plan.lr_grid}
            row = dict(grid={f'{lr:g}': v for lr, v in grid.items()}, lr=None, val_top1=None)
            if all(v is not None for v in grid.values()):
                row['lr'] = choose_lr(grid)
                row['val_top1'] = value(arm, regime, 'final', row['lr'], epochs)
            rows[arm] = row
        out['regimes'][regime] = rows
    return out
