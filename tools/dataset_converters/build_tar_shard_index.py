"""Index tar shards for random access (optionally pack an image folder first).

Examples::

    # pack data/ml-images/images/** into ~1 GB shards, then index them
    python tools/dataset_converters/build_tar_shard_index.py \\
        --pack-from data/ml-images/images --shard-dir data/ml-images/shards \\
        --out data/ml-images/train.tarindex

    # the same, each image stored with its short side at most 600 px (JPEG quality 90),
    # 16 worker processes; run it again after an interruption to resume
    python tools/dataset_converters/build_tar_shard_index.py \\
        --pack-from data/ml-images/images --shard-dir data/ml-images/shards-600 \\
        --out data/ml-images/train-600.tarindex --max-short-side --workers 16

    # index existing uncompressed shards
    python tools/dataset_converters/build_tar_shard_index.py \\
        data/ml-images/shards/*.tar --out data/ml-images/train.tarindex

Then read images with ``LoadImageFromFile(backend_args=dict(
backend='tar_shards', index=..., root=<the folder that was packed>))``. The
index of a pack records each image's original and stored size
(``TarShardIndex.image_size``). Why 600 px: ``RandomResizedCrop(224, scale=(0.2,
1.0))`` at its smallest, most elongated crop (area 0.2, aspect 3/4) spans
``sqrt(0.2 * 3/4) = 0.387`` of a square image's side, so a 224-px crop needs a
short side of at least 579 px; 600 leaves 232 px.
"""
import argparse
import os
import sys
import time

from hvp_mtl.datasets.tar_shard_packer import (
    DEFAULT_JPEG_QUALITY,
    DEFAULT_MAX_SHORT_SIDE,
    pack_folder,
    read_manifests,
)
from hvp_mtl.datasets.tar_shards import build_tar_index


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('shards', nargs='*', help='uncompressed .tar shards')
    parser.add_argument('--out', required=True, help='index directory')
    parser.add_argument('--pack-from', help='image folder to pack first')
    parser.add_argument('--shard-dir', help='where packed shards go')
    parser.add_argument('--shard-mb', type=float, default=1024,
                        help='source MB per shard (resized shards come out smaller)')
    parser.add_argument('--max-short-side', type=int, nargs='?', const=DEFAULT_MAX_SHORT_SIDE,
                        help='store images resized to this short side at most (alone: '
                             f'{DEFAULT_MAX_SHORT_SIDE}); default: store files unchanged')
    parser.add_argument('--jpeg-quality', type=int, default=DEFAULT_JPEG_QUALITY,
                        help='JPEG quality of the resized images')
    parser.add_argument('--workers', type=int, default=min(8, os.cpu_count() or 1),
                        help='packing processes')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    shards = list(args.shards)
    if args.max_short_side is not None and args.max_short_side < 1:
        print(f'error: --max-short-side must be >= 1, got {args.max_short_side}',
              file=sys.stderr)
        return 2
    if args.pack_from:
        try:
            shards += pack_folder(args.pack_from, args.shard_dir or args.out + '.shards',
                                  int(args.shard_mb * 2**20), args.max_short_side,
                                  args.jpeg_quality, args.workers, not args.no_progress)
        except (OSError, ValueError) as error:
            print(f'error: {error}', file=sys.stderr)
            return 1
    if not shards:
        print('error: no shards given', file=sys.stderr)
        return 1
    index = build_tar_index(shards, args.out, read_manifests(shards))
    print(f'{len(index)} members of {len(shards)} shards indexed in '
          f'{args.out} ({time.perf_counter() - start:.1f}s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
