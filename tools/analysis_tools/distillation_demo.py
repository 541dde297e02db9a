"""Demo-scale evidence for eq. (5)-(6): pre-train with and without distillation, several seeds.

    python tools/analysis_tools/distillation_demo.py --data-root DEMO_WORLD
        [--seeds 0 1 2] [--iters 300] [--arms distill no_distill literal]
        [--work-dir work_dirs/distillation_demo] [--out docs/results/distillation_demo.json]
    python tools/analysis_tools/distillation_demo.py --data-root X --table-only   # table of --out

The arms, the runs and the scores are described in :mod:`hvp_mtl.apis.distillation_demo`.
Finished runs are skipped when the command is repeated (``--no-train``: evaluate only those).
"""
import argparse
import json
import os
import os.path as osp

from hvp_mtl.apis.distillation_demo import ARMS, CONFIG, evaluate, markdown, summarise, train


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-root', required=True, help='a demo world (make_demo_data.py)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--iters', type=int, default=300)
    parser.add_argument('--arms', nargs='+', default=list(ARMS), choices=list(ARMS))
    parser.add_argument('--work-dir', default='work_dirs/distillation_demo')
    parser.add_argument('--out', default='docs/results/distillation_demo.json')
    parser.add_argument('--no-train', action='store_true',
                        help='evaluate only the runs that have a checkpoint')
    parser.add_argument('--table-only', action='store_true',
                        help='print the table of an existing --out file and stop')
    args = parser.parse_args()
    if args.table_only:
        with open(args.out) as f:
            print(markdown(json.load(f)['summary']))
        return
    data_root = osp.abspath(args.data_root)
    runs = []
    for seed in args.seeds:
        for arm in args.arms:
            work = osp.abspath(osp.join(args.work_dir, f'{arm}_seed{seed}'))
            os.makedirs(work, exist_ok=True)
            ckpt = osp.join(work, f'iter_{args.iters}.pth')
            if args.no_train and not osp.isfile(ckpt):
                continue
            ckpt = train(arm, seed, args.iters, data_root, work)
            runs.append(dict(arm=arm, seed=seed, **evaluate(ckpt, work, data_root, seed)))
            print(json.dumps(runs[-1]), flush=True)
    summary = summarise(runs)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(config=CONFIG, iters=args.iters, seeds=args.seeds, runs=runs,
                       summary=summary), f, indent=1)
    print(markdown(summary))


if __name__ == '__main__':
    main()
