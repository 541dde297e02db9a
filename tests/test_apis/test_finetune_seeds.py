"""Several seeds' fine-tune studies combined: the values per seed, mean ± std, the Welch SE and
the verdict, checked against numpy; the CLI writes a file the docs' generated blocks render."""
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest

from hvp_mtl.apis.demo import ROOT
from hvp_mtl.apis.demo.finetune_seeds import combine_finetune_studies
from hvp_mtl.apis.demo.headline import headline_choices
from hvp_mtl.apis.demo.report import render_results_file, update_generated_blocks

ARMS = dict(random='random init', hvp='HVP-MTL (EMA teacher)')
#: seed -> (random, hvp) final val top-1 of the full and the 10-per-class regimes
VALUES = {0: dict(full=(91.25, 82.25), low10=(22.75, 21.25)),
          1: dict(full=(90.00, 80.50), low10=(24.00, 25.50)),
          2: dict(full=(92.50, 84.00), low10=(21.00, 24.75))}


def _study(seed, regimes=('full', 'low10')):
    labels = dict(full='all of train', low10='10 images per class')
    rows = {r: dict(label=labels[r], **{arm: dict(val_top1=VALUES[seed][r][i], lr=1e-3 * (i + 1),
                                                  grid={})
                                        for i, arm in enumerate(ARMS)}) for r in regimes}
    probe = dict(rankme=28.0 + seed, top5_share=0.7, colour_total_r2=0.6, linear=37.0 + seed,
                 knn_raw=40.0, knn_whitened=41.0)
    hvp = dict(probe, rankme=6.0, linear=53.0 - seed)
    return dict(command=f'python demo/run_demo.py --finetune-study --first-seed {seed}',
                commit='0123456789ab', study=dict(
                    seed=seed, arms=ARMS, schedule=dict(epochs=64 if seed else 32),
                    regimes=rows, probes=dict(random=probe, hvp=hvp)))


def _welch(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)


def test_the_combined_rows_are_the_seeds_values_with_welch_verdicts():
    combined = combine_finetune_studies([_study(s) for s in (0, 1, 2)], ['a', 'b', 'c'])
    text = render_results_file(combined)
    for regime, label in (('full', 'all of train'), ('low10', '10 images per class')):
        rnd = [VALUES[s][regime][0] for s in (0, 1, 2)]
        hvp = [VALUES[s][regime][1] for s in (0, 1, 2)]
        diff, se = np.mean(hvp) - np.mean(rnd), _welch(hvp, rnd)
        verdict = 'hurt' if diff < -2 * se else 'helped' if diff > 2 * se else 'within seed spread'
        assert (f'| mmpretrain | {label} | top-1 | {np.mean(rnd):.2f} ± {np.std(rnd, ddof=1):.2f} '
                f'(n = 3) | {np.mean(hvp):.2f} ± {np.std(hvp, ddof=1):.2f} (n = 3) | '
                f'{diff:+.2f} ± {se:.2f} | {verdict} |') in text
    assert '| all of train | top-1 |' in text and '| hurt |' in text
    assert '| 10 images per class | top-1 |' in text and 'within seed spread' in text
    # probes: accuracies judged, the spectrum only described
    assert '| probe | linear probe (standardised) | top-1 | 38.00 ± 1.00 (n = 3) | 52.00 ± 1.00' \
        in text
    spectrum = text[text.index('Their spectrum'):]
    assert '| probe | RankMe | effective rank | 29.00 ± 1.00 (n = 3) | 6.00 ± 0.00 (n = 3) |' \
        in spectrum.split('\n\n')[1]
    assert 'Schedule chosen by the rule at each seed (epochs): seed 0: 32, seed 1: 64, seed 2: 64' \
        in text
    assert '- all of train: random init 0.001 / 0.001 / 0.001; HVP-MTL (EMA teacher) 0.002 / ' \
        '0.002 / 0.002' in text


def test_a_regime_missing_at_one_seed_counts_the_others_and_a_seed_twice_is_refused():
    combined = combine_finetune_studies([_study(0), _study(1, regimes=('low10', ))])
    rows = {r['model']: r['values'] for r in combined['finetune_seeds']['tables']['finetune']
            ['rows']}
    assert rows['all of train']['hvp'] == [82.25, None]
    assert '82.25 (n = 1)' in render_results_file(combined)
    with pytest.raises(ValueError, match='one study per seed'):
        combine_finetune_studies([_study(1), _study(1)])


def test_the_cli_writes_a_file_that_a_generated_block_renders(tmp_path):
    files = []
    for seed in (0, 1):
        files.append(str(tmp_path / f'finetune_seed{seed}.json'))
        with open(files[-1], 'w', encoding='utf-8') as f:
            json.dump(_study(seed), f)
    work = tmp_path / 'work'
    out = subprocess.run([sys.executable, osp.join(ROOT, 'demo', 'run_demo.py'),
                          '--combine-studies', *files, '--work-dir', str(work)],
                         capture_output=True, text=True, check=True).stdout
    assert 'Fine-tunes by the protocol, seeds 0, 1 (val top-1)' in out
    written = json.loads((work / 'finetune_seeds.json').read_text(encoding='utf-8'))
    assert written['command'].startswith('python demo/run_demo.py --combine-studies')
    assert written['finetune_seeds']['seeds'] == [0, 1]
    page = tmp_path / 'page.md'
    page.write_text(f'<!-- demo-table:start {work.name}/finetune_seeds.json -->\n'
                    'stale\n<!-- demo-table:end -->\n', encoding='utf-8')
    assert update_generated_blocks(str(page), str(tmp_path)) == ['work/finetune_seeds.json']
    assert render_results_file(written) in page.read_text(encoding='utf-8')


def test_the_headline_takes_the_seeds_own_choices_or_the_most_frequent():
    studies = [_study(s) for s in (0, 1, 2)]
    studies[2]['study']['regimes']['low10']['hvp']['lr'] = 3e-3
    combined = combine_finetune_studies(studies)
    own = headline_choices(combined, 2)
    assert own == dict(epochs=64, lr=dict(random=1e-3, hvp=3e-3),
                       source="seed 2's own choices in the study over seeds")
    other = headline_choices(combined, 7)
    assert other['epochs'] == 64 and other['lr'] == dict(random=1e-3, hvp=2e-3)
    assert other['source'].startswith('the most frequent choices of seeds 0, 1, 2')
    with pytest.raises(KeyError, match="no regime 'low50'"):
        headline_choices(combined, 0, regime='low50')
