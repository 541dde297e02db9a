"""Fill the paper's Tables 1-6 with your own runs: paper number, ours, difference.

The core of ``tools/benchmark_tables.py``: reads the evaluation logs mmengine wrote into the work
dirs of downstream runs and matches each run to a row of ``tools/paper_tables.yml``.

A row's run is ``<work dirs>/<run name>`` (by default the stem of the row's fine-tune config, the
name ``tools/train.py`` gives the work dir) or the directory given with ``--run ROW_ID=DIR``. The
newest evaluation in that work dir counts (a ``tools/test.py`` result or the last validation).
Cells the paper does not state say "not stated"; rows without a work dir say "not run"; runs that
stopped early are marked with their progress.
"""
import io
import os.path as osp

import yaml

from .work_dir_logs import evaluations, latest_metric, progress

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAPER_TABLES = osp.join(ROOT, 'tools', 'paper_tables.yml')
NOT_STATED, NOT_RUN, NO_EVAL = 'not stated', 'not run', 'no evaluation yet'
CSV_FIELDS = [
    'table', 'row_id', 'row', 'metric', 'paper', 'paper_says', 'reference', 'reference_source',
    'ours', 'ours_minus_paper', 'status', 'work_dir'
]


def load_tables(path=PAPER_TABLES):
    """Load and check the table definitions.

    Args:
        path (str): YAML file in the format of ``tools/paper_tables.yml``.

    Returns:
        list[dict]: The tables, each with ``id``, ``title``, ``metrics`` and ``rows``.

    Raises:
        ValueError: A row lacks an id/name, repeats an id, or gives a number for a metric the
            table does not have; the message names the file and the row.
    """
    with open(path, encoding='utf-8') as f:
        tables = yaml.safe_load(f)['tables']
    seen = set()
    for table in tables:
        names = {m['name'] for m in table['metrics']}
        for row in table['rows']:
            where = f'{path}: table {table["id"]}, row {row.get("id", row.get("name"))!r}'
            if 'id' not in row or 'name' not in row:
                raise ValueError(f'{where}: every row needs an id and a name')
            if row['id'] in seen:
                raise ValueError(f'{where}: duplicate row id')
            seen.add(row['id'])
            for field in ('paper', 'reference'):
                unknown = set(row.get(field) or {}) - names
                if unknown:
                    raise ValueError(f'{where}: {field} names unknown metric(s) {sorted(unknown)}')
            for metric, ref in (row.get('reference') or {}).items():
                if not isinstance(ref, dict) or set(ref) != {'value', 'source'}:
                    raise ValueError(
                        f'{where}: reference {metric!r} needs exactly a value and a source')
    return tables


def run_name(row):
    """The work-dir name of a row: ``run``, else its fine-tune config's stem, else ``None``."""
    if row.get('run'):
        return row['run']
    if row.get('config'):
        return osp.splitext(osp.basename(row['config']))[0]
    return None


def find_run(row, work_dirs, overrides):
    """The work dir that holds a row's run, or ``None`` when it was not run."""
    if row['id'] in overrides:
        return overrides[row['id']] if osp.isdir(overrides[row['id']]) else None
    name = run_name(row)
    if name is None:
        return None
    for root in work_dirs:
        if osp.isdir(osp.join(root, name)):
            return osp.join(root, name)
    return None


def describe_progress(work_dir):
    """Run status: ``'complete'``, ``'partial (epoch 3/12)'``, ``'evaluated'`` (test only) or
    ``'unknown length'``."""
    unit, done, planned = progress(work_dir)
    if done is None:
        return 'evaluated' if evaluations(work_dir) else NO_EVAL
    if planned is None:
        return 'unknown length'
    return 'complete' if done >= planned else f'partial ({unit} {done}/{planned})'


def fmt(value, digits=2):
    """A measured number with ``digits`` decimals; text passes through."""
    return f'{value:.{digits}f}' if isinstance(value, (int, float)) else str(value)


def fmt_stated(value):
    """A stated number as its source gives it (47.9 stays 47.9, 84.0 stays 84.0)."""
    return str(float(value)) if isinstance(value, (int, float)) else str(value)


def fill_tables(tables, work_dirs, overrides=None):
    """One result line per (row, metric).

    Args:
        tables (list[dict]): From :func:`load_tables`.
        work_dirs (list[str]): Folders that hold the runs' work dirs.
        overrides (dict[str, str], optional): Row id -> work dir.

    Returns:
        list[dict]: Lines with the keys of ``CSV_FIELDS``; numbers stay floats.
    """
    overrides = overrides or {}
    lines = []
    for table in tables:
        for row in table['rows']:
            work_dir = find_run(row, work_dirs, overrides)
            status = describe_progress(work_dir) if work_dir else NOT_RUN
            for metric in table['metrics']:
                paper = (row.get('paper') or {}).get(metric['name'], NOT_STATED)
                ref = (row.get('reference') or {}).get(metric['name']) or {}
                ours = NOT_RUN
                if work_dir:
                    value, _ = latest_metric(work_dir, metric['key'])
                    ours = NO_EVAL if value is None else value * metric.get('scale', 1)
                numeric = isinstance(ours, float) and isinstance(paper, (int, float))
                diff = ours - paper if numeric else ''
                lines.append(
                    dict(table=table['id'],
                         row_id=row['id'],
                         row=row['name'],
                         metric=metric['name'],
                         paper=float(paper) if isinstance(paper, (int, float)) else paper,
                         paper_says=row.get('says', ''),
                         reference=ref.get('value', ''),
                         reference_source=ref.get('source', ''),
                         ours=ours,
                         ours_minus_paper=diff,
                         status=status,
                         work_dir=work_dir or ''))
    return lines


def render_markdown(tables, lines):
    """Markdown: one section per table, one line per (row, metric)."""
    out = io.StringIO()
    for table in tables:
        if not table['rows']:
            continue
        out.write(f'### Table {table["id"]}: {table["title"]}\n\n')
        out.write('| method | metric | paper | reference | ours | ours − paper | run |\n')
        out.write('|---|---|---|---|---|---|---|\n')
        for line in (row for row in lines if row['table'] == table['id']):
            ref = f'{fmt_stated(line["reference"])} ({line["reference_source"]})' if line[
                'reference'] != '' else '—'
            diff = f'{line["ours_minus_paper"]:+.2f}' if line['ours_minus_paper'] != '' else '—'
            out.write(f'| {line["row"]} | {line["metric"]} | {fmt_stated(line["paper"])} | {ref} | '
                      f'{fmt(line["ours"])} | {diff} | {line["status"]} |\n')
        notes = [(r['name'], r['says']) for r in table['rows'] if r.get('says')]
        if notes:
            out.write('\n' + '\n'.join(f'- {name}: {says}' for name, says in notes) + '\n')
        out.write('\n')
    return out.getvalue()



def parse_run_overrides(items, tables, source=PAPER_TABLES):
    """``ROW_ID=DIR`` items of ``--run`` as a dict, every id checked against the tables.

    Args:
        items (list[str]): ``ROW_ID=DIR`` strings.
        tables (list[dict]): From :func:`load_tables`.
        source (str): The table file, named in the error.

    Returns:
        dict[str, str]: Row id -> work dir.

    Raises:
        SystemExit: An item without ``=`` or naming an unknown row id.
    """
    overrides = {}
    for item in items:
        row_id, sep, path = item.partition('=')
        if not sep:
            raise SystemExit(f'--run expects ROW_ID=DIR, got {item!r}')
        overrides[row_id] = path
    known = {r['id'] for t in tables for r in t['rows']}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise SystemExit(f'--run names unknown row id(s) {unknown}; see {source}')
    return overrides


def only_stated(tables, lines):
    """Keep the rows with a number to compare with (paper or reference) or a run.

    Returns:
        tuple[list[dict], list[dict]]: The tables and the lines, filtered alike.
    """
    keep = {
        line['row_id']
        for line in lines
        if isinstance(line['paper'], float) or line['reference'] != '' or line['work_dir']
    }
    lines = [line for line in lines if line['row_id'] in keep]
    tables = [dict(t, rows=[r for r in t['rows'] if r['id'] in keep]) for t in tables]
    return tables, lines
