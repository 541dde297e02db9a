"""Train a model from a config: HVP-MTL pre-training or an mmpretrain/mmdet/mmseg fine-tune.

Same flags as mmpretrain 1.x ``tools/train.py``::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

Multi-GPU and multi-node runs go through ``tools/dist_train.sh CONFIG GPUS``
(GPUS is the total number of GPUs over all nodes) or ``tools/slurm_train.sh``.
"""
import argparse
import os
import os.path as osp
import sys

# Make the plugin importable when the repository is used without installation.
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402


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
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch>=2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    """Merge command-line arguments into the config (mmpretrain semantics)."""
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        # the non-finite guard (hvp_mtl.engine.optimizers) has an AMP twin
        amp_types = {'OptimWrapper': 'AmpOptimWrapper',
                     'AmpOptimWrapper': 'AmpOptimWrapper',
                     'GuardedOptimWrapper': 'GuardedAmpOptimWrapper',
                     'GuardedAmpOptimWrapper': 'GuardedAmpOptimWrapper'}
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        assert optim_wrapper in amp_types, \
            '`--amp` is not supported by the custom optim wrapper ' \
            f'{optim_wrapper}; set it in the config instead.'
        cfg.optim_wrapper.type = amp_types[optim_wrapper]
        if cfg.optim_wrapper.type == 'AmpOptimWrapper':
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        # GuardedAmpOptimWrapper picks it: dynamic for fp16, none for bf16
        # (which refuses a loss scaler)

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    if args.auto_scale_lr:
        cfg.setdefault('auto_scale_lr', {})['enable'] = True

    def set_loader(loader_cfg):
        if loader_cfg is None:
            return
        if args.no_pin_memory:
            loader_cfg['pin_memory'] = False
        if args.no_persistent_workers:
            loader_cfg['persistent_workers'] = False

    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        set_loader(cfg.get(name))

    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def build_runner(cfg):
    """Build the runner the config asks for (``runner_type``) or a Runner."""
    if cfg.get('launcher', 'none') != 'none':
        from hvp_mtl.engine.runner import enable_cpu_distributed
        enable_cpu_distributed()  # gloo and CPU DDP when there is no CUDA
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    if cfg.get('resume') is True and cfg.get('load_from') is None:
        # FlexibleRunner resumes before any hook runs: pick the newest intact
        # checkpoint here (Runner does it in AtomicCheckpointHook.before_run)
        from hvp_mtl.engine.hooks.atomic_checkpoint_hook import \
            find_intact_checkpoint
        cfg.load_from = find_intact_checkpoint(cfg.work_dir)
    from mmengine.registry import RUNNERS
    return RUNNERS.build(cfg)


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg = merge_args(cfg, args)
    runner = build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    main()
