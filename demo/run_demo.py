"""The main job on a laptop CPU: pre-training, then fine-tuning in three toolkits, over seeds.

    python demo/run_demo.py [--size tiny|small|default] [--seeds N] [--method hvp|mcl|both]
        [--ablations] [--sizes] [--work-dir DIR] [--data-root DIR] [--force] [--no-figures]
    python demo/run_demo.py --render-docs [README.md docs/RESULTS.md]

Stages, each a real run of the project's own tools in a subprocess (logs in ``<work-dir>/logs``),
repeated for seeds 0..N-1 (the seed of pre-training and fine-tuning; the world stays the same):

1. generate the demo world (``tools/dataset_converters/make_demo_data.py``);
2. pre-train a small Swin with all four HVP-MTL objectives (``tools/train.py
   configs/demo/hvp_swin-demo_pretrain.py``; progress bar with the per-task losses), with
   ``--method mcl|both`` also MCL (``configs/demo/mcl_swin-demo_pretrain.py``);
3. export its backbone (``tools/model_converters/hvp_to_backbone.py``);
4. fine-tune and evaluate in mmpretrain (classification top-1), mmdet (Mask R-CNN box/mask AP) and
   mmseg (UperNet mIoU) from that backbone and from random initialisation, and probe the frozen
   features (linear probe and kNN, ``demo/probe_backbone.py``);
5. with ``--ablations``: pre-train without each task (paper Table 5); with ``--sizes``: the same
   with a wider, deeper Swin (Table 6); frozen cls, det and seg for each;
6. write ``results.json`` (commit, command, seeds, per-seed values, stage times), ``results.md``
   (mean ± std, differences, verdicts) and a bar chart per table, and draw the pre-training loss
   curves and a MIM reconstruction.

Finished stages are skipped when the command is run again (``--force`` redoes them), so an
interrupted demo continues where it stopped. ``--render-docs`` regenerates the tables of README.md
and docs/RESULTS.md from the committed results files their markers name.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import signal
import sys

from hvp_mtl.apis.demo import (
    ROOT,
    SIZES,
    Demo,
    build_results,
    closing_note,
    plot_table,
    render_results,
    run_tables,
    table_specs,
    update_generated_blocks,
)
from hvp_mtl.apis.demo.arms import ARMS
from hvp_mtl.apis.demo.cause import (
    plot_cause,
    read_cause,
    render_cause,
    run_cause,
    write_cause,
)
from hvp_mtl.apis.demo.finetune_report import plot_finetune_curves, render_finetune_study
from hvp_mtl.apis.demo.finetune_reuse import ReusedStudy
from hvp_mtl.apis.demo.finetune_seeds import combine_finetune_studies, render_finetune_seeds
from hvp_mtl.apis.demo.finetune_study import StudyPlan, read_finetune_study, run_finetune_study
from hvp_mtl.apis.demo.headline import load_choices, run_headline
from hvp_mtl.apis.demo.learning_curve import (
    plot_learning_curve,
    render_learning_curve,
    run_learning_curve,
    write_learning_curve,
)
from hvp_mtl.apis.demo.plans import git_commit
from hvp_mtl.apis.demo.table import seed_dir
from hvp_mtl.utils.atomic_io import atomic_write


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', choices=list(SIZES), default='default',
                        help='tiny: a smoke run; default: the demo (about 8-9 min on 2 cores per '
                        'seed)')
    parser.add_argument('--seeds', type=int, default=1,
                        help='repeat pre-training and every fine-tune with seeds 0..N-1')
    parser.add_argument('--first-seed', type=int, default=0,
                        help='run seeds K..K+N-1 instead: processes with different first seeds '
                        'can share one work dir (generate the world first); a final call with '
                        '--seeds covering them all writes the combined results')
    parser.add_argument('--method', choices=['hvp', 'mcl', 'both'], default='hvp',
                        help='pre-training(s) compared with random init')
    parser.add_argument('--ablations', action='store_true',
                        help='Table 5: also pre-train without each task (frozen cls, det, seg)')
    parser.add_argument('--sizes', action='store_true',
                        help='Table 6: also a wider, deeper Swin, pre-trained and from random init')
    parser.add_argument('--tasks', nargs='+', choices=['cls', 'probe', 'det', 'seg'],
                        help='measure only these tasks (default: cls, probe, det and seg in the '
                        'main table, probe, det and seg in Tables 5 and 6)')
    parser.add_argument('--world', choices=['colour', 'gray'], default='colour',
                        help='gray: the colour-free variant of the demo world (same scenes, '
                        'files and class counts; every pixel R = G = B)')
    parser.add_argument('--learning-curve', action='store_true',
                        help='instead of the tables: pre-train at every point of the learning '
                        'curve (images x iterations) on both worlds (or --world W only with '
                        '--curve-worlds W), probe each export, write learning_curve.json and '
                        'its chart')
    parser.add_argument('--cause', action='store_true',
                        help='instead of the tables: the cause study (docs/RESULTS.md): every '
                        'single-task and leave-one-out pre-training for 1,000 iterations, each '
                        'export at 100, 300 and 1,000 probed for RankMe, top-5 share and colour '
                        'share; writes cause.json and its chart')
    parser.add_argument('--cause-arms', nargs='+',
                        help='only these arms of --cause (processes with different arms can '
                        'share one work dir; a final call without it writes the file; with '
                        '--report-only, a file of these arms only)')
    parser.add_argument('--finetune-study', action='store_true',
                        help='instead of the tables: the fine-tune study of seed --first-seed '
                        '(docs/RESULTS.md): the schedule rule, the lr rule per arm on a '
                        'held-out part of train, all of train, 10 and 50 images per class, '
                        'LP-FT; random init and the HVP-MTL export; writes '
                        'finetune_seed<seed>.json')
    parser.add_argument('--no-lpft', action='store_true',
                        help='with --finetune-study: leave the LP-FT regime out (about half '
                        'of the study\'s CPU time)')
    parser.add_argument('--study-arms', nargs='+', choices=list(ARMS), default=['random', 'hvp'],
                        help='with --finetune-study: the arms (random first; the peers are '
                        'pre-trained for the study budget, the cause study\'s arms reused)')
    parser.add_argument('--headline', action='store_true',
                        help='what make demo runs: the protocol\'s headline rows at seed '
                        '--first-seed within ~15 min (10 images per class fine-tuned from random '
                        'init and from the HVP-MTL export at the schedule and lrs of the '
                        'committed study over seeds, both arms\' frozen-feature probes); '
                        'writes headline_seed<seed>.json')
    parser.add_argument('--combine-studies', nargs='+', metavar='FILE',
                        help='instead of running: combine the fine-tune study files of several '
                        'seeds (finetune_seed<seed>.json) into <work-dir>/finetune_seeds.json: '
                        'mean ± std, difference from random init ± SE and the verdict per row')
    parser.add_argument('--reuse', metavar='FILE',
                        help='with --finetune-study: a committed study file of the same seed '
                        'and grids (finetune_seed<seed>.json); runs whose values it has are not '
                        'run again, their values are read from it (adds an arm to a finished '
                        'study; the output names the file and its commit)')
    parser.add_argument('--shard', default='0/1', metavar='I/N',
                        help='with --finetune-study: run every N-th run from the I-th (N '
                        'processes on one work dir split each phase and wait for each other)')
    parser.add_argument('--curve-worlds', nargs='+', choices=['colour', 'gray'],
                        default=['colour', 'gray'], help='the worlds of --learning-curve')
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    parser.add_argument('--data-root', help='where the demo world goes (default '
                        'data/demo/<size>, data/demo/<size>_gray for --world gray)')
    parser.add_argument('--force', action='store_true', help='redo finished stages')
    parser.add_argument('--no-figures', action='store_true',
                        help='skip the loss curves and MIM picture')
    parser.add_argument('--tensorboard', action='store_true',
                        help='also log the fine-tunes to TensorBoard (pre-training always does: '
                        'its configs inherit a TensorBoard backend; <run>/<timestamp>/vis_data/)')
    parser.add_argument('--report-only', action='store_true',
                        help='run nothing: write results.json/.md and the charts from the runs '
                        'already in the work dir (missing runs read "not measured")')
    parser.add_argument('--render-docs', nargs='*', metavar='MARKDOWN',
                        help='only regenerate the demo tables of these Markdown files (default '
                        'README.md docs/RESULTS.md) from the results files their markers name')
    return parser.parse_args(argv)


def render_docs(files):
    for path in files or ['README.md', osp.join('docs', 'RESULTS.md')]:
        stale = update_generated_blocks(osp.join(ROOT, path), ROOT)
        print(f'{path}: ' + (f'regenerated from {", ".join(stale)}' if stale else 'up to date'))
    return 0


def write_atomic(path, text):
    with atomic_write(path, encoding='utf-8') as f:
        f.write(text)


def learning_curve(args, argv):
    """``--learning-curve``: every point on each world, then the file, the chart, the budget."""
    data = args.data_root or osp.join(ROOT, 'data', 'demo')
    os.makedirs(args.work_dir, exist_ok=True)
    curve = run_learning_curve(Demo, args.work_dir, data, worlds=args.curve_worlds,
                               force=args.force)
    out = osp.join(args.work_dir, 'learning_curve.json')
    write_learning_curve(curve, out, dict(command='python demo/run_demo.py ' + ' '.join(argv),
                                          commit=git_commit()))
    plot_learning_curve(curve, osp.join(args.work_dir, 'learning_curve.png'))
    with open(out, encoding='utf-8') as f:
        print(render_learning_curve(json.load(f)))
    return 0


def cause(args, argv):
    """``--cause``: every arm at seed ``--first-seed``, then ``cause.json`` and the chart."""
    data = args.data_root or osp.join(ROOT, 'data', 'demo', 'default')
    demo = Demo(args.work_dir, data, 'default', args.force, args.tensorboard)
    os.makedirs(demo.work_dir, exist_ok=True)
    if args.report_only:  # what is there (with --cause-arms: those arms only)
        found = read_cause(demo.work_dir, [args.first_seed], args.cause_arms)
    else:
        found = run_cause(demo, args.first_seed, args.cause_arms)
        if args.cause_arms:
            return 0
    out = osp.join(args.work_dir, 'cause.json')
    write_cause(found, out, dict(command='python demo/run_demo.py ' + ' '.join(argv),
                                 commit=git_commit()))
    plot_cause(found, osp.join(args.work_dir, 'cause.png'), str(args.first_seed))
    with open(out, encoding='utf-8') as f:
        print(render_cause(json.load(f), str(args.first_seed)))
    return 0


def headline(args, argv):
    """``--headline``: the protocol's headline rows at seed ``--first-seed``, and their json."""
    data = args.data_root or osp.join(ROOT, 'data', 'demo', 'default')
    demo = Demo(args.work_dir, data, 'default', args.force, args.tensorboard)
    os.makedirs(demo.work_dir, exist_ok=True)
    choices = load_choices(ROOT, args.first_seed)
    found = run_headline(demo, args.first_seed, choices)
    stages = {s: demo.stages.get(s) for s in dict.fromkeys(demo.requested)}
    found.update(command='python demo/run_demo.py ' + ' '.join(argv), commit=git_commit(),
                 stages=stages, **{f'{k}_s': round(sum(t[k] for t in stages.values() if t), 1)
                                   for k in ('wall', 'cpu')})
    out = osp.join(args.work_dir, f'headline_seed{args.first_seed}.json')
    write_atomic(out, json.dumps(found, indent=1) + '\n')
    print(render_finetune_seeds(found))
    print(f'{out}; its stages (also those found done from an earlier call): wall time '
          f'{found["wall_s"] / 60:.1f} min, CPU time {found["cpu_s"] / 60:.1f} min.')
    return 0


def combine_studies(args, argv):
    """``--combine-studies``: several seeds' study files into ``finetune_seeds.json``."""
    loaded = []
    for path in args.combine_studies:
        with open(path, encoding='utf-8') as f:
            loaded.append(json.load(f))
    sources = [osp.relpath(osp.abspath(p), ROOT) for p in args.combine_studies]
    combined = dict(command='python demo/run_demo.py ' + ' '.join(argv), commit=git_commit(),
                    **combine_finetune_studies(loaded, sources))
    os.makedirs(args.work_dir, exist_ok=True)
    write_atomic(osp.join(args.work_dir, 'finetune_seeds.json'),
                 json.dumps(combined, indent=1) + '\n')
    print(render_finetune_seeds(combined))
    return 0


def finetune_study(args, argv):
    """``--finetune-study``: the three phases at seed ``--first-seed``, then its json."""
    data = args.data_root or osp.join(ROOT, 'data', 'demo', 'default')
    demo = Demo(args.work_dir, data, 'default', args.force, args.tensorboard)
    os.makedirs(demo.work_dir, exist_ok=True)
    index, count = (int(v) for v in args.shard.split('/'))
    plan = StudyPlan(lpft=not args.no_lpft, arms=tuple(args.study_arms))
    reused = args.reuse and ReusedStudy.load(
        osp.relpath(osp.abspath(args.reuse), ROOT), args.first_seed, plan)
    if args.report_only:  # what is there so far ('not run' where a run is missing)
        found = read_finetune_study(demo.work_dir, args.first_seed, plan, reused)
    else:
        found = run_finetune_study(demo, args.first_seed, (index, count), plan, reused)
    if index:
        return 0
    out = osp.join(args.work_dir, f'finetune_seed{args.first_seed}.json')
    meta = dict(command='python demo/run_demo.py ' + ' '.join(argv), commit=git_commit())
    write_atomic(out, json.dumps(dict(meta, study=found), indent=1) + '\n')
    with open(out, encoding='utf-8') as f:
        written = json.load(f)
    plot_finetune_curves(written, osp.join(args.work_dir, f'finetune_seed{args.first_seed}.png'))
    print(render_finetune_study(written))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.render_docs is not None:
        return render_docs(args.render_docs)
    # a terminated demo stops its running stage too (run_with_progress kills it on the way out)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.force and osp.isdir(args.work_dir):
        shutil.rmtree(args.work_dir)
    if args.learning_curve:
        return learning_curve(args, argv)
    if args.cause:
        return cause(args, argv)
    if args.finetune_study:
        return finetune_study(args, argv)
    if args.combine_studies:
        return combine_studies(args, argv)
    if args.headline:
        return headline(args, argv)
    suffix = '' if args.world == 'colour' else f'_{args.world}'
    data = args.data_root or osp.join(ROOT, 'data', 'demo', args.size + suffix)
    demo = Demo(args.work_dir, data, args.size, args.force, args.tensorboard, args.world)
    os.makedirs(demo.work_dir, exist_ok=True)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    methods = ('hvp', 'mcl') if args.method == 'both' else (args.method, )
    tables = table_specs(methods, args.ablations, args.sizes, args.tasks)
    print(f'Demo, size {args.size}, seeds {seeds}, pre-training {" + ".join(methods)}: work dir '
          f'{demo.work_dir}, data {demo.data}')

    if not args.report_only:
        demo.make_world()
        run_tables(demo, tables, seeds)
    if not (args.no_figures or args.report_only) and 'hvp' in methods and 0 in seeds:
        main_dir = seed_dir(demo.work_dir, 0)
        demo.figures(osp.join(main_dir, 'pretrain_hvp'),
                     osp.join(main_dir, 'pretrain_hvp', f'iter_{demo.size["pretrain"]}.pth'))

    results = build_results(demo.work_dir, tables, seeds, args.size, argv, args.world)
    text = render_results(results) + '\n' + closing_note(results)
    write_atomic(osp.join(demo.work_dir, 'results.json'), json.dumps(results, indent=1) + '\n')
    write_atomic(osp.join(demo.work_dir, 'results.md'), text)
    for name, table in results['tables'].items():
        plot_table(table, osp.join(demo.work_dir, f'{name}_chart.png'))
    print('\n' + text)
    print(f'Written to {osp.join(demo.work_dir, "results.md")} (and results.json, '
          f'*_chart.png); logs in {osp.join(demo.work_dir, "logs")}.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
