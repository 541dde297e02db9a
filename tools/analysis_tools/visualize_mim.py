"""What the MIM branch of an HVP-MTL checkpoint sees and reconstructs: input, mask, reconstruction.

    python tools/analysis_tools/visualize_mim.py CONFIG CHECKPOINT IMAGE [IMAGE ...]
        [--out mim.png] [--img-size 224] [--seed 0] [--cfg-options k=v ...]

One row per image: input, mask, reconstruction, reconstruction pasted into the masked patches;
the L1 of eq. (4) on the masked pixels is printed per image (:mod:`hvp_mtl.apis.mim_visualizer`).
"""
import argparse

from mmengine.config import DictAction

from hvp_mtl.apis.mim_visualizer import visualize


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='pre-training config')
    parser.add_argument('checkpoint', help='pre-training checkpoint (whole model)')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--out', default='mim.png', help='PNG to write')
    parser.add_argument('--img-size',
                        type=int,
                        help='crop size (default: the config\'s mask input_size)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random mask')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='config overrides')
    args = parser.parse_args(argv)
    for name, l1 in visualize(args.config, args.checkpoint, args.images, args.out, args.img_size,
                              args.seed, args.cfg_options):
        print(f'{name}: L1 on masked pixels {l1:.4f}')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
