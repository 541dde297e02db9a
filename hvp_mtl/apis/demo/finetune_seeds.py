"""The fine-tune study over seeds: per-seed study files combined into one table with verdicts.

Each seed's study (``finetune_seed<seed>.json``, written by ``demo/run_demo.py
--finetune-study --first-seed S``) is a complete run of the protocol at that seed: its own
schedule rule, its own lr choices, its own low-label subsets. :func:`combine_finetune_studies`
takes the files of several seeds and lays their final val top-1 and the arms' probes out as the
demo's tables (``{arm: [one value per seed]}``), so :func:`.report.render_table` prints mean ±
standard deviation, the difference from random init ± its Welch standard error, and the verdict
by the demo's rule (:mod:`.stats`). Nothing is re-chosen across seeds: a seed's row is what its
own study chose.
"""

__all__ = ['combine_finetune_studies', 'render_finetune_seeds']

#: (probe key, row label) of the frozen-feature accuracy table (verdicts against random init)
PROBE_ROWS = (('linear', 'linear probe (standardised)'), ('knn_whitened', 'kNN, whitened'),
              ('knn_raw', 'kNN, raw cosine'))
#: (probe key, row label, metric) of the spectrum table (no verdict: neither is "better" higher)
SPECTRUM_ROWS = (('rankme', 'RankMe', 'effective rank'),
                 ('top5_share', 'top-5 principal components', 'variance share'),
                 ('colour_total_r2', 'colour of all features', 'R²'))


def _seeds(seeds):
    return ('seed ' if len(seeds) == 1 else 'seeds ') + ', '.join(map(str, seeds))


def _arms(studies):
    """The arms every study has, in the first study's order (random init first)."""
    arms = dict(studies[0]['arms'])
    for study in studies[1:]:
        arms = {k: v for k, v in arms.items() if k in study['arms']}
    return arms


def _value(study, regime, arm):
    row = study['regimes'].get(regime, {}).get(arm)
    return None if row is None else row['val_top1']


def combine_finetune_studies(results_list, sources=()):
    """One results file of several seeds' studies.

    Args:
        results_list (list[dict]): The loaded ``finetune_seed<seed>.json`` files, one per seed
            (each with key ``study``); seeds must differ.
        sources (Sequence[str]): Where they were read from (recorded, for the reader).

    Returns:
        dict: ``{'finetune_seeds': {seeds, sources, commands, schedules, lrs, tables}}``;
        ``tables`` in the demo's tables format (:mod:`.report`), regimes missing from a seed
        are ``None`` there ("not measured" where no seed has them).
    """
    studies = [r['study'] for r in results_list]
    seeds = [s['seed'] for s in studies]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f'one study per seed expected, got seeds {seeds}')
    arms = _arms(studies)
    regimes = {}
    for study in studies:
        for regime, rows in study['regimes'].items():
            regimes.setdefault(regime, rows['label'])
    comparisons = [[arm, 'random'] for arm in arms if arm != 'random']
    finetune = dict(
        title=f'Fine-tunes by the protocol, {_seeds(seeds)} (val top-1)',
        layout='by_metric', arms=arms, comparisons=comparisons,
        rows=[dict(toolkit='mmpretrain', model=label, metric='top-1',
                   values={arm: [_value(s, regime, arm) for s in studies] for arm in arms})
              for regime, label in regimes.items()])

    def probe_rows(rows):
        return [dict(toolkit='probe', model=label, metric=metric,
                     values={arm: [(s['probes'].get(arm) or {}).get(key) for s in studies]
                             for arm in arms}) for key, label, metric in rows]

    on = _seeds(seeds)
    probes = dict(title=f'The same arms, frozen backbone ({on})', layout='by_metric',
                  arms=arms, comparisons=comparisons,
                  rows=probe_rows((k, label, 'top-1') for k, label in PROBE_ROWS))
    spectrum = dict(title=f'Their spectrum and colour share ({on}; no verdict: neither '
                    'direction is better by itself)', layout='by_metric', arms=arms,
                    comparisons=[], rows=probe_rows(SPECTRUM_ROWS))
    lrs = {regime: {arm: [(s['regimes'].get(regime, {}).get(arm) or {}).get('lr')
                          for s in studies] for arm in arms} for regime in regimes}
    return dict(finetune_seeds=dict(
        seeds=seeds, sources=list(sources), commands=[r.get('command', '') for r in results_list],
        commits=[r.get('commit', '') for r in results_list],
        schedules=[s['schedule'].get('epochs') for s in studies], lrs=lrs,
        regime_labels=regimes,
        tables=dict(finetune=finetune, probes=probes, spectrum=spectrum)))


def render_finetune_seeds(results):
    """Markdown: the two tables (mean ± std, difference ± SE, verdict), then per seed its
    schedule and its chosen lrs, and where the per-seed files are."""
    from .report import render_table  # report dispatches to this module
    combined = results['finetune_seeds']
    seeds, arms = combined['seeds'], combined['tables']['finetune']['arms']
    parts = [render_table(t) for t in combined['tables'].values()]
    schedules = ', '.join(f'seed {s}: {e}' for s, e in zip(seeds, combined['schedules']))
    lines = [f'Schedule chosen by the rule at each seed (epochs): {schedules}.', '',
             'lr chosen on the held-out part, per seed (' + ', '.join(map(str, seeds)) + '):', '']
    for regime, label in combined['regime_labels'].items():
        chosen = '; '.join(f'{arms[arm]} ' + ' / '.join('-' if lr is None else f'{lr:g}'
                                                         for lr in combined['lrs'][regime][arm])
                           for arm in arms)
        lines.append(f'- {label}: {chosen}')
    if combined['sources']:
        lines += ['', 'Per-seed files: ' + ', '.join(f'`{p}`' for p in combined['sources']) + '.']
    if combined.get('note'):
        lines += ['', combined['note']]
    if results.get('command'):
        lines += ['', f'Command: `{results["command"]}` (commit {results.get("commit", "")[:10]}).']
    if 'cpu_s' in results:  # a headline: the times of its stages
        lines += ['', f'Its stages: wall time {results["wall_s"] / 60:.1f} min, CPU time '
                  f'{results["cpu_s"] / 60:.1f} min.']
    return '\n'.join(parts) + '\n' + '\n'.join(lines) + '\n'
