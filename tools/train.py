"""Train a model from a config: HVP-MTL pre-training or an mmpretrain/mmdet/mmseg fine-tune.

Same flags as mmpretrain 1.x ``tools/train.py``::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

plus ``--vis tensorboard|wandb|mlflow`` (more logging backends) and
``--cfg-allow-new-keys`` (``--cfg-options`` may add top-level keys the config does not have;
without it such a key, usually a typo, is an error naming the closest existing keys).
A config path that does not exist is an error naming the nearest configs under ``configs/``.

Multi-GPU and multi-node runs go through ``tools/dist_train.sh CONFIG GPUS``
(GPUS is the total number of GPUs over all nodes) or ``tools/slurm_train.sh``. The config
plumbing and the runner builder live in :mod:`hvp_mtl.apis.runner_builder`.
"""
import argparse
import os
import sys

from mmengine.config import Config, DictAction

from hvp_mtl.apis.cli_checks import (
    VIS_BACKENDS,
    add_vis_backends,
    check_cfg_option_keys,
    find_config,
)
from hvp_mtl.apis.runner_builder import build_runner, merge_args
from hvp_mtl.engine.hooks.atomic_checkpoint_hook import CheckpointWriteError
from hvp_mtl.engine.runner.parent_death import die_with_launcher, started_by_launcher
from hvp_mtl.engine.runner.work_dir_lock import WorkDirLocked, acquire_work_dir_lock


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or from the latest one in the '
        'work dir when no path is given')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic mixed precision training')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate checkpoints during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the effective batch size')
    parser.add_argument('--no-pin-memory', action='store_true',
                        help='do not pin memory in the dataloaders')
    parser.add_argument('--no-persistent-workers', action='store_true',
                        help='do not use persistent dataloader workers')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value pairs; '
        'e.g. model.backbone.arch=tiny train_dataloader.batch_size=8')
    parser.add_argument(
        '--cfg-allow-new-keys', action='store_true',
        help='let --cfg-options add top-level keys the config does not have (without it an '
        'unknown key is an error that names the closest existing keys)')
    parser.add_argument(
        '--vis', nargs='+', choices=sorted(VIS_BACKENDS), default=[],
        help='also log to these backends (next to the config\'s local scalars.json and '
        'TensorBoard); wandb and mlflow are optional installs')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch>=2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    if started_by_launcher():  # a worker ends with its launcher (docs/PRETRAIN.md, faults)
        die_with_launcher()
    try:
        cfg = Config.fromfile(find_config(args.config))
        check_cfg_option_keys(cfg, args.cfg_options, args.cfg_allow_new_keys)
        add_vis_backends(cfg, args.vis, run_name=os.path.splitext(
            os.path.basename(args.config))[0])
    except (FileNotFoundError, ValueError, ImportError) as err:
        sys.exit(f'error: {err}')
    cfg = merge_args(cfg, args)
    rank = int(os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0')))
    try:
        if rank == 0:  # before anything is written: one job per work dir
            acquire_work_dir_lock(cfg.work_dir)
        runner = build_runner(cfg)
        runner.train()
    except (WorkDirLocked, CheckpointWriteError, FileNotFoundError) as err:
        # FileNotFoundError: a mistyped data path (the datasets name near files)
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    main()
