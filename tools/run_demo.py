"""The main job on a laptop CPU: HVP-MTL pre-training, then fine-tuning in three toolkits.

    python tools/run_demo.py [--size tiny|small|default] [--ablations] [--work-dir DIR]
        [--data-root DIR] [--force] [--no-figures]

Stages, each a real run of the project's own tools in a subprocess (logs in ``<work-dir>/logs``):

1. generate the demo world (``tools/dataset_converters/make_demo_data.py``);
2. pre-train a small Swin with all four HVP-MTL objectives (``tools/train.py
   configs/demo/hvp_swin-demo_pretrain.py``; progress bar with the per-task losses);
3. export its backbone (``tools/model_converters/hvp_to_backbone.py``);
4. fine-tune and evaluate in mmpretrain (classification top-1), mmdet (Mask R-CNN box/mask AP) and
   mmseg (UperNet mIoU) from that backbone, then the same runs from random initialisation
   (``tools/train.py configs/demo/*``, the toolkit's evaluator on the validation split at the end);
5. with ``--ablations``: pre-train once without each task (paper Table 5) and fine-tune each in
   mmpretrain;
6. print one results table (also ``<work-dir>/results.md``), read back from the runs' logs, and
   draw the pre-training loss curves and a MIM reconstruction.

Finished stages are skipped when the command is run again (``--force`` redoes them), so an
interrupted demo continues where it stopped.
"""
import argparse
import json
import os
import os.path as osp
import resource
import shutil
import signal
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))
from demo_table import ABLATIONS, DEMO_METRICS, INITS, ablation_dir, finetune_dir  # noqa: E402
from demo_table import demo_results, render_demo_markdown  # noqa: E402
from progress_bar import run_with_progress  # noqa: E402

PY = sys.executable
CONFIGS = dict(pretrain='configs/demo/hvp_swin-demo_pretrain.py',
               cls='configs/demo/swin-demo_cls.py',
               det='configs/demo/mask-rcnn_swin-demo.py',
               seg='configs/demo/upernet_swin-demo.py')
# world: images per task; pretrain: iterations; cls/det: epochs; seg: iterations.
SIZES = {
    'tiny':
    dict(world=dict(num_pretrain=32, num_cls=32, num_det=16, num_seg=16),
         pretrain=4,
         batch=8,
         cls=2,
         det=1,
         seg=4),
    'small':
    dict(world=dict(num_pretrain=256, num_cls=800, num_det=96, num_seg=96),
         pretrain=120,
         batch=32,
         cls=3,
         det=4,
         seg=300),
    'default':
    dict(world=dict(num_pretrain=512, num_cls=1600, num_det=192, num_seg=192),
         pretrain=300,
         batch=32,
         cls=4,
         det=6,
         seg=400),
}
# Table 5: the loss weights set to 0 (distillation needs the multi-label decoder).
ABLATION_WEIGHTS = dict(wo_multilabel=dict(mlc=0, distill=0),
                        wo_contrastive=dict(swav=0),
                        wo_mim=dict(mim=0),
                        wo_distillation=dict(distill=0))


class Demo:
    """Runs the stages and keeps their wall and CPU times in ``<work_dir>/stages.json``."""

    def __init__(self, args):
        self.args, self.size = args, SIZES[args.size]
        self.work_dir = osp.abspath(args.work_dir)
        self.data = osp.abspath(args.data_root or osp.join(ROOT, 'data', 'demo', args.size))
        self.stages_file = osp.join(self.work_dir, 'stages.json')
        self.stages = {}
        if osp.isfile(self.stages_file) and not args.force:
            with open(self.stages_file, encoding='utf-8') as f:
                self.stages = json.load(f)

    def config(self, name):
        """The demo config to run; with ``--tensorboard`` a child config adding TensorBoard."""
        path = osp.join(ROOT, CONFIGS[name])
        if not self.args.tensorboard:
            return path
        child = osp.join(self.work_dir, 'configs', osp.basename(path))
        os.makedirs(osp.dirname(child), exist_ok=True)
        with open(child, 'w', encoding='utf-8') as f:
            f.write(f"_base_ = {path!r}\ncustom_imports = dict(imports=['hvp_mtl'], "
                    "allow_failed_imports=False)\nvisualizer = dict(vis_backends=["
                    "dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])\n")
        return child

    def run(self, stage, cmd, done_marker, max_epochs=None):
        """Run one stage unless ``done_marker`` exists; stop the demo if it fails."""
        if osp.exists(done_marker) and not self.args.force:
            print(f'{stage:<14} already done ({osp.relpath(done_marker, self.work_dir)})')
            return
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        log = osp.join(self.work_dir, 'logs', stage.replace(' ', '_') + '.log')
        # one compute thread and one data-loading worker per stage fit a 2-core laptop; two
        # OpenMP threads next to any other busy process spin-wait and run many times slower
        env = dict(os.environ)
        env.setdefault('OMP_NUM_THREADS', '1')
        code, wall = run_with_progress(cmd, stage, log, cwd=ROOT, env=env, max_epochs=max_epochs)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if code != 0:
            with open(log, encoding='utf-8') as f:
                print(''.join(f.readlines()[-40:]))
            raise SystemExit(f'stage {stage} failed (exit {code})')
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        self.stages[stage] = round(wall, 1)
        self.stages[f'{stage} (cpu)'] = round(cpu, 1)
        tmp = self.stages_file + '.tmp'
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(self.stages, f, indent=1)
        os.replace(tmp, self.stages_file)

    # ------------------------------------------------------------------ stages
    def make_world(self):
        world = self.size['world']
        marker = osp.join(self.data, 'world.json')
        if osp.isfile(marker) and not self.args.force:
            with open(marker, encoding='utf-8') as f:
                written = json.load(f)
            if any(written.get(k) != v for k, v in world.items()):  # other size: write anew
                shutil.rmtree(self.data)
        cmd = [PY, 'tools/dataset_converters/make_demo_data.py', '--out', self.data, '--seed', '0']
        cmd += [f'--{k.replace("_", "-")}={v}' for k, v in world.items()]
        self.run('data', cmd, marker)

    def pretrain(self, work, stage='pretrain', loss_weights=None):
        iters, warmup = self.size['pretrain'], max(1, self.size['pretrain'] // 10)
        opts = [
            f'train_dataloader.dataset.data_root={self.data}/pretrain/',
            f'train_dataloader.batch_size={self.size["batch"]}', f'train_cfg.max_iters={iters}',
            f'param_scheduler.0.end={warmup}', f'param_scheduler.1.begin={warmup}',
            f'param_scheduler.1.T_max={max(1, iters - warmup)}', f'param_scheduler.1.end={iters}',
            f'default_hooks.checkpoint.interval={iters}',
            f'default_hooks.logger.interval={max(1, min(10, iters // 10))}',
            f'model.swav_head.freeze_prototypes_iters={max(1, iters // 15)}'
        ]
        opts += [f'model.loss_weights.{k}={v}' for k, v in (loss_weights or {}).items()]
        self.run(stage, [
            PY, 'tools/train.py',
            self.config('pretrain'), '--work-dir', work, '--cfg-options', *opts
        ], osp.join(work, f'iter_{iters}.pth'))
        return osp.join(work, f'iter_{iters}.pth')

    def export(self, ckpt, out, stage='export', teacher=True):
        cmd = [
            PY, 'tools/model_converters/hvp_to_backbone.py', ckpt, out, '--weights',
            'teacher' if teacher else 'student'
        ]
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

    def finetune(self, task, work, backbone, stage):
        """Fine-tune with ``tools/train.py``; the toolkit's evaluator runs once, at the end
        (``tools/test.py CONFIG <work>/<last checkpoint>`` repeats it)."""
        if backbone:
            init = [f'checkpoint={backbone}']
        else:
            init = ['model.backbone.init_cfg=None', 'custom_hooks=[]']
        cmd = [PY, 'tools/train.py', self.config(task), '--work-dir', work, '--cfg-options',
               *self.task_options(task), *init]
        self.run(stage, cmd, osp.join(work, 'last_checkpoint'),
                 max_epochs=self.size[task] if task != 'seg' else None)

    def figures(self, pretrain_ckpt):
        tools = osp.join(ROOT, 'tools', 'analysis_tools')
        curves = osp.join(self.work_dir, 'pretrain_loss_curves.png')
        self.run('loss curves', [
            PY,
            osp.join(tools, 'plot_loss_curves.py'),
            osp.join(self.work_dir, 'pretrain'), '--out', curves, '--smooth', '3'
        ], curves)
        val_dir = osp.join(self.data, 'ade', 'images', 'validation')
        images = [osp.join(val_dir, n) for n in sorted(os.listdir(val_dir))[:3]]
        mim = osp.join(self.work_dir, 'pretrain_mim.png')
        self.run('mim picture', [
            PY,
            osp.join(tools, 'visualize_mim.py'), CONFIGS['pretrain'], pretrain_ckpt, *images,
            '--out', mim
        ], mim)


def closing_note(demo_dir):
    """What the measured numbers say, stated from the numbers themselves."""
    lines = []
    for entry in demo_results(demo_dir)['downstream']:
        if entry['hvp'] is None or entry['random'] is None:
            lines.append(f'- {entry["toolkit"]} {entry["metric"]}: not measured.')
            continue
        diff = entry['hvp'] - entry['random']
        verdict = 'pre-training helped' if diff > 0 else (
            'pre-training did not help' if diff < 0 else 'no difference')
        lines.append(
            f'- {entry["toolkit"]} {entry["metric"]}: {entry["hvp"]:.2f} vs {entry["random"]:.2f} '
            f'from random init ({diff:+.2f}): {verdict}.')
    return ('\n'.join(lines) +
            '\n\nThese are single runs of a few CPU minutes on a generated world; '
            'differences of a few points are within run-to-run noise.\n')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size',
                        choices=list(SIZES),
                        default='default',
                        help='tiny: a smoke run; default: the demo (about 13 min on 2 cores)')
    parser.add_argument(
        '--ablations',
        action='store_true',
        help='also pre-train without each task (Table 5) and fine-tune in mmpretrain')
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    parser.add_argument('--data-root', help='where the demo world goes (default data/demo/<size>)')
    parser.add_argument('--force', action='store_true', help='redo finished stages')
    parser.add_argument('--no-figures',
                        action='store_true',
                        help='skip the loss curves and MIM picture')
    parser.add_argument('--tensorboard',
                        action='store_true',
                        help='also log to TensorBoard (<run>/<timestamp>/vis_data/events.*)')
    args = parser.parse_args(argv)
    # a terminated demo stops its running stage too (run_with_progress kills it on the way out)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.force and osp.isdir(args.work_dir):
        shutil.rmtree(args.work_dir)
    demo = Demo(args)
    os.makedirs(demo.work_dir, exist_ok=True)
    print(f'HVP-MTL demo, size {args.size}: work dir {demo.work_dir}, data {demo.data}')

    demo.make_world()
    ckpt = demo.pretrain(osp.join(demo.work_dir, 'pretrain'))
    backbone = osp.join(demo.work_dir, 'backbone.pth')
    demo.export(ckpt, backbone)
    for task in dict.fromkeys(t for t, *_ in DEMO_METRICS):
        for init, _ in INITS:
            demo.finetune(task, finetune_dir(demo.work_dir, task, init),
                          backbone if init == 'hvp' else None, f'{task} {init}')
    if args.ablations:
        for variant, _ in ABLATIONS[1:]:
            weights = ABLATION_WEIGHTS[variant]
            ckpt_v = demo.pretrain(ablation_dir(demo.work_dir, variant, 'pretrain'),
                                   f'pretrain {variant}', weights)
            out = osp.join(demo.work_dir, 'ablations', variant, 'backbone.pth')
            demo.export(ckpt_v, out, f'export {variant}', teacher='distill' not in weights)
            demo.finetune('cls', ablation_dir(demo.work_dir, variant, 'cls'), out, f'cls {variant}')
    if not args.no_figures:
        demo.figures(ckpt)

    text = render_demo_markdown(demo.work_dir) + '\n' + closing_note(demo.work_dir)
    for name, content in (('results.md', text), ('results.json',
                                                 json.dumps(demo_results(demo.work_dir),
                                                            indent=1))):
        tmp = osp.join(demo.work_dir, name + '.tmp')
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(content)
        os.replace(tmp, osp.join(demo.work_dir, name))
    print('\n' + text)
    print(f'Written to {osp.join(demo.work_dir, "results.md")} (and results.json); logs in '
          f'{osp.join(demo.work_dir, "logs")}.')
    return 0


def write_images(out_dir, num, size=80, seed=0):
    """Write ``num`` PNGs of random coloured shapes (unlabelled images for SimMIM smoke runs)."""
    import numpy as np
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    for i in range(num):
        img = Image.new('RGB', (size, size), tuple(int(c) for c in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
            x1, y1 = x0 + int(rng.integers(8, size // 2)), y0 + int(rng.integers(8, size // 2))
            fill = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
        img.save(osp.join(out_dir, f'{i:05d}.png'))


if __name__ == '__main__':
    sys.exit(main())
