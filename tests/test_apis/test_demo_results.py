"""The demo's evidence machinery without training: the seed statistics and the verdict rule,
the rendering of a results file, the README/RESULTS tables generated from the committed results
files (a stale table fails here), the bar chart, and the progress bar reading mmengine's
``vis_data/scalars.json`` of a running command."""
import io
import json
import math
import pathlib
import sys

import pytest

from hvp_mtl.apis.demo import (
    compare,
    compare_gains,
    plot_table,
    render_results,
    summarise,
    unsourced_quotes,
    update_generated_blocks,
)
from hvp_mtl.apis.demo.progress import run_with_progress

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_summary_is_mean_and_sample_std():
    s = summarise([10.0, 12.0, None, 14.0])
    assert s['n'] == 3 and s['mean'] == 12.0 and s['std'] == pytest.approx(2.0)
    assert summarise([5.0]) == dict(mean=5.0, std=None, n=1)
    assert summarise([None, None]) == dict(mean=None, std=None, n=0)


@pytest.mark.parametrize('a, b, verdict', [
    ([10., 11., 12.], [5., 6., 7.], 'helped'),  # diff 5, SE sqrt(1/3 + 1/3) = 0.82
    ([5., 6., 7.], [10., 11., 12.], 'hurt'),
    ([10., 14.], [9., 13.], 'within seed spread'),  # diff 1, SE sqrt(8/2 + 8/2) = 2.83
    ([10.], [5.], 'one seed: no verdict'),
    ([10., 12.], [None, None], 'not measured'),
])
def test_verdict_rule_two_standard_errors_welch(a, b, verdict):
    result = compare(a, b)
    assert result['verdict'] == verdict
    if verdict in ('helped', 'hurt', 'within seed spread'):
        n_a, n_b = len(a), len(b)
        var_a = sum((v - sum(a) / n_a)**2 for v in a) / (n_a - 1)
        var_b = sum((v - sum(b) / n_b)**2 for v in b) / (n_b - 1)
        assert result['se'] == pytest.approx(math.sqrt(var_a / n_a + var_b / n_b))
        assert result['diff'] == pytest.approx(sum(a) / n_a - sum(b) / n_b)


def test_a_difference_just_inside_two_standard_errors_is_not_a_verdict():
    # both sides have variance 2 over 2 seeds: SE = sqrt(2/2 + 2/2) = sqrt(2), 2 SE = 2.83
    edge = 2 * math.sqrt(2)
    assert compare([1. + edge - 0.01, 3. + edge - 0.01], [1., 3.])['verdict'] == \
        'within seed spread'
    assert compare([1. + edge + 0.01, 3. + edge + 0.01], [1., 3.])['verdict'] == 'helped'


def _results(values_hvp, values_random):
    row = dict(task='seg', toolkit='mmseg', model='UperNet', metric='mIoU',
               values=dict(hvp=values_hvp, random=values_random))
    table = dict(title='t', layout='by_metric', arms=dict(hvp='HVP', random='random'),
                 comparisons=[['hvp', 'random']], rows=[row])
    return dict(commit='0123456789abcdef', command='python demo/run_demo.py --seeds 2',
                size='tiny', seeds=[0, 1], tables=dict(main=table), stages={}, wall_s=60.0,
                cpu_s=90.0)


def test_rendered_table_states_mean_std_n_difference_and_rule():
    text = render_results(_results([20.0, 22.0], [10.0, 12.0]))
    row = next(line for line in text.splitlines() if line.startswith('| mmseg'))
    assert '21.00 ± 1.41 (n = 2)' in row and '11.00 ± 1.41 (n = 2)' in row
    assert '+10.00 ± 1.41' in row and row.rstrip(' |').endswith('helped')
    assert 'more than 2 x its standard error' in text and 'seeds 0, 1' in text
    one_seed = render_results(_results([20.0], [10.0]))
    assert 'one seed: no verdict' in one_seed and '(n = 1)' in one_seed


def test_docs_tables_are_generated_from_the_committed_results_files():
    for doc in ('README.md', 'docs/RESULTS.md'):
        text = (ROOT / doc).read_text()
        assert '<!-- demo-table:start docs/results/demo.json -->' in text, doc
        stale = update_generated_blocks(str(ROOT / doc), str(ROOT), check=True)
        assert stale == [], (f'{doc}: the table of {stale} differs from the file; run '
                             'python demo/run_demo.py --render-docs')


def test_numbers_quoted_in_the_docs_prose_are_in_the_committed_results_files():
    for doc in ('README.md', 'docs/RESULTS.md'):
        assert unsourced_quotes(str(ROOT / doc), str(ROOT)) == [], doc


def test_a_quoted_number_not_in_the_results_file_is_reported(tmp_path):
    (tmp_path / 'r.json').write_text(json.dumps(_results([20.0, 22.0], [10.0, 12.0])))
    doc = tmp_path / 'doc.md'
    doc.write_text('21.37 outside the block is not checked\n<!-- demo-quotes r.json -->\n'
                   'HVP 21.00 vs 11.00, a gain of −10.00 ± 1.41, and a pasted 9.99.\n'
                   '<!-- demo-quotes:end -->\n')
    assert unsourced_quotes(str(doc), str(tmp_path)) == ['r.json: 9.99']


def test_a_stale_table_is_detected_and_rewritten(tmp_path):
    (tmp_path / 'r.json').write_text(json.dumps(_results([20.0, 22.0], [10.0, 12.0])))
    doc = tmp_path / 'doc.md'
    doc.write_text('intro\n<!-- demo-table:start r.json -->\nold numbers\n'
                   '<!-- demo-table:end -->\noutro\n')
    assert update_generated_blocks(str(doc), str(tmp_path), check=True) == ['r.json']
    assert 'old numbers' in doc.read_text()  # check mode writes nothing
    assert update_generated_blocks(str(doc), str(tmp_path)) == ['r.json']
    assert update_generated_blocks(str(doc), str(tmp_path), check=True) == []
    text = doc.read_text()
    assert text.startswith('intro\n') and text.endswith('outro\n') and '21.00 ± 1.41' in text


def test_bar_chart_is_written(tmp_path):
    out = plot_table(_results([20.0, 22.0], [10.0, 12.0])['tables']['main'],
                     str(tmp_path / 'chart.png'))
    assert pathlib.Path(out).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_progress_bar_follows_the_scalars_file_of_the_new_launch(tmp_path):
    work = tmp_path / 'work'
    old = work / '20200101_000000' / 'vis_data'  # an earlier launch: not followed
    old.mkdir(parents=True)
    (old / 'scalars.json').write_text(json.dumps(dict(loss=9.0, iter=99)) + '\n')
    script = (
        'import json, os, time\n'
        f'd = os.path.join({str(work)!r}, "20990101_000000", "vis_data")\n'
        'os.makedirs(d)\n'
        'with open(os.path.join(d, "scalars.json"), "w") as f:\n'
        '    for i in (5, 10):\n'
        '        f.write(json.dumps(dict(loss=1.0 / i, loss_mim=0.5, iter=i, step=i)) + "\\n")\n'
        '        f.flush(); time.sleep(0.3)\n'
        '    f.write(json.dumps({"accuracy/top1": 50.0, "step": 10}) + "\\n")\n'
        'print("a log line")\n')
    stream = io.StringIO()
    code, _ = run_with_progress([sys.executable, '-c', script], 'stage', str(tmp_path / 'log'),
                                work_dir=str(work), length=('iter', 10), stream=stream,
                                poll_s=0.1)
    lines = stream.getvalue().splitlines()
    assert code == 0
    bars = [line for line in lines if line.startswith('stage') and '[' in line]
    assert len(bars) == 2 and ' 5/10' in bars[0] and '10/10' in bars[1]
    assert '#' * 24 in bars[1] and 'loss 0.1000' in bars[1] and 'mim 0.5000' in bars[1]
    assert lines[-1].startswith('stage') and 'done in' in lines[-1]
    assert 'a log line' in (tmp_path / 'log').read_text()


def test_ablation_layout_has_a_line_per_pre_training_and_the_difference_in_the_cell():
    from hvp_mtl.apis.demo import table_specs
    spec = table_specs(('hvp', ), ablations=True, sizes=True, tasks=['probe', 'seg'])
    abl = spec['ablations']
    assert list(abl['arms'])[0] == 'full' and list(abl['arms'])[-1] == 'random'
    assert ['wo_mim', 'full'] in abl['comparisons'] and ['full', 'random'] in abl['comparisons']
    assert abl['tasks'] == ('probe', 'seg') and spec['main']['tasks'] == ('probe', 'seg')
    assert spec['sizes']['comparisons'] == [['demo_hvp', 'demo_random'],
                                            ['wide_hvp', 'wide_random']]
    # the shared arms point at the main runs: they run once
    assert abl['runs']['full'][:2] == spec['main']['runs']['hvp'][:2] == ('main', 'hvp')
    assert spec['sizes']['runs']['wide_hvp'][:2] == ('size_wide', 'hvp')
    values = dict(full=[30., 32.], wo_multilabel=[20., 21.], wo_contrastive=[31., 33.],
                  wo_mim=[29., 33.], wo_distillation=[None, None], random=[10., 11.])
    table = dict(title='Table 5', layout='by_arm', arms=abl['arms'],
                 comparisons=abl['comparisons'],
                 rows=[dict(task='seg', toolkit='mmseg', model='UperNet', metric='mIoU',
                            values=values)])
    results = _results([1., 2.], [1., 2.])
    results['tables'] = dict(ablations=table)
    lines = [line for line in render_results(results).splitlines() if line.startswith('| ')]
    assert len(lines) == 1 + len(abl['arms'])  # header + one line per pre-training
    wo_ml = next(line for line in lines if line.startswith('| w/o multi-label'))
    # SE = sqrt(2/2 + 0.5/2) = 1.12
    assert '20.50 ± 0.71 (n = 2)<br>-10.50 ± 1.12: hurt' in wo_ml
    assert 'not measured' in next(line for line in lines if 'distillation' in line)
    full = next(line for line in lines if line.startswith('| HVP-MTL, all four tasks'))
    assert '31.00 ± 1.41 (n = 2)<br>+20.50 ± 1.12: helped' in full


def test_sizes_table_with_mcl_compares_each_pre_training_with_its_own_size_random_init():
    from hvp_mtl.apis.demo import table_specs
    spec = table_specs(('hvp', 'mcl'), sizes=True)['sizes']
    assert list(spec['arms']) == ['demo_hvp', 'demo_mcl', 'demo_random', 'wide_hvp', 'wide_mcl',
                                  'wide_random']
    assert spec['comparisons'] == [['demo_hvp', 'demo_random'], ['demo_mcl', 'demo_random'],
                                   ['wide_hvp', 'wide_random'], ['wide_mcl', 'wide_random']]
    assert spec['gain_comparisons'] == [[['wide_hvp', 'wide_random'], ['demo_hvp', 'demo_random']],
                                        [['wide_mcl', 'wide_random'], ['demo_mcl', 'demo_random']]]
    # the demo-size MCL arm is the main table's MCL run; the wide one pre-trains MCL wide
    assert spec['runs']['demo_mcl'] == ('main', 'mcl', 'mcl', None, 'demo')
    assert spec['runs']['wide_mcl'] == ('size_wide', 'mcl', 'mcl', None, 'wide')
    assert table_specs(('hvp', ), sizes=True)['sizes']['gain_comparisons'] == \
        [[['wide_hvp', 'wide_random'], ['demo_hvp', 'demo_random']]]


@pytest.mark.parametrize('wide_hvp, verdict', [([14., 16.], 'larger'), ([2., 4.], 'smaller'),
                                               ([6., 9.], 'within seed spread')])
def test_difference_of_gains_and_its_standard_error(wide_hvp, verdict):
    wide_random, demo_hvp, demo_random = [5., 5.], [6., 8.], [1., 3.]
    result = compare_gains(wide_hvp, wide_random, demo_hvp, demo_random)
    # gain(wide) = mean(wide_hvp) - 5, SE_wide^2 = var(wide_hvp)/2; gain(demo) = 5, SE_demo^2 = 2
    mean = sum(wide_hvp) / 2
    var = sum((v - mean)**2 for v in wide_hvp)
    assert result['diff'] == pytest.approx(mean - 5. - 5.)
    assert result['se'] == pytest.approx(math.sqrt(var / 2 + 2.))
    assert result['verdict'] == verdict
    assert compare_gains([1.], [0.], [1., 2.], [0., 0.])['verdict'] == 'one seed: no verdict'
    assert compare_gains([None], [0.], [1.], [0.])['verdict'] == 'not measured'


def test_sizes_table_renders_the_difference_of_gains():
    from hvp_mtl.apis.demo import table_specs
    spec = table_specs(('hvp', ), sizes=True, tasks=['seg'])['sizes']
    values = dict(demo_hvp=[6., 8.], demo_random=[1., 3.], wide_hvp=[10., 12.],
                  wide_random=[5., 5.])
    assert spec['layout'] == 'by_arm'  # a line per arm: six arms fit, 17 columns would not
    table = dict(title='Table 6', layout='by_arm', arms=spec['arms'],
                 comparisons=spec['comparisons'], gain_comparisons=spec['gain_comparisons'],
                 rows=[dict(task='seg', toolkit='mmseg', model='UperNet', metric='mIoU',
                            values=values)])
    results = _results([1., 2.], [1., 2.])
    results['tables'] = dict(sizes=table)
    text = render_results(results)
    wide = next(line for line in text.splitlines() if line.startswith('| wide Swin, HVP-MTL'))
    assert wide == '| wide Swin, HVP-MTL | 11.00 ± 1.41 (n = 2)<br>+6.00 ± 1.00: helped |'
    # gain(wide) = 6 (SE 1), gain(demo) = 5 (SE sqrt(1 + 1)); difference 1, SE sqrt(3) = 1.73
    assert ('- UperNet mIoU: gain of wide Swin, HVP-MTL over wide Swin, random − gain of demo '
            'Swin, HVP-MTL over demo Swin, random = +1.00 ± 1.73: within seed spread') in text


def test_the_ablation_weights_are_read_from_the_table_5_configs():
    """One source: the demo zeroes exactly what configs/pretrain/ablations/ zero."""
    from mmengine.config import Config

    from hvp_mtl.apis.demo import ABLATION_CONFIGS, ROOT, ablation_weights, table_specs
    assert ablation_weights('wo_multilabel') == dict(mlc=0.0, distill=0.0)
    assert ablation_weights('wo_mim') == dict(mim=0.0)
    for variant, path in ABLATION_CONFIGS.items():
        weights = ablation_weights(variant)
        resolved = Config.fromfile(str(pathlib.Path(ROOT) / path)).model.loss_weights
        assert weights and all(resolved[k] == v == 0 for k, v in weights.items()), variant
    runs = table_specs(ablations=True)['ablations']['runs']
    assert runs['wo_contrastive'][3] == dict(swav=0.0)
