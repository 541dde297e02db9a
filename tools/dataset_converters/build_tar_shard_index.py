"""Index tar shards for random access (optionally pack an image folder first).

Examples::

    # pack data/ml-images/images/** into ~1 GB shards, then index them
    python tools/dataset_converters/build_tar_shard_index.py \\
        --pack-from data/ml-images/images --shard-dir data/ml-images/shards \\
        --out data/ml-images/train.tarindex

    # index existing uncompressed shards
    python tools/dataset_converters/build_tar_shard_index.py \\
        data/ml-images/shards/*.tar --out data/ml-images/train.tarindex

Then read images with ``LoadImageFromFile(backend_args=dict(
backend='tar_shards', index=..., root=<the folder that was packed>))``.
"""
import argparse
import sys
import time

from hvp_mtl.datasets.tar_shard_packer import pack_folder
from hvp_mtl.datasets.tar_shards import build_tar_index


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('shards', nargs='*', help='uncompressed .tar shards')
    parser.add_argument('--out', required=True, help='index directory')
    parser.add_argument('--pack-from', help='image folder to pack first')
    parser.add_argument('--shard-dir', help='where packed shards go')
    parser.add_argument('--shard-mb', type=float, default=1024)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    shards = list(args.shards)
    if args.pack_from:
        shards += pack_folder(args.pack_from, args.shard_dir or args.out + '.shards',
                              int(args.shard_mb * 2**20))
    if not shards:
        print('error: no shards given', file=sys.stderr)
        return 1
    index = build_tar_index(shards, args.out)
    print(f'{len(index)} members of {len(shards)} shards indexed in '
          f'{args.out} ({time.perf_counter() - start:.1f}s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
