"""The cause study of the evidence protocol: its arms, its files and its rendering, and one real
tiny run (pre-training with kept checkpoints, exports of student and teacher, probes)."""
import json

import pytest

from hvp_mtl.apis.demo import Demo
from hvp_mtl.apis.demo.arms import ARMS, CAUSE_SOURCES, arm_backbone, arm_probe
from hvp_mtl.apis.demo.cause import (
    CAUSE_ARMS,
    arm_dir,
    cause_weights,
    exports_of,
    read_cause,
    render_cause,
    run_cause,
    write_cause,
)
from hvp_mtl.apis.demo.recipes import ablation_weights
from hvp_mtl.apis.demo.report import update_generated_blocks

TASKS = ('mim', 'swav', 'mlc', 'distill')


def test_single_task_arms_switch_the_other_three_off():
    for task in ('mim', 'swav', 'mlc'):
        weights = cause_weights(f'{task}_only')
        assert weights == {t: 0.0 for t in TASKS if t != task}
        assert exports_of(weights) == ('student', )


def test_leave_one_out_arms_are_the_table5_configs():
    assert cause_weights('full') == {}
    assert exports_of({}) == ('student', 'teacher')
    for arm in ('wo_multilabel', 'wo_contrastive', 'wo_mim', 'wo_distillation'):
        assert cause_weights(arm) == ablation_weights(arm)
    assert cause_weights('wo_multilabel') == dict(mlc=0.0, distill=0.0)
    assert set(CAUSE_ARMS) == {'full', 'mim_only', 'swav_only', 'mlc_only', 'wo_multilabel',
                               'wo_contrastive', 'wo_mim', 'wo_distillation'}


def _probe(rankme, colour):
    return dict(linear=dict(top1=40.0), knn_spaces=dict(raw=30.0, centred=31.0, whitened=35.0),
                representation=dict(rankme=rankme, top5_share=0.9, colour_top2_r2=colour,
                                    colour_total_r2=colour / 2, colour_chance_r2=0.005))


def test_files_are_read_back_rendered_and_regenerated_in_markdown(tmp_path):
    work = tmp_path / 'work'
    (work / 'cause' / 'seed_0').mkdir(parents=True)
    (work / 'cause' / 'seed_0' / 'probe_random.json').write_text(json.dumps(_probe(30.0, 0.5)))
    where = tmp_path / arm_dir('work', 0, 'mim_only')
    where.mkdir(parents=True)
    (where / 'probe_student_iter100.json').write_text(json.dumps(_probe(12.5, 0.87)))
    found = read_cause(str(work), arms=['mim_only'])
    points = found['0']['arms']['mim_only']['points']
    assert [p['iters'] for p in points] == [100, 300, 1000]
    assert points[0]['student']['colour_top2_r2'] == 0.87 and points[1]['student'] is None
    out = tmp_path / 'cause.json'
    write_cause(found, str(out), dict(command='python demo/run_demo.py --cause', commit='abc'))
    text = render_cause(json.loads(out.read_text()))
    assert '| MIM only | 100 | student | 12.5 | 0.900 | 0.870 | 0.435 | 40.00 | 30.00 | 35.00 |' \
        in text
    assert '| MIM only | 300 | student | not measured |' in text
    assert '| random init | 0 | - | 30.0 |' in text
    doc = tmp_path / 'doc.md'
    doc.write_text('x\n<!-- demo-table:start cause.json -->\nold\n<!-- demo-table:end -->\n')
    assert update_generated_blocks(str(doc), str(tmp_path)) == ['cause.json']
    assert text in doc.read_text()
    assert update_generated_blocks(str(doc), str(tmp_path), check=True) == []
    # a file of another seed renders that seed (the cause study at seeds 1 and 2)
    other = dict(command='c', commit='abc', cause=read_cause(str(work), [1], ['mim_only']))
    assert '(seed 1)' in render_cause(other) and '| MIM only | 100 | student | not measured |' \
        in render_cause(other)


@pytest.mark.slow
@pytest.mark.integration
def test_a_tiny_cause_run_keeps_its_points_and_probes_each_export(tmp_path):
    demo = Demo(str(tmp_path / 'work'), str(tmp_path / 'data'), 'tiny')
    found = run_cause(demo, 0, ['full', 'mim_only'], iters=(1, 3))
    full = found['0']['arms']['full']['points']
    assert [p['iters'] for p in full] == [1, 3]
    for point in full:
        for export in ('student', 'teacher'):
            row = point[export]
            assert 1.0 <= row['rankme'] <= 256 and 0 < row['top5_share'] <= 1
            assert 0 <= row['colour_top2_r2'] <= 1 and 0 <= row['colour_total_r2'] <= 1
    only = found['0']['arms']['mim_only']['points']
    assert all(set(p) == {'iters', 'student'} and p['student'] for p in only)
    assert found['0']['random']['rankme'] >= 1.0
    kept = sorted(p.name for p in (tmp_path / arm_dir('work', 0, 'full') / 'pretrain').glob(
        'iter_*.pth'))
    assert kept == ['iter_1.pth', 'iter_3.pth']  # iter_2 removed: not a point of the study
    # student and teacher exports differ after an EMA step
    probe = tmp_path / arm_dir('work', 0, 'full') / 'probe_student_iter3.json'
    assert json.loads(probe.read_text())['checkpoint'].endswith('backbone_student_iter3.pth')


def test_the_fine_tune_study_takes_each_cause_arm_from_an_export_that_arm_writes():
    for arm, (source, export) in CAUSE_SOURCES.items():
        assert arm in ARMS and source in CAUSE_ARMS
        assert export in exports_of(cause_weights(source))
        where = arm_dir('w', 0, source)
        assert arm_backbone('w', 0, arm, 1000) == f'{where}/backbone_{export}_iter1000.pth'
        assert arm_probe('w', 0, arm, 1000) == f'{where}/probe_{export}_iter1000.json'
    assert CAUSE_SOURCES['wo_mim'] == ('wo_mim', 'teacher')
