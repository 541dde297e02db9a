"""Max abs difference between each pre-training backbone and its timm model.

For every ``configs/pretrain/*.py`` (or the configs given): build the backbone
as the pre-trainer does, randomise its weights, convert them to timm's layout,
load them into ``timm.create_model(NAME, pretrained=False, num_classes=0)``
with ``strict=True`` and print the largest absolute difference between our
last-stage output and timm's ``forward_features`` (fp32, eval mode, the
config's input size). See :mod:`hvp_mtl.apis.timm_check`.

Usage::

    python tools/model_converters/check_timm_export.py [CONFIG ...] [--batch 2]
"""
import argparse
import glob
import os.path as osp

import torch

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='*', help='pre-training configs (default: all)')
    parser.add_argument('--batch', type=int, default=2, help='images per forward')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    from hvp_mtl.apis.timm_check import backbone_from_config, compare_with_timm, randomize_
    configs = args.configs or sorted(glob.glob(osp.join(ROOT, 'configs', 'pretrain', '*.py')))
    print(f'torch {torch.__version__}, timm {__import__("timm").__version__}, fp32, eval')
    print('| config | timm model | input | max abs diff |\n|---|---|---|---|')
    for config in configs:
        backbone, cfg = backbone_from_config(config)
        randomize_(backbone, args.seed)
        size = cfg.get('img_size', 224)
        images = torch.randn(args.batch, 3, size, size,
                             generator=torch.Generator().manual_seed(args.seed))
        res = compare_with_timm(backbone, cfg, images)
        kwargs = ''.join(f', {k}={v}' for k, v in res['kwargs'].items())
        print(f'| {osp.basename(config)} | {res["model"]}{kwargs} | {args.batch}x3x{size}x{size} '
              f'| {res["max_abs_diff"]:.2e} |', flush=True)


if __name__ == '__main__':
    main()
