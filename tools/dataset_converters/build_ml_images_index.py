"""Build the memory-mapped index of a Tencent ML-Images list.

Example::

    python tools/dataset_converters/build_ml_images_index.py \\
        data/ml-images/train.txt --num-classes 11166

writes ``data/ml-images/train.txt.index/`` (or ``--out``), which
``TencentMLImages`` opens in about a millisecond. The list is parsed in
vectorised blocks by ``--workers`` processes. A malformed line, a class id
outside [0, C) or a confidence outside [0, 1] stops the build with the file,
line number and line; with ``--skip-invalid`` such lines are left out,
counted, printed (first 20) and all listed in ``<index>/rejected.txt``.
"""
import argparse
import os
import os.path as osp
import sys
import time

from hvp_mtl.datasets.ml_images_format import MLImagesFormatError
from hvp_mtl.datasets.ml_images_index import default_index_dir
from hvp_mtl.datasets.ml_images_index_builder import build_index


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('list_file', help='ML-Images list (train.txt, val.txt)')
    parser.add_argument('--out', help='index directory (default: LIST.index)')
    parser.add_argument('--num-classes', type=int, default=11166,
                        help='class ids must be in [0, C) (default 11166)')
    parser.add_argument('--skip-invalid', action='store_true',
                        help='report and count invalid lines instead of '
                        'stopping at the first one')
    parser.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1),
                        help='parsing processes (default: min(2, CPUs))')
    parser.add_argument('--chunk-mb', type=float, default=8,
                        help='MB parsed per vectorised block')
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = args.out or default_index_dir(args.list_file)
    start = time.perf_counter()
    try:
        index = build_index(args.list_file, out, num_classes=args.num_classes,
                            skip_invalid=args.skip_invalid,
                            chunk_bytes=int(args.chunk_mb * 2**20),
                            workers=args.workers,
                            progress=not args.no_progress)
    except MLImagesFormatError as err:
        print(f'error: {err}\n(no index written; fix the line or pass '
              '--skip-invalid to leave such lines out)', file=sys.stderr)
        return 1
    meta = index.meta
    print(f'{args.list_file}: {meta["num_samples"]} images, '
          f'{meta["num_labels"]} labels '
          f'({meta["num_labels"] / max(meta["num_samples"], 1):.2f} per image), '
          f'{meta["num_blank_lines"]} blank lines, {meta["num_rejected"]} '
          f'rejected; index {out} built in {time.perf_counter() - start:.1f}s')
    if index.rejected:
        for err in index.rejected[:20]:
            print(f'rejected: {err}')
        print(f'all {len(index.rejected)} rejected lines are listed in '
              f'{osp.join(out, "rejected.txt")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
