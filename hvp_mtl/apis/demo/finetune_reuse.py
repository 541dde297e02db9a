"""A committed fine-tune study file as a source of run values, to add an arm to a finished study.

``demo/run_demo.py --finetune-study --reuse FILE`` runs only the runs whose values ``FILE`` (a
``finetune_seed<seed>.json`` of the same seed and grids) does not have: the schedule rule's
held-out values, every arm's held-out grid at the chosen epochs, its final val top-1 at its
chosen lr, its curves and probe row. The study's rules then decide on the same values as if every
run had been made again in this work dir (the fine-tunes are seeded and deterministic on CPU), and
the output names the file and its commit. Values from runs of this work dir take precedence.
"""
import json
from typing import Optional

__all__ = ['ReusedStudy']

#: the plan fields that must agree for a value of the file to be the value of the same run
MATCHING = ('schedules', 'lr_grid', 'low_label', 'pretrain_iters')


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


class ReusedStudy:
    """The values of one study file (``None`` for a run the file does not have).

    Args:
        study (dict, optional): The file's ``study``; ``None``: an empty source.
        path (str): Where it was read from (recorded in the output).
        commit (str): The commit the file names.
        regimes (Sequence[str]): The regimes of this study (an arm is the file's whole only if
            the file has each of them).
    """

    def __init__(self, study: Optional[dict] = None, path: str = '', commit: str = '',
                 regimes=()):
        self.study, self.path, self.commit = study or {}, path, commit
        self.regimes = tuple(regimes)
        schedule = self.study.get('schedule', {})
        self.epochs = schedule.get('epochs')
        self.heldout = schedule.get('heldout', {})

    @classmethod
    def none(cls):
        return cls()

    @classmethod
    def load(cls, path, seed, plan):
        """Read ``path`` and check it is a study of ``seed`` with ``plan``'s grids.

        Raises:
            ValueError: A different seed or grid (the field and both values named), or a file
                without a decided schedule (nothing to reuse).
        """
        with open(path, encoding='utf-8') as f:
            results = json.load(f)
        study = results.get('study')
        if not study:
            raise ValueError(f'{path}: not a fine-tune study file (no "study" key)')
        if study['seed'] != seed:
            raise ValueError(f'{path}: a study of seed {study["seed"]}, not of seed {seed}')
        ours = plan._asdict()
        for field in MATCHING:
            if _plain(study['plan'][field]) != _plain(ours[field]):
                raise ValueError(f'{path}: plan {field} {study["plan"][field]} differs from this '
                                 f'study\'s {ours[field]}: its runs are not this study\'s runs')
        if study['schedule'].get('epochs') is None:
            raise ValueError(f'{path}: the schedule rule is not decided in it: nothing to reuse')
        return cls(study, path, results.get('commit', 'unknown'), plan.regimes)

    def value(self, arm, regime, stage, lr, epochs):
        """The held-out (``stage`` select) or val (final) top-1 of one run, or ``None``."""
        if not self.study:
            return None
        curve_run = (regime, stage, lr) == ('full', 'select', self.study['schedule_lr'])
        if curve_run and arm == 'random':
            return self.heldout.get(str(epochs))
        row = self.study['regimes'].get(regime, {}).get(arm)
        if row is None or epochs != self.epochs:  # a curve's run: its last held-out value
            return (self.curve(arm, epochs) or [None])[-1] if curve_run else None
        if stage == 'select':
            return row['grid'].get(f'{lr:g}')
        return row['val_top1'] if row['lr'] == lr else None

    def probe(self, arm):
        return self.study.get('probes', {}).get(arm)

    def curve(self, arm, epochs):
        return self.study.get('curves', {}).get(arm, {}).get(str(epochs), [])

    def has_arm(self, arm):
        """Whether the file has ``arm``'s probe and every value of its runs in every regime of
        this study (finals included): then the arm is not prepared again."""
        if self.probe(arm) is None:
            return False
        rows = [self.study['regimes'].get(regime, {}).get(arm) for regime in self.regimes]
        return all(row is not None and row['val_top1'] is not None
                   and None not in row['grid'].values() for row in rows)

    def source(self):
        """``{reused: {file, commit, arms}}`` for the output (empty without a file)."""
        if not self.study:
            return {}
        arms = [arm for arm in self.study['arms'] if self.has_arm(arm)]
        return dict(reused=dict(file=self.path, commit=self.commit, arms=arms))
