"""SwAV's codes at the paper's global batch (1,024 rows, 3,000 prototypes), with and without a
queue of 3,840 embeddings, on the project's truncated Sinkhorn.

    python tools/analysis_tools/swav_queue.py [--batch 1024] [--queue 3840] [--json OUT]

Prints the per-sample code entropy, the prototypes a code is spread over, the prototypes in use
and the share of scores the T_max clamp cuts, for spread and clustered synthetic embeddings
(:mod:`hvp_mtl.apis.swav_queue_study`).
"""
import argparse
import json

from hvp_mtl.apis.swav_queue_study import queue_study, summary_table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch', type=int, default=1024, help='global rows (16 x 64 GPUs)')
    parser.add_argument('--queue', type=int, default=3840)
    parser.add_argument('--prototypes', type=int, default=3000)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--json', help='also write the rows to this file')
    args = parser.parse_args()
    rows = queue_study(args.batch, args.queue, args.prototypes, seeds=args.seeds)
    print(summary_table(rows, args.prototypes))
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(dict(batch=args.batch, queue=args.queue, prototypes=args.prototypes,
                           rows=rows), f, indent=1)


if __name__ == '__main__':
    main()
