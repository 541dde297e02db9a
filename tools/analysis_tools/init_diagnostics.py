"""Why one initialisation fine-tunes slower than another, measured side by side.

Example (the demo's classification fine-tune, its export against random init)::

    python tools/analysis_tools/init_diagnostics.py configs/demo/swin-demo_cls.py \\
        --init random --init hvp=work_dirs/demo/seed_0/main/backbone_hvp.pth \\
        --out diagnostics.json \\
        --cfg-options train_dataloader.dataset.data_root=data/demo/default/cls/ \\
            val_dataloader.dataset.data_root=data/demo/default/cls/ \\
            test_dataloader.dataset.data_root=data/demo/default/cls/

prints, per stage and initialisation, the weight norm, the LayerNorm gains, the effective rank
and top-5 principal-component share of the train split's features, and the gradient norm at
fine-tune step 0 (``hvp_mtl.apis.init_diagnostics``), and writes them to ``--out``.
"""
import argparse

from mmengine.config import DictAction

from hvp_mtl.apis.init_diagnostics import diagnose, format_diagnostics, write_diagnostics


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a classification fine-tune config')
    parser.add_argument('--init', action='append', required=True,
                        help="'random', or NAME=BACKBONE.pth (an exported backbone); repeat")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--feature-images', type=int, default=512)
    parser.add_argument('--out', help='JSON file to write')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    inits = {}
    for item in args.init:
        name, _, path = item.partition('=')
        inits[name] = None if name == 'random' and not path else path
    result = diagnose(args.config, inits, args.seed, args.cfg_options, args.feature_images)
    print(format_diagnostics(result))
    if args.out:
        write_diagnostics(result, args.out)
        print(f'written to {args.out}')


if __name__ == '__main__':
    main()
