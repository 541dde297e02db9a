"""Shrink-and-perturb an exported backbone, or re-initialise its last stages.

Example (the demo's classification fine-tune config gives the random reference)::

    python tools/model_converters/backbone_remedy.py backbone_hvp.pth backbone_sp.pth \\
        --config configs/demo/swin-demo_cls.py --shrink-perturb 0.5 0.5 --seed 0
    python tools/model_converters/backbone_remedy.py backbone_hvp.pth backbone_re1.pth \\
        --config configs/demo/swin-demo_cls.py --reinit-stages 1 --seed 0

The output loads like any export (``checkpoint=...`` of a fine-tune config);
see ``hvp_mtl.apis.init_remedies``.
"""
import argparse
import sys

import torch
from mmengine.config import DictAction

from hvp_mtl.apis.init_remedies import (
    load_backbone,
    random_backbone_state,
    reinit_stages,
    shrink_perturb,
)
from hvp_mtl.utils.atomic_io import atomic_path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='an exported backbone (backbone.* keys)')
    parser.add_argument('dst', help='output backbone file')
    parser.add_argument('--config', required=True,
                        help='the fine-tune config whose random init is the reference')
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument('--shrink-perturb', nargs=2, type=float, metavar=('LAMBDA', 'SIGMA'))
    group.add_argument('--reinit-stages', type=int, metavar='K')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random reference')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        state, meta = load_backbone(args.src)
        reference = random_backbone_state(args.config, args.seed, args.cfg_options)
        if args.shrink_perturb:
            state = shrink_perturb(state, reference, *args.shrink_perturb)
            remedy = dict(shrink_perturb=args.shrink_perturb)
        else:
            state = reinit_stages(state, reference, args.reinit_stages)
            remedy = dict(reinit_stages=args.reinit_stages)
    except (ValueError, FileNotFoundError, KeyError) as err:
        sys.exit(f'error: {args.src}: {err}')
    meta = dict(meta, remedy=dict(remedy, seed=args.seed, config=args.config))
    with atomic_path(args.dst) as tmp:
        torch.save(dict(state_dict=state, meta=meta), tmp)
    print(f'{args.dst}: {remedy} of {args.src} (random reference: {args.config}, seed '
          f'{args.seed})')


if __name__ == '__main__':
    main()
