"""kNN probe (DINO-style) of a pre-training checkpoint's frozen backbone.

The core of ``tools/analysis_tools/knn_probe.py``: build the config's model, load the checkpoint,
extract features of a train and a val image set (each a folder with one sub-folder per class, or an
annotation file of ``relative/path label`` lines with an image prefix) and vote with the ``k``
nearest training features (:func:`hvp_mtl.evaluation.run_knn_probe`). Under a launcher every
process extracts a shard and the result equals a single-process run.
"""
import os
import os.path as osp

from mmengine.config import Config
from mmengine.dist import get_dist_info, init_dist
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

__all__ = ['probe_dataset', 'knn_probe_checkpoint']


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


def knn_probe_checkpoint(config, checkpoint, train, val, train_prefix=None, val_prefix=None,
                         k=20, temperature=0.07, img_size=None, use_teacher=False,
                         batch_size=64, num_workers=4, device=None, cfg_options=None,
                         launcher='none'):
    """Probe ``checkpoint`` of ``config`` with a weighted kNN classifier.

    Args:
        config (str): Pre-training config file.
        checkpoint (str): A checkpoint of that config (the whole model).
        train (str): Class-folder directory or annotation file of the training images.
        val (str): Same for the evaluated images.
        train_prefix (str, optional): Image folder of an annotation file ``train``.
        val_prefix (str, optional): Image folder of an annotation file ``val``.
        k (int): Neighbours that vote.
        temperature (float): Vote weight ``exp(sim / temperature)``.
        img_size (int, optional): Crop size; default the config's backbone ``img_size`` or 224.
        use_teacher (bool): Probe the EMA teacher's backbone instead of the student's.
        batch_size (int): Images per feature-extraction batch.
        num_workers (int): Dataloader workers.
        device (str, optional): Default ``cuda:LOCAL_RANK`` if available, else ``cpu``.
        cfg_options (dict, optional): Config overrides, as ``--cfg-options``.
        launcher (str): ``'none'`` or an mmengine launcher (``'pytorch'``, ...).

    Returns:
        dict: :func:`~hvp_mtl.evaluation.run_knn_probe`'s ``top1``, ``top5``, ``chance``, plus
        ``k``, ``temperature``, ``num_train``, ``num_val`` and ``backbone``. Rank 0 prints it.

    Raises:
        ValueError: The class folders of ``val`` differ from those of ``train``.
    """
    import torch
    from mmpretrain.registry import MODELS

    from hvp_mtl.apis import default_test_pipeline
    from hvp_mtl.evaluation import build_sharded_dataloader, run_knn_probe

    cfg = Config.fromfile(config)  # custom_imports load the plugin
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if launcher != 'none':
        from hvp_mtl.engine.runner import enable_cpu_distributed
        enable_cpu_distributed()  # gloo when there is no CUDA
        init_dist(launcher)
    init_default_scope('mmpretrain')
    rank, _ = get_dist_info()
    device = device or (f'cuda:{os.environ["LOCAL_RANK"]}'
                        if torch.cuda.is_available() else 'cpu')

    model = MODELS.build(cfg.model)
    load_checkpoint(model, checkpoint, map_location='cpu')
    model.to(device).eval()

    img_size = img_size or cfg.model.backbone.get('img_size', 224)
    pipeline = default_test_pipeline(img_size)
    loaders = [
        build_sharded_dataloader(
            dict(batch_size=batch_size, num_workers=num_workers,
                 dataset=probe_dataset(path, prefix, pipeline, option)))
        for path, prefix, option in ((train, train_prefix, '--train'),
                                     (val, val_prefix, '--val'))
    ]
    train_classes = loaders[0].dataset.metainfo.get('classes')
    val_classes = loaders[1].dataset.metainfo.get('classes')
    if osp.isdir(val) and tuple(val_classes) != tuple(train_classes):
        raise ValueError(f'the class folders of --val {val} differ from '
                         f'those of --train {train}')
    result = run_knn_probe(model, loaders[0], loaders[1], k=k,
                           temperature=temperature,
                           use_teacher=use_teacher)
    result.update(k=k, temperature=temperature,
                  num_train=len(loaders[0].dataset),
                  num_val=len(loaders[1].dataset),
                  backbone='teacher' if use_teacher else 'student')
    if rank == 0:
        print(f'kNN probe (k={k}, T={temperature}, '
              f'{result["backbone"]}): top1 {result["top1"]:.2f}  top5 '
              f'{result["top5"]:.2f}  (chance {result["chance"]:.2f}; '
              f'{result["num_train"]} train, {result["num_val"]} val images)')
    return result
