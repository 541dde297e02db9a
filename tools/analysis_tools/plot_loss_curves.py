"""Per-task loss curves of a training run as one PNG: a panel per loss, the total, and the lr.

Reads the ``vis_data/scalars.json`` files mmengine writes into a work dir (every launch, so a
resumed run is one curve)::

    python tools/analysis_tools/plot_loss_curves.py WORK_DIR [--out curves.png] [--smooth 10]
        [--keys loss_mlc loss_swav ...] [--x iter|epoch]

Panels: every logged ``loss_*`` key (HVP-MTL logs one per task, already weighted by its alpha), then
``loss`` (their sum, the optimised total), then ``lr`` (of the base parameter group). The drawing
lives in :mod:`hvp_mtl.apis.loss_curves`.
"""
import argparse
import os.path as osp

from hvp_mtl.apis.loss_curves import plot_curves


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dir', help='a training run\'s work dir')
    parser.add_argument('--out', help='PNG to write (default: <work_dir>/loss_curves.png)')
    parser.add_argument('--keys',
                        nargs='+',
                        help='these logged scalars (default: loss_*, loss, lr)')
    parser.add_argument('--smooth', type=int, default=1, help='moving-average window in log points')
    parser.add_argument('--x', choices=['iter', 'epoch'], default='iter', help='x axis')
    args = parser.parse_args(argv)
    out = args.out or osp.join(args.work_dir, 'loss_curves.png')
    panels = plot_curves(args.work_dir, out, args.keys, args.smooth, args.x)
    print(f'wrote {out} ({len(panels)} panels: {", ".join(panels)})')


if __name__ == '__main__':
    main()
