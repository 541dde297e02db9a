"""Benchmark: the end-of-run multi-label validation metric at full size.

ML-Images' full validation: 88,739 images x 11,166 classes, ~8.7 positive
labels per image (soft confidences 1 / 0.9 / 0.8), scored on ``--ranks``
processes (gloo). Every rank feeds its share of the images (rank ``r`` gets
images ``r, r + W, ...`` and the sampler's padding, as ``DefaultSampler``
does) to the metric in batches, then ``evaluate(size)`` runs. Reported side
by side, in one run:

- ours: ``SoftTargetAveragePrecision`` (scores kept per rank, AP in class
  chunks over the ranks) at the full size;
- dense: the metric as it was before (every image's fp32 scores and bool
  target kept, pickled to rank 0 through mmengine's ``collect_results`` and
  stacked there), at ``--dense-fraction`` of the images -- its memory is
  linear in the number of images, so the full-size figure is a linear
  extrapolation of the measured one (it does not fit a 24 GB machine);
- both at the fraction, to show they give the same mAP.

Peak extra RSS is rank 0's peak resident memory (``VmHWM``, reset before
the metric is created) minus its resident memory at that moment. Time is
the wall time of ``process`` over all batches plus ``evaluate`` on rank 0.

Example::

    python tools/perf/val_metric.py            # full size, 2 ranks
"""
import argparse
import os
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hvp_mtl.perf.process_rss import peak_rss_mb, reset_peak_rss

NUM_IMAGES = 88_739
NUM_CLASSES = 11_166
MEAN_POSITIVES = 8.7


def image_batch(first: int, indices, num_classes: int):
    """Deterministic scores and soft targets of images ``indices``."""
    g = torch.Generator().manual_seed(1_000_003 * first + 17)
    scores = torch.rand(len(indices), num_classes, generator=g)
    samples = []
    for row, _ in enumerate(indices):
        count = int(torch.poisson(torch.tensor(MEAN_POSITIVES), generator=g))
        classes = torch.randint(num_classes, (max(count, 1), ), generator=g)
        conf = torch.tensor([1.0, 0.9, 0.8])[torch.randint(
            3, (len(classes), ), generator=g)]
        gt = torch.zeros(num_classes)
        gt[classes] = conf
        # positives score a little higher: a non-trivial mAP
        scores[row, classes] = scores[row, classes] * 0.5 + 0.5
        # one tensor per image, as after the model's scores are moved from
        # the GPU (a row view would pickle its whole batch)
        samples.append(dict(pred_score=scores[row].clone(), gt_score=gt))
    return samples


def dense_metric_class():
    """The soft-target AP metric as it was before the bounded version."""
    from mmpretrain.evaluation import AveragePrecision

    from hvp_mtl.evaluation import average_precision_per_class, binarize_soft_targets

    class DenseSoftTargetAveragePrecision(AveragePrecision):

        def process(self, data_batch, data_samples):
            for sample in data_samples:
                pred = sample['pred_score'].detach().float().cpu()
                self.results.append(dict(
                    pred_score=pred, gt_positive=binarize_soft_targets(
                        sample, pred.numel(), 0.5).cpu()))

        def compute_metrics(self, results):
            pred = torch.stack([r['pred_score'] for r in results])
            target = torch.stack([r['gt_positive'] for r in results])
            ap = average_precision_per_class(pred, target) * 100.0
            return dict(mAP=ap[~torch.isnan(ap)].mean().item())

    return DenseSoftTargetAveragePrecision


def run_rank(rank, world, init_file, cases, batch, num_classes, out):
    import hvp_mtl  # noqa: F401
    from hvp_mtl.evaluation import SoftTargetAveragePrecision
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world)
    results = {}
    for name, num_images in cases:
        metric = (SoftTargetAveragePrecision() if name == 'ours' else
                  dense_metric_class()())
        padded = -(-num_images // world) * world
        mine = [i % num_images for i in range(rank, padded, world)]
        dist.barrier()
        base = reset_peak_rss()
        busy = 0.0
        for start in range(0, len(mine), batch):
            samples = image_batch(start * world + rank,
                                  mine[start:start + batch], num_classes)
            tic = time.perf_counter()
            metric.process(None, samples)
            busy += time.perf_counter() - tic
            del samples
        tic = time.perf_counter()
        value = metric.evaluate(num_images)
        busy += time.perf_counter() - tic
        results[(name, num_images)] = dict(
            peak_extra_mb=peak_rss_mb() - base, seconds=busy,
            mAP=value['multi-label/mAP'])
        del metric
    if rank == 0:
        out.put(results)
    dist.barrier()
    dist.destroy_process_group()


def run_ranks(world, cases, batch, num_classes):
    """Run ``cases`` on ``world`` fresh processes; rank 0's results."""
    init_file = tempfile.mktemp(prefix='val_metric_init_')
    ctx = mp.get_context('spawn')
    out = ctx.SimpleQueue()
    procs = [ctx.Process(target=run_rank,
                         args=(r, world, init_file, cases, batch,
                               num_classes, out))
             for r in range(world)]
    for p in procs:
        p.start()
    results = out.get()
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f'rank exited with {p.exitcode}')
    if os.path.exists(init_file):
        os.remove(init_file)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=NUM_IMAGES)
    parser.add_argument('--classes', type=int, default=NUM_CLASSES)
    parser.add_argument('--ranks', type=int, default=2)
    parser.add_argument('--dense-fraction', type=float, default=0.125)
    parser.add_argument('--batch', type=int, default=256)
    args = parser.parse_args()
    fraction = max(int(args.images * args.dense_fraction), args.ranks)
    cases = [('ours', fraction), ('dense', fraction), ('ours', args.images)]
    results = {}
    for case in cases:  # fresh processes per case: no memory carried over
        results.update(run_ranks(args.ranks, [case], args.batch,
                                 args.classes))
        print(f'{case[0]} @ {case[1]:,}: {results[case]}', flush=True)

    full, part = args.images, fraction
    ours, ours_part = results[('ours', full)], results[('ours', part)]
    dense = results[('dense', part)]
    scale = full / part
    print(f'\n{args.ranks} ranks (gloo), {args.classes:,} classes, '
          f'~{MEAN_POSITIVES} positives per image; rank 0 figures\n')
    print(f'| metric | ours @ {full:,} | ours @ {part:,} | dense @ {part:,} '
          f'(measured) | dense @ {full:,} (x{scale:.2f} linear estimate) | '
          'goal |')
    print('|' + '---|' * 6)
    print(f'| peak extra RSS (MB) | {ours["peak_extra_mb"]:.0f} | '
          f'{ours_part["peak_extra_mb"]:.0f} | {dense["peak_extra_mb"]:.0f} | '
          f'{dense["peak_extra_mb"] * scale:.0f} | <= 3072 |')
    print(f'| time, process + evaluate (s) | {ours["seconds"]:.1f} | '
          f'{ours_part["seconds"]:.1f} | {dense["seconds"]:.1f} | '
          f'{dense["seconds"] * scale:.0f} | |')
    print(f'| mAP | {ours["mAP"]:.6f} | {ours_part["mAP"]:.6f} | '
          f'{dense["mAP"]:.6f} | | |')
    print(f'\nmAP ours - dense @ {part:,}: '
          f'{ours_part["mAP"] - dense["mAP"]:.2e}')
    print(f'peak extra RSS dense / ours @ {full:,}: '
          f'{dense["peak_extra_mb"] * scale / ours["peak_extra_mb"]:.1f}x')
    print(f'cpu count {os.cpu_count()}, load average '
          f'{os.getloadavg()[0]:.1f} at the end')


if __name__ == '__main__':
    main()
