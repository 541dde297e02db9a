"""Markdown of a demo results file, and the generated tables in README.md and docs/RESULTS.md.

A results file (``<work-dir>/results.json``, committed copies under ``docs/results/``) holds::

    commit, command, size, seeds, stages ({stage: {wall, cpu}}), wall_s, cpu_s,
    tables: {name: {title, layout ('by_metric' | 'by_arm'), arms ({arm: label}),
                    comparisons ([[arm, baseline], ...]),
                    rows ([{task, toolkit, model, metric, values: {arm: [per seed]}}])}}

Everything printed is computed here from that file, so the docs can be regenerated from the
committed copy: a block of a Markdown file between ``<!-- demo-table:start FILE -->`` and
``<!-- demo-table:end -->`` is the rendering of ``FILE`` (a path relative to the repository): a
tables file as above, a learning curve (``curve``: :func:`.learning_curve.render_learning_curve`)
a cause study (``cause``: :func:`.cause.render_cause`), a fine-tune study (``study``) or
several seeds' studies combined (``finetune_seeds``: :func:`.finetune_seeds.render_finetune_seeds`).
"""
import json
import os.path as osp
import re

from hvp_mtl.utils.atomic_io import atomic_write

from .cause import render_cause
from .finetune_report import render_finetune_study
from .finetune_seeds import render_finetune_seeds
from .learning_curve import render_learning_curve
from .objectives import render_objectives, run_learned, unlearned_supervision_notes
from .stats import VERDICT_RULE, compare, compare_gains, summarise

__all__ = ['render_results', 'render_table', 'update_generated_blocks', 'closing_note',
           'unsourced_quotes']

BLOCK = re.compile(
    r'(<!-- demo-table:start (?P<file>\S+) -->\n)(?P<body>.*?)(<!-- demo-table:end -->)', re.S)
QUOTES = re.compile(
    r'<!-- demo-quotes (?P<files>[^>]*?) -->\n(?P<body>.*?)<!-- demo-quotes:end -->', re.S)
NUMBER = re.compile(r'\d+\.\d\d')


def _cell(values):
    s = summarise(values)
    if s['mean'] is None:
        return 'not measured'
    if s['std'] is None:
        return f'{s["mean"]:.2f} (n = 1)'
    return f'{s["mean"]:.2f} ± {s["std"]:.2f} (n = {s["n"]})'


def _diff(values, baseline):
    c = compare(values, baseline)
    if c['diff'] is None:
        return '—', c['verdict']
    se = '' if c['se'] is None else f' ± {c["se"]:.2f}'
    return f'{c["diff"]:+.2f}{se}', c['verdict']


def _by_metric(table):
    """One line per metric; a column per arm, then difference and verdict per comparison."""
    arms, comps = table['arms'], table['comparisons']
    head = ['toolkit', 'model', 'metric'] + list(arms.values())
    for arm, base in comps:
        head += [f'{arms[arm]} − {arms[base]} (± SE)', 'verdict']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for row in table['rows']:
        cells = [row['toolkit'], row['model'], row['metric']]
        cells += [_cell(row['values'][arm]) for arm in arms]
        for arm, base in comps:
            cells += list(_diff(row['values'][arm], row['values'][base]))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def _by_arm(table):
    """One line per arm (e.g. each ablation); a column per metric, the difference to the
    comparison's baseline and its verdict inside the cell."""
    rows, base_of = table['rows'], dict(table['comparisons'])
    head = ['pre-training'] + [f'{r["toolkit"]} {r["model"]} {r["metric"]}' for r in rows]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for arm, label in table['arms'].items():
        cells = [label]
        for row in rows:
            cell = _cell(row['values'][arm])
            if arm in base_of and cell != 'not measured':
                diff, verdict = _diff(row['values'][arm], row['values'][base_of[arm]])
                cell += f'<br>{diff}: {verdict}'
            cells.append(cell)
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def _gain_lines(table):
    """One line per metric and gain comparison: (gain of one pair) - (gain of the other)."""
    arms, lines = table['arms'], []
    for (a, a0), (b, b0) in table.get('gain_comparisons', []):
        for row in table['rows']:
            v = row['values']
            c = compare_gains(v[a], v[a0], v[b], v[b0])
            if c['diff'] is None:
                continue
            se = '' if c['se'] is None else f' ± {c["se"]:.2f}'
            lines.append(f'- {row["model"]} {row["metric"]}: gain of {arms[a]} over '
                         f'{arms[a0]} − gain of {arms[b]} over {arms[b0]} = '
                         f'{c["diff"]:+.2f}{se}: {c["verdict"]}')
    return lines


def render_table(table):
    """Markdown of one table of a results file (title, table, the verdict rule, and the
    differences of gains when the table compares gains)."""
    lines = [f'#### {table["title"]}', '']
    lines += _by_arm(table) if table.get('layout') == 'by_arm' else _by_metric(table)
    if table.get('layout') == 'by_arm':
        bases = sorted({table['arms'][b] for _, b in table['comparisons']})
        lines += ['', "Second line of a cell: difference (± SE) to the line's baseline, "
                  f'{" / ".join(bases)}.']
    gains = _gain_lines(table)
    if gains:
        lines += ['', 'Difference of gains (SE = sqrt(SE_1^2 + SE_2^2); "larger" / "smaller" by '
                  'the same 2 x SE rule):', ''] + gains
    return '\n'.join(lines) + '\n'


def render_results(results):
    """Markdown of a whole results file: its tables, the rule, the run's seeds, command, time."""
    parts = [render_table(t) for t in results['tables'].values()]
    objectives = results.get('objectives')
    if objectives:
        notes = unlearned_supervision_notes(objectives, {k: r['label']
                                                         for k, r in objectives.items()})
        parts.append(render_objectives(objectives) + ''.join(f'\n{n}\n' for n in notes))
    seeds = results['seeds']
    foot = [
        f'Mean ± standard deviation over seeds {", ".join(map(str, seeds))} (n = {len(seeds)}; '
        'the seed sets pre-training and fine-tuning, the generated world is the same)'
        + ('.' if results.get('world', 'colour') == 'colour' else
           f'; world: {results["world"]} (the colour-free variant of the demo world).'),
        f'Verdict rule: {VERDICT_RULE}',
        f'Command: `{results["command"]}` (size {results["size"]}, commit '
        f'{results["commit"][:10]}); wall time {results["wall_s"] / 60:.1f} min, CPU time '
        f'{results["cpu_s"] / 60:.1f} min.',
    ]
    return '\n'.join(parts) + '\n' + '\n\n'.join(foot) + '\n'


def closing_note(results):
    """What the measured numbers say, one line per comparison, from the numbers themselves."""
    lines = []
    for table in results['tables'].values():
        arms = table['arms']
        for row in table['rows']:
            for arm, base in table['comparisons']:
                diff, verdict = _diff(row['values'][arm], row['values'][base])
                lines.append(f'- {row["toolkit"]} {row["model"]} {row["metric"]}: '
                             f'{arms[arm]} vs {arms[base]} {diff}: {verdict}.')
    objectives = results.get('objectives') or {}
    for run in objectives.values():
        for task, entry in run['objectives'].items():
            k, n = sum(v for v in entry['learned'] if v), len(entry['learned'])
            lines.append(f'- {run["label"]}, objective {task}: '
                         f'{"learned" if run_learned(entry) else "not learned"} ({k} of {n} '
                         'seeds).')
    lines += [f'- {n}' for n in unlearned_supervision_notes(
        objectives, {k: r['label'] for k, r in objectives.items()})]
    return '\n'.join(lines) + '\n'


def render_results_file(results):
    """The Markdown of any demo results file: a cause or fine-tune study (one seed, or seeds
    combined), a learning curve or tables."""
    if 'cause' in results:
        return render_cause(results)
    if 'study' in results:
        return render_finetune_study(results)
    if 'finetune_seeds' in results:
        return render_finetune_seeds(results)
    if 'curve' in results:
        return render_learning_curve(results)
    return render_results(results)


def update_generated_blocks(markdown_file, root, check=False):
    """Re-render every ``demo-table`` block of ``markdown_file`` from the file its marker names.

    Args:
        markdown_file (str): A Markdown file with generated blocks.
        root (str): The repository root the marker paths are relative to.
        check (bool): Only compare; write nothing.

    Returns:
        list[str]: The results files whose block was stale (rewritten unless ``check``).
    """
    with open(markdown_file, encoding='utf-8') as f:
        text = f.read()
    stale = []

    def render(match):
        path = osp.join(root, match['file'])
        if not osp.isfile(path):
            raise FileNotFoundError(f'{markdown_file}: the demo-table block names {match["file"]}, '
                                    'which does not exist')
        with open(path, encoding='utf-8') as f:
            body = render_results_file(json.load(f))
        if body != match['body']:
            stale.append(match['file'])
        return match.group(1) + body + match.group(4)

    new = BLOCK.sub(render, text)
    if stale and not check:
        with atomic_write(markdown_file, encoding='utf-8') as f:
            f.write(new)
    return stale


def unsourced_quotes(markdown_file, root):
    """Numbers quoted in prose that no named results file contains.

    Prose between ``<!-- demo-quotes FILE [FILE ...] -->`` and ``<!-- demo-quotes:end -->``
    may quote any number with two decimals that the rendering of those files (tables with their
    gain lines, and :func:`closing_note`) prints; signs are ignored, so "-7.00" and "−7.00"
    both match "-7.00".

    Returns:
        list[str]: ``'FILE: NUMBER'`` for every quoted number found in none of them.
    """
    with open(markdown_file, encoding='utf-8') as f:
        text = f.read()
    missing = []
    for match in QUOTES.finditer(text):
        rendered = ''
        for name in match['files'].split():
            with open(osp.join(root, name), encoding='utf-8') as f:
                results = json.load(f)
            rendered += render_results_file(results) + (
                closing_note(results) if 'tables' in results else '')
        known = set(NUMBER.findall(rendered))
        missing += [f'{match["files"]}: {n}' for n in NUMBER.findall(match['body'])
                    if n not in known]
    return missing
