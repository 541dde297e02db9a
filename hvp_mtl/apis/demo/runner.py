"""The demo's stages: each a real run of the project's own tools in a subprocess.

:class:`Demo` generates the world, pre-trains (HVP-MTL, or MCL), exports the backbone, fine-tunes
in mmpretrain, mmdet and mmseg from it and from random initialisation, and probes the frozen
features; every stage is logged to ``<work-dir>/logs/<stage>.log`` and timed (wall and CPU) in
``<work-dir>/stages.json``. Finished stages are skipped when the demo is run again.
"""
import fcntl
import json
import os
import os.path as osp
import resource
import shutil
import sys

from hvp_mtl.utils.atomic_io import atomic_write

from .progress import run_with_progress
from .recipes import CONFIGS, SIZES, arch_options
from .table import finetune_dir, probe_file, seed_dir

__all__ = ['Demo', 'ROOT']

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
PY = sys.executable


class Demo:
    """Runs the stages and keeps their wall and CPU times in ``<work_dir>/stages.json``.

    Args:
        work_dir (str): Where the runs go.
        data_root (str): Where the demo world goes.
        size (str): A key of :data:`SIZES`.
        force (bool): Redo finished stages.
        tensorboard (bool): Also log to TensorBoard.
        world (str): ``'colour'`` (the demo world) or ``'gray'`` (its colour-free variant,
            ``make_demo_data.py --palette gray``).
    """

    def __init__(self, work_dir, data_root, size='default', force=False, tensorboard=False,
                 world='colour'):
        self.size_name, self.size, self.world = size, SIZES[size], world
        self.work_dir, self.data = osp.abspath(work_dir), osp.abspath(data_root)
        self.force, self.tensorboard = force, tensorboard
        self.stages_file = osp.join(self.work_dir, 'stages.json')
        self.stages = {}
        #: every stage asked for since construction, run or found done (in order)
        self.requested = []
        if osp.isfile(self.stages_file) and not force:
            with open(self.stages_file, encoding='utf-8') as f:
                self.stages = json.load(f)

    def config(self, name):
        """The demo config to run; with ``tensorboard`` a child config adding TensorBoard."""
        path = osp.join(ROOT, CONFIGS[name])
        if not self.tensorboard:
            return path
        child = osp.join(self.work_dir, 'configs', osp.basename(path))
        os.makedirs(osp.dirname(child), exist_ok=True)
        with open(child, 'w', encoding='utf-8') as f:
            f.write(f"_base_ = {path!r}\ncustom_imports = dict(imports=['hvp_mtl'], "
                    "allow_failed_imports=False)\nvisualizer = dict(vis_backends=["
                    "dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])\n")
        return child

    def run(self, stage, cmd, done_marker, work_dir=None, length=None):
        """Run one stage unless ``done_marker`` exists; stop the demo if it fails."""
        self.requested.append(stage)
        if osp.exists(done_marker) and not self.force:
            print(f'{stage:<14} already done ({osp.relpath(done_marker, self.work_dir)})')
            return
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        log = osp.join(self.work_dir, 'logs', stage.replace(' ', '_') + '.log')
        # one compute thread and one data-loading worker per stage fit a 2-core laptop; two
        # OpenMP threads next to any other busy process spin-wait and run many times slower
        env = dict(os.environ)
        env.setdefault('OMP_NUM_THREADS', '1')
        code, wall = run_with_progress(cmd, stage, log, work_dir=work_dir, length=length,
                                       cwd=ROOT, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if code != 0:
            with open(log, encoding='utf-8') as f:
                print(''.join(f.readlines()[-40:]))
            raise SystemExit(f'stage {stage} failed (exit {code})')
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        self.record_stage(stage, dict(wall=round(wall, 1), cpu=round(cpu, 1)))

    def record_stage(self, stage, times):
        """Add one stage's times to ``stages.json``, merged under a lock with what other demo
        processes on the same work dir (other ``--first-seed``) wrote meanwhile."""
        with open(self.stages_file + '.lock', 'w') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if osp.isfile(self.stages_file):
                with open(self.stages_file, encoding='utf-8') as f:
                    self.stages.update(json.load(f))
            self.stages[stage] = times
            with atomic_write(self.stages_file, encoding='utf-8') as f:
                json.dump(self.stages, f, indent=1)

    # ------------------------------------------------------------------ stages
    def make_world(self, stage='data'):
        world = self.size['world']
        marker = osp.join(self.data, 'world.json')
        if osp.isfile(marker) and not self.force:
            with open(marker, encoding='utf-8') as f:
                written = json.load(f)
            if (any(written.get(k) != v for k, v in world.items())
                    or written.get('palette', 'colour') != self.world):  # another world
                shutil.rmtree(self.data)
        cmd = [PY, 'tools/dataset_converters/make_demo_data.py', '--out', self.data, '--seed', '0',
               f'--palette={self.world}']
        cmd += [f'--{k.replace("_", "-")}={v}' for k, v in world.items()]
        self.run(stage, cmd, marker)

    def pretrain(self, stage, work, seed, method='hvp', loss_weights=None, arch='demo',
                 checkpoint_interval=None):
        """Pre-train (``method``: a pre-training key of :data:`CONFIGS`: hvp, mcl, simmim, swav)
        into ``work``; returns the last checkpoint.

        ``checkpoint_interval``: also keep a checkpoint every that many iterations (default: the
        last one only).
        """
        iters, warmup = self.size['pretrain'], max(1, self.size['pretrain'] // 10)
        opts = [
            f'train_dataloader.dataset.data_root={self.data}/pretrain/',
            f'train_dataloader.batch_size={self.size["batch"]}', f'train_cfg.max_iters={iters}',
            f'param_scheduler.0.end={warmup}', f'param_scheduler.1.begin={warmup}',
            f'param_scheduler.1.T_max={max(1, iters - warmup)}', f'param_scheduler.1.end={iters}',
            f'default_hooks.checkpoint.interval={checkpoint_interval or iters}',
            f'default_hooks.logger.interval={max(1, min(10, iters // 10))}',
            f'randomness.seed={seed}'
        ]
        if checkpoint_interval:
            opts.append('default_hooks.checkpoint.max_keep_ckpts=-1')
        if method == 'hvp':
            opts.append(f'model.tasks.swav.freeze_prototypes_iters={max(1, iters // 15)}')
            # the objectives against their baselines at 0, 1/3, 2/3 and the end
            opts.append(f'custom_hooks.0.interval={max(1, iters // 3)}')
        elif method == 'swav':  # mmpretrain's SwAV: its hook freezes the prototypes
            opts.append(f'custom_hooks.0.frozen_layers_cfg.prototypes={max(1, iters // 15)}')
        opts += [f'model.loss_weights.{k}={v}' for k, v in (loss_weights or {}).items()]
        opts += arch_options(arch, method) if arch != 'demo' else []
        ckpt = osp.join(work, f'iter_{iters}.pth')
        self.run(stage, [PY, 'tools/train.py', self.config(method), '--work-dir', work,
                         '--cfg-options', *opts], ckpt, work_dir=work, length=('iter', iters))
        return ckpt

    def export(self, stage, ckpt, out, weights='auto'):
        """``auto``: the EMA teacher of HVP-MTL, the online encoder of MCL."""
        cmd = [PY, 'tools/model_converters/hvp_to_backbone.py', ckpt, out, '--weights', weights]
        self.run(stage, cmd, out)

    def task_options(self, task):
        """Fine-tune overrides: data roots, schedule length, one evaluation at the end."""
        root = f'{self.data}/{dict(cls="cls", det="coco", seg="ade")[task]}/'
        n = self.size[task]
        opts = [
            f'{split}_dataloader.dataset.data_root={root}' for split in ('train', 'val', 'test')
        ]
        opts += [f'default_hooks.checkpoint.interval={n}', f'train_cfg.val_interval={n}']
        if task == 'cls':
            opts += [
                f'train_cfg.max_epochs={n}', f'param_scheduler.1.T_max={max(1, n - 1)}',
                f'param_scheduler.1.end={n}'
            ]
        elif task == 'det':
            ann = f'{root}annotations/instances_val.json'
            opts += [
                f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}',
                f'train_cfg.max_epochs={n}', f'param_scheduler.1.end={n}',
                f'param_scheduler.1.milestones=[{max(1, n - 2)}]'
            ]
        else:
            warmup = max(1, min(20, n // 10))
            opts += [
                f'train_cfg.max_iters={n}', f'param_scheduler.0.end={warmup}',
                f'param_scheduler.1.begin={warmup}', f'param_scheduler.1.end={n}'
            ]
        return opts

    def finetune(self, stage, task, work, backbone, seed, arch='demo', extra_opts=()):
        """Fine-tune with ``tools/train.py``; the toolkit's evaluator runs once, at the end
        (``tools/test.py CONFIG <work>/<last checkpoint>`` repeats it). ``extra_opts`` come last
        and win (e.g. :func:`.finetune_protocol.protocol_options`)."""
        if backbone:
            init = [f'checkpoint={backbone}', f'model.backbone.init_cfg.checkpoint={backbone}']
        else:
            init = ['model.backbone.init_cfg=None', 'custom_hooks=[]']
        opts = [*self.task_options(task), *init, f'randomness.seed={seed}']
        opts += arch_options(arch, task) if arch != 'demo' else []
        opts += list(extra_opts)
        cmd = [PY, 'tools/train.py', self.config(task), '--work-dir', work, '--cfg-options', *opts]
        length = ('iter', self.size[task]) if task == 'seg' else ('epoch', self.size[task])
        for opt in extra_opts:  # a schedule of the options (the progress bar's length)
            if opt.startswith(('train_cfg.max_epochs=', 'train_cfg.max_iters=')):
                length = (length[0], int(opt.split('=', 1)[1]))
        self.run(stage, cmd, osp.join(work, 'last_checkpoint'), work_dir=work, length=length)

    def probe(self, stage, out, backbone, seed, arch='demo'):
        """Linear probe and kNN on the frozen backbone (``demo/probe_backbone.py``)."""
        cmd = [PY, 'demo/probe_backbone.py', CONFIGS['cls'], '--seed', str(seed), '--out', out,
               '--cfg-options', *[f'{s}_dataloader.dataset.data_root={self.data}/cls/'
                                  for s in ('train', 'val', 'test')]]
        cmd += arch_options(arch, 'cls') if arch != 'demo' else []
        if backbone:
            cmd[3:3] = ['--checkpoint', backbone]
        self.run(stage, cmd, out)

    def arm(self, seed, group, init, tasks, method=None, loss_weights=None, arch='demo'):
        """Pre-train (unless ``init`` is random), export, then fine-tune/probe ``tasks``."""
        where = seed_dir(self.work_dir, seed, group)
        name = f's{seed}' + ('' if group == 'main' else f' {group.split("_", 1)[1]}')
        backbone = None
        if init != 'random':
            method = method or init
            ckpt = self.pretrain(f'{name} pretrain {init}', osp.join(where, f'pretrain_{init}'),
                                 seed, method, loss_weights, arch)
            backbone = osp.join(where, f'backbone_{init}.pth')
            self.export(f'{name} export {init}', ckpt, backbone,
                        'student' if 'distill' in (loss_weights or {}) else 'auto')
        for task in tasks:
            if task == 'probe':
                self.probe(f'{name} probe {init}', probe_file(self.work_dir, init, seed, group),
                           backbone, seed, arch)
            else:
                self.finetune(f'{name} {task} {init}', task,
                              finetune_dir(self.work_dir, task, init, seed, group), backbone,
                              seed, arch)
        return backbone

    def figures(self, pretrain_dir, pretrain_ckpt):
        tools = osp.join(ROOT, 'tools', 'analysis_tools')
        curves = osp.join(self.work_dir, 'pretrain_loss_curves.png')
        self.run('loss curves', [
            PY, osp.join(tools, 'plot_loss_curves.py'), pretrain_dir, '--out', curves,
            '--smooth', '3'
        ], curves)
        val_dir = osp.join(self.data, 'ade', 'images', 'validation')
        images = [osp.join(val_dir, n) for n in sorted(os.listdir(val_dir))[:3]]
        mim = osp.join(self.work_dir, 'pretrain_mim.png')
        self.run('mim picture', [
            PY, osp.join(tools, 'visualize_mim.py'), CONFIGS['hvp'], pretrain_ckpt, *images,
            '--out', mim
        ], mim)
