"""A committed study file as the source of run values (``--reuse``): which runs it answers,
and the files it refuses (another seed, other grids, an undecided schedule)."""
import json
import re

import pytest

from hvp_mtl.apis.demo.finetune_reuse import ReusedStudy
from hvp_mtl.apis.demo.finetune_study import StudyPlan

PLAN = StudyPlan(schedules=(16, 32), lr_grid=(3e-4, 1e-3), low_label=(10, ), lpft=False,
                 arms=('random', 'hvp', 'wo_mim'))


def _file(tmp_path, **changes):
    row = dict(grid={'0.0003': 40.0, '0.001': 45.0}, lr=1e-3, val_top1=44.25)
    partial = dict(grid={'0.0003': 41.0, '0.001': None}, lr=None, val_top1=None)
    probe = dict(rankme=6.5, linear=52.75)
    study = dict(seed=0, plan=dict(schedules=[16, 32], lr_grid=[3e-4, 1e-3], low_label=[10],
                                   pretrain_iters=1000, lpft=False, arms=['random', 'hvp']),
                 arms=dict(random='random init', hvp='HVP-MTL (EMA teacher)'), schedule_lr=1e-3,
                 schedule=dict(heldout={'16': 58.5, '32': 60.0}, epochs=32, why='...'),
                 curves=dict(random={'16': [20.0, 30.0]}, hvp={'16': [25.0, 31.5]}),
                 probes=dict(random=probe, hvp=probe),
                 regimes=dict(full=dict(label='all of train', random=row, hvp=row),
                              low10=dict(label='10 images per class', random=row, hvp=partial)))
    study.update(changes)
    path = tmp_path / 'finetune_seed0.json'
    path.write_text(json.dumps(dict(commit='abc1234', study=study)))
    return str(path)


def test_it_answers_the_runs_the_file_has_and_only_those(tmp_path):
    reused = ReusedStudy.load(_file(tmp_path), 0, PLAN)
    assert reused.value('random', 'full', 'select', 1e-3, 16) == 58.5  # the schedule rule's
    assert reused.value('random', 'full', 'select', 3e-4, 32) == 40.0  # the grid at 32 epochs
    assert reused.value('random', 'full', 'select', 3e-4, 16) is None  # not the chosen epochs
    assert reused.value('hvp', 'full', 'final', 1e-3, 32) == 44.25
    assert reused.value('hvp', 'full', 'final', 3e-4, 32) is None  # not its chosen lr
    assert reused.value('hvp', 'low10', 'select', 1e-3, 32) is None
    assert reused.value('wo_mim', 'low10', 'select', 1e-3, 32) is None
    assert reused.curve('random', 16) == [20.0, 30.0] and reused.curve('wo_mim', 16) == []
    assert reused.value('hvp', 'full', 'select', 1e-3, 16) == 31.5  # its curve's run: the end
    # an arm is taken whole only with every run of every regime of this plan and its probe
    assert [reused.has_arm(a) for a in PLAN.arms] == [True, False, False]
    assert reused.source() == dict(reused=dict(file=reused.path, commit='abc1234',
                                               arms=['random']))
    assert ReusedStudy.none().value('random', 'full', 'select', 1e-3, 16) is None
    assert ReusedStudy.none().source() == {}


def test_a_plan_with_a_regime_the_file_lacks_takes_no_arm_whole(tmp_path):
    reused = ReusedStudy.load(_file(tmp_path), 0, PLAN._replace(lpft=True))
    assert not reused.has_arm('random')


@pytest.mark.parametrize('changes, plan, message', [
    (dict(seed=1), PLAN, 'a study of seed 1, not of seed 0'),
    ({}, PLAN._replace(lr_grid=(1e-3, )), 'plan lr_grid [0.0003, 0.001] differs'),
    ({}, PLAN._replace(pretrain_iters=300), 'plan pretrain_iters 1000 differs'),
    (dict(schedule=dict(heldout={'16': 58.5, '32': None})), PLAN, 'schedule rule is not decided'),
])
def test_a_file_of_other_runs_is_refused_naming_the_file(tmp_path, changes, plan, message):
    path = _file(tmp_path, **changes)
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        ReusedStudy.load(path, 0, plan)
    assert str(error.value).startswith(path)
