"""Write the procedurally generated demo world (all four task formats).

Example::

    python tools/dataset_converters/make_demo_data.py --out data/demo --seed 0

writes ``pretrain/`` (Tencent ML-Images format), ``cls/`` (ImageNet layout),
``coco/`` (COCO instances) and ``ade/`` (ADE20K layout) under ``--out``; see
``hvp_mtl/datasets/demo_world`` and docs/DATA.md. The same seed always gives
byte-identical files.
"""
import argparse
import time

from hvp_mtl.apis.demo.recipes import SIZES
from hvp_mtl.datasets.demo_world import make_demo_world

DEFAULT_WORLD = SIZES['default']['world']  # what `make demo` generates


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='data/demo', help='output directory')
    parser.add_argument('--seed', type=int, default=0, help='master seed')
    parser.add_argument('--num-pretrain', type=int, default=DEFAULT_WORLD['num_pretrain'],
                        help='pre-training images (1/8 become val.txt)')
    parser.add_argument('--num-cls', type=int, default=DEFAULT_WORLD['num_cls'],
                        help='classification images (1/4 become val)')
    parser.add_argument('--num-det', type=int, default=DEFAULT_WORLD['num_det'],
                        help='detection images (1/4 become val)')
    parser.add_argument('--num-seg', type=int, default=DEFAULT_WORLD['num_seg'],
                        help='segmentation images (1/4 become validation)')
    parser.add_argument('--size', type=int, default=64, help='image side (px)')
    parser.add_argument('--palette', choices=['colour', 'gray'], default='colour',
                        help='gray: the colour-free world (R = G = B, gray levels instead of '
                        'colours, the same scenes, files and class counts)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    make_demo_world(args.out, seed=args.seed, num_pretrain=args.num_pretrain,
                    num_cls=args.num_cls, num_det=args.num_det,
                    num_seg=args.num_seg, size=args.size, palette=args.palette)
    print(f'demo world (seed {args.seed}, {args.size} px, {args.palette}) written to '
          f'{args.out} in {time.perf_counter() - start:.1f}s')


if __name__ == '__main__':
    main()
