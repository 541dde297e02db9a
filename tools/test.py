"""Evaluate a checkpoint with a config's test loop (mmpretrain 1.x flags).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--cfg-options k=v ...] [--cfg-allow-new-keys] [--launcher none|pytorch|slurm|mpi]

An unknown top-level ``--cfg-options`` key or a config path that does not exist is an error
with the closest names (as in ``tools/train.py``).
"""
import argparse
import os
import sys

from mmengine.config import Config, DictAction

from hvp_mtl.apis.cli_checks import check_cfg_option_keys, find_config
from hvp_mtl.apis.runner_builder import build_runner, merge_test_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the results')
    parser.add_argument('--out', help='dump the raw predictions to this pickle file')
    parser.add_argument('--amp', action='store_true', help='test with mixed precision')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value pairs')
    parser.add_argument('--cfg-allow-new-keys', action='store_true',
                        help='let --cfg-options add top-level keys the config does not have')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = Config.fromfile(find_config(args.config))
        check_cfg_option_keys(cfg, args.cfg_options, args.cfg_allow_new_keys)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f'error: {err}')
    cfg = merge_test_args(cfg, args)
    runner = build_runner(cfg)
    metrics = runner.test()
    print(metrics)
    return metrics


if __name__ == '__main__':
    main()
