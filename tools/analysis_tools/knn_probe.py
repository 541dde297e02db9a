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
single-process run (``tools/dist_train.sh``-style launch with torchrun).
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dist import get_dist_info, init_dist  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402


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


def probe_dataset(path, prefix, pipeline, option):
    """A ``CustomDataset`` config for a class-folder dir or an ann file."""
    if osp.isdir(path):
        return dict(type='CustomDataset', data_root='', data_prefix=path,
                    with_label=True, pipeline=pipeline)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{option} {path}: no such file or folder')
    if prefix is None:
        raise ValueError(f'{option} {path} is an annotation file: pass '
                         f'{option}-prefix, the folder its paths are under')
    return dict(type='CustomDataset', data_root='', ann_file=path,
                data_prefix=prefix, with_label=True, pipeline=pipeline)


def main(argv=None):
    args = parse_args(argv)
    import torch
    from mmpretrain.registry import MODELS

    from hvp_mtl.apis import default_test_pipeline
    from hvp_mtl.evaluation import build_sharded_dataloader, run_knn_probe

    cfg = Config.fromfile(args.config)  # custom_imports load the plugin
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.launcher != 'none':
        from hvp_mtl.engine.runner import enable_cpu_distributed
        enable_cpu_distributed()  # gloo when there is no CUDA
        init_dist(args.launcher)
    init_default_scope('mmpretrain')
    rank, _ = get_dist_info()
    device = args.device or (f'cuda:{os.environ["LOCAL_RANK"]}'
                             if torch.cuda.is_available() else 'cpu')

    model = MODELS.build(cfg.model)
    load_checkpoint(model, args.checkpoint, map_location='cpu')
    model.to(device).eval()

    img_size = args.img_size or cfg.model.backbone.get('img_size', 224)
    pipeline = default_test_pipeline(img_size)
    loaders = [
        build_sharded_dataloader(
            dict(batch_size=args.batch_size, num_workers=args.num_workers,
                 dataset=probe_dataset(path, prefix, pipeline, option)))
        for path, prefix, option in ((args.train, args.train_prefix,
                                      '--train'),
                                     (args.val, args.val_prefix, '--val'))
    ]
    train_classes = loaders[0].dataset.metainfo.get('classes')
    val_classes = loaders[1].dataset.metainfo.get('classes')
    if osp.isdir(args.val) and tuple(val_classes) != tuple(train_classes):
        raise ValueError(f'the class folders of --val {args.val} differ from '
                         f'those of --train {args.train}')
    result = run_knn_probe(model, loaders[0], loaders[1], k=args.k,
                           temperature=args.temperature,
                           use_teacher=args.use_teacher)
    result.update(k=args.k, temperature=args.temperature,
                  num_train=len(loaders[0].dataset),
                  num_val=len(loaders[1].dataset),
                  backbone='teacher' if args.use_teacher else 'student')
    if rank == 0:
        print(f'kNN probe (k={args.k}, T={args.temperature}, '
              f'{result["backbone"]}): top1 {result["top1"]:.2f}  top5 '
              f'{result["top5"]:.2f}  (chance {result["chance"]:.2f}; '
              f'{result["num_train"]} train, {result["num_val"]} val images)')
        if args.out:
            from hvp_mtl.utils.atomic_io import atomic_write
            with atomic_write(args.out) as f:
                json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main()
