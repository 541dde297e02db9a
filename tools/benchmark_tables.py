"""Fill the paper's Tables 1-6 with your own runs: paper number, ours, difference.

Reads the evaluation logs mmengine wrote into the work dirs of downstream runs, matches each run to
a row of ``tools/paper_tables.yml`` and writes Markdown and CSV::

    python tools/benchmark_tables.py --work-dirs work_dirs [--run t2.hvp_mtl=PATH ...]
        [--out-md results.md] [--out-csv results.csv] [--tables 2 3] [--demo work_dirs/demo]

Matching, filling and rendering live in :mod:`hvp_mtl.apis.paper_tables`. ``--demo`` appends the
table of a demo work dir.
"""
import argparse
import csv

from hvp_mtl.apis.paper_tables import (
    CSV_FIELDS,
    PAPER_TABLES,
    fill_tables,
    fmt,
    load_tables,
    only_stated,
    parse_run_overrides,
    render_markdown,
)
from hvp_mtl.utils.atomic_io import atomic_write


def write_csv(lines, path):
    """Write the result lines as CSV (atomically)."""
    with atomic_write(path, newline='', encoding='utf-8') as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for line in lines:
            writer.writerow({k: fmt(v, 4) if isinstance(v, float) else v for k, v in line.items()})


def write_text(text, path):
    """Write a text file atomically."""
    with atomic_write(path, encoding='utf-8') as f:
        f.write(text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dirs',
                        nargs='+',
                        default=['work_dirs'],
                        help='folders holding the runs\' work dirs')
    parser.add_argument(
        '--run',
        nargs='+',
        default=[],
        metavar='ROW_ID=DIR',
        help='point a row at a work dir, e.g. t2.supervised_in1k=work_dirs/swin-b_sup')
    parser.add_argument('--tables', nargs='+', type=int, help='only these tables (default: all)')
    parser.add_argument('--paper-tables', default=PAPER_TABLES, help='table definitions (YAML)')
    parser.add_argument('--demo', help='a demo/run_demo.py work dir whose table to append')
    parser.add_argument('--only-stated',
                        action='store_true',
                        help='leave out rows with neither a paper/reference number nor a run')
    parser.add_argument('--out-md', help='write the Markdown here (it is always printed)')
    parser.add_argument('--out-csv', help='write the CSV here')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    tables = load_tables(args.paper_tables)
    if args.tables:
        tables = [t for t in tables if t['id'] in args.tables]
    overrides = parse_run_overrides(args.run, tables, args.paper_tables)
    lines = fill_tables(tables, args.work_dirs, overrides)
    if args.only_stated:
        tables, lines = only_stated(tables, lines)
    text = render_markdown(tables, lines)
    if args.demo:
        from hvp_mtl.apis.demo.table import render_demo_markdown
        text += render_demo_markdown(args.demo)
    print(text)
    if args.out_md:
        write_text(text, args.out_md)
    if args.out_csv:
        write_csv(lines, args.out_csv)
    return lines


if __name__ == '__main__':
    main()
