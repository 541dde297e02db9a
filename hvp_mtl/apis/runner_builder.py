"""Build an mmengine runner from a config and the command line of ``tools/train.py`` or
``tools/test.py``.

The config plumbing of both tools, with mmpretrain 1.x semantics: ``--work-dir`` (else
``./work_dirs/<config stem>``), ``--amp`` (the AMP twin of the config's optim wrapper),
``--resume [CKPT]``, ``--no-validate``, ``--auto-scale-lr``, the dataloader switches and
``--cfg-options``; then the runner the config asks for (``runner_type``) or a ``Runner``.
"""
import os.path as osp

from mmengine.runner import Runner

__all__ = ['default_work_dir', 'merge_args', 'merge_test_args', 'build_runner']


def default_work_dir(cfg, work_dir, config):
    """Set ``cfg.work_dir``: ``work_dir`` if given, else the config's, else
    ``./work_dirs/<config stem>``."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])


def merge_args(cfg, args):
    """Merge ``tools/train.py``'s arguments into the config (mmpretrain semantics).

    Args:
        cfg (Config): The loaded config; changed in place.
        args (argparse.Namespace): ``tools/train.py``'s parsed arguments.

    Returns:
        Config: ``cfg``.
    """
    cfg.launcher = args.launcher
    default_work_dir(cfg, args.work_dir, args.config)

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


def merge_test_args(cfg, args):
    """Merge ``tools/test.py``'s arguments into the config (mmpretrain semantics).

    Args:
        cfg (Config): The loaded config; changed in place.
        args (argparse.Namespace): ``tools/test.py``'s parsed arguments.

    Returns:
        Config: ``cfg``, with ``load_from`` the checkpoint to evaluate.
    """
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    default_work_dir(cfg, args.work_dir, args.config)
    cfg.load_from = args.checkpoint
    if args.amp:
        cfg.test_cfg = dict(cfg.get('test_cfg') or {}, fp16=True)
    if args.out is not None:
        assert args.out.endswith(('.pkl', '.pickle')), '--out must be a .pkl file'
        cfg.test_evaluator = list(cfg.test_evaluator) if isinstance(
            cfg.test_evaluator, (list, tuple)) else [cfg.test_evaluator]
        cfg.test_evaluator.append(dict(type='DumpResults', out_file_path=args.out))
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
        from hvp_mtl.engine.hooks.atomic_checkpoint_hook import find_intact_checkpoint
        cfg.load_from = find_intact_checkpoint(cfg.work_dir)
    from mmengine.registry import RUNNERS
    return RUNNERS.build(cfg)
