"""Linear probe and kNN on the frozen features of an exported backbone (or a random one).

    python demo/probe_backbone.py CLS_CONFIG [--checkpoint BACKBONE.pth] [--seed 0]
        [--out probe.json] [--sweep] [--cfg-options key=value ...]

The classification config gives the backbone and the train (probe training set, kNN bank) and
val splits; without ``--checkpoint`` the backbone keeps the random initialisation of ``--seed``.
Besides the linear probe and raw kNN it writes the kNN in the centred and whitened spaces and the
train bank's RankMe, top-5 share and colour share; ``--sweep`` adds the held-out L2 sweep.
"""
import argparse

from mmengine.config import DictAction

from hvp_mtl.apis.demo.probes import probe_backbone


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='classification fine-tune config')
    parser.add_argument('--checkpoint', help='exported backbone (default: random init)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--k', type=int, default=20)
    parser.add_argument('--temperature', type=float, default=0.07)
    parser.add_argument('--out', help='write the result to this JSON file')
    parser.add_argument('--sweep', action='store_true',
                        help='also the linear probe with its L2 strength chosen on a held-out 20 '
                        '%% of train (standardised and raw)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    result = probe_backbone(args.config, args.checkpoint, args.seed, args.cfg_options, args.k,
                            args.temperature, args.out, sweep=args.sweep)
    linear, knn, rep = result['linear'], result['knn'], result['representation']
    print(f'linear probe top-1 {linear["top1"]:.2f} (train {linear["train_top1"]:.2f}), kNN '
          f'top-1 {knn["top1"]:.2f} (chance {result["chance"]:.2f}; {result["num_train"]} '
          f'train, {result["num_val"]} val images)')
    spaces = ', '.join(f'{k} {v:.2f}' for k, v in result['knn_spaces'].items())
    print(f'kNN top-1 by feature space: {spaces}; RankMe {rep["rankme"]:.1f}, top-5 share '
          f'{rep["top5_share"]:.3f}, colour R2 top-2 PCs {rep["colour_top2_r2"]:.3f}, all '
          f'{rep["colour_total_r2"]:.3f}')
    for name, row in result.get('linear_sweep', {}).items():
        print(f'linear probe ({name}, L2 {row["weight_decay"]:g} chosen on held-out train): '
              f'top-1 {row["top1"]:.2f}')
    return result


if __name__ == '__main__':
    main()
