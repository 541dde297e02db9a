"""kNN probe (DINO-style) of a pre-training checkpoint's frozen backbone.

    python tools/analysis_tools/knn_probe.py CONFIG CHECKPOINT \
        --train data/imagenet/train --val data/imagenet/meta/val.txt \
        --val-prefix data/imagenet/val [--k 20] [--temperature 0.07] \
        [--img-size 224] [--use-teacher] [--batch-size 64] [--out knn.json] \
        [--launcher pytorch]

``--train``/``--val`` are each a folder with one sub-folder per class
(ImageNet ``train/`` layout) or an annotation file of ``relative/path label``
lines (ImageNet ``meta/val.txt``) whose images lie under ``--*-prefix``.
Features: average-pooled last backbone stage, L2-normalised; ``k`` nearest
training features by cosine similarity vote with weight ``exp(sim / T)``.
With ``--launcher`` every process extracts a shard and the result equals a
single-process run (``tools/dist_train.sh``-style launch with torchrun). The probe lives in
:mod:`hvp_mtl.apis.checkpoint_knn_probe`.
"""
import argparse
import json
import os

import torch.distributed as dist
from mmengine.config import DictAction
from mmengine.dist import barrier, get_dist_info, is_distributed

from hvp_mtl.apis.checkpoint_knn_probe import knn_probe_checkpoint
from hvp_mtl.utils.atomic_io import atomic_write


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='kNN probe of a backbone')
    parser.add_argument('config', help='pre-training config file')
    parser.add_argument('checkpoint', help='checkpoint of that config')
    parser.add_argument('--train', required=True,
                        help='class-folder directory or annotation file')
    parser.add_argument('--val', required=True,
                        help='class-folder directory or annotation file')
    parser.add_argument('--train-prefix', help='image folder of --train file')
    parser.add_argument('--val-prefix', help='image folder of --val file')
    parser.add_argument('--k', type=int, default=20)
    parser.add_argument('--temperature', type=float, default=0.07)
    parser.add_argument('--img-size', type=int, default=None,
                        help="default: the config's backbone img_size or 224")
    parser.add_argument('--use-teacher', action='store_true',
                        help="probe the EMA teacher's backbone")
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--num-workers', type=int, default=4)
    parser.add_argument('--device', default=None,
                        help='default: cuda:LOCAL_RANK if available, else cpu')
    parser.add_argument('--out', help='write the result to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    result = knn_probe_checkpoint(
        args.config, args.checkpoint, args.train, args.val, args.train_prefix, args.val_prefix,
        k=args.k, temperature=args.temperature, img_size=args.img_size,
        use_teacher=args.use_teacher, batch_size=args.batch_size, num_workers=args.num_workers,
        device=args.device, cfg_options=args.cfg_options, launcher=args.launcher)
    rank, _ = get_dist_info()
    if rank == 0 and args.out:
        with atomic_write(args.out) as f:
            json.dump(result, f, indent=2)
    if is_distributed():
        # every rank leaves together and closes the group: a rank exiting while gloo's threads
        # still run died with SIGABRT ("terminate called without an active exception") under load
        barrier()
        dist.destroy_process_group()
    return result


if __name__ == '__main__':
    main()
