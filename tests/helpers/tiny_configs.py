"""Tiny HVP-MTL pre-training configs for CPU tests, built from the real configs.

``tiny_pretrain_cfg`` loads ``configs/pretrain/hvp_swin-t.py`` or
``hvp_vit-b.py`` and shrinks only what must shrink for a 2-core CPU (backbone
and head widths, image size, batch, schedule), so a test exercises the real
pipeline, dataset, model and runner settings of the shipped configs.
"""
import os.path as osp
from pathlib import Path
from typing import Optional, Union

from mmengine.config import Config

from hvp_mtl.datasets import read_dictionary

ROOT = Path(__file__).resolve().parents[2]
TINY_SWIN_ARCH = dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4])
TINY_VIT_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
DICTIONARY = 'dictionary_and_semantic_hierarchy.txt'


def _resize_pipeline(transforms, img_size: int, patch_size: int) -> None:
    """Set the crop size and the mask grid of every transform, recursively."""
    for t in transforms:
        if isinstance(t, (list, tuple)):
            _resize_pipeline(t, img_size, patch_size)
            continue
        if t.get('type') == 'RandomResizedCrop':
            t['scale'] = img_size
        if 'MaskGenerator' in t.get('type', ''):
            t['input_size'] = img_size
            t['model_patch_size'] = patch_size
        for key in ('transforms', 'mask_generator'):
            if t.get(key):
                nested = t[key]
                _resize_pipeline(nested if isinstance(nested, (list, tuple)) else [nested],
                                 img_size, patch_size)


def tiny_pretrain_cfg(backbone: str = 'swin',
                      work_dir: Union[str, Path, None] = None,
                      data_root: Union[str, Path, None] = None,
                      max_iters: int = 20,
                      batch_size: int = 4,
                      img_size: int = 64,
                      num_classes: Optional[int] = None,
                      data_prefix: str = 'images/',
                      montage: float = 0.) -> Config:
    """A CPU-sized HVP-MTL config.

    Args:
        backbone (str): ``'swin'`` (from ``hvp_swin-t.py``) or ``'vit'``
            (from ``hvp_vit-b.py``).
        work_dir (str | Path, optional): Runner work dir.
        data_root (str | Path, optional): A Tencent-format folder (``train.txt``,
            the class dictionary, images under ``data_prefix``), e.g.
            ``demo_world / 'pretrain'``.
        max_iters (int): Iterations (``IterBasedTrainLoop``).
        batch_size (int): Images per view and step.
        img_size (int): View size, a multiple of 32.
        num_classes (int, optional): Defaults to the dictionary's count.
        data_prefix (str): Image folder below ``data_root``.
        montage (float): ``loss_weights.montage``; > 0 adds the montage task
            of ``hvp_swin-b_montage.py`` (Swin only), shrunk.

    Returns:
        Config: ready for ``Runner.from_cfg`` / ``MODELS.build(cfg.model)``.
    """
    if backbone not in ('swin', 'vit'):
        raise ValueError(f"backbone must be 'swin' or 'vit', got {backbone!r}")
    name = 'hvp_swin-t.py' if backbone == 'swin' else 'hvp_vit-b.py'
    cfg = Config.fromfile(str(ROOT / 'configs' / 'pretrain' / name))
    if num_classes is None:
        if data_root is None:
            raise ValueError('give num_classes or a data_root with a class dictionary')
        num_classes = len(read_dictionary(osp.join(str(data_root), DICTIONARY)))

    model = cfg.model
    if backbone == 'swin':
        model.backbone.update(arch=TINY_SWIN_ARCH, img_size=img_size, window_size=2,
                              drop_path_rate=0.)
        width, patch_size = 16 * 8, 4
    else:
        model.backbone.update(arch=TINY_VIT_ARCH, img_size=img_size, drop_path_rate=0.)
        width, patch_size = 32, 16
    model.tasks.mlc.update(num_classes=num_classes, in_channels=width, embed_dims=32,
                           num_groups=4, num_heads=2, feedforward_channels=64, dropout=0.)
    model.tasks.swav.update(in_channels=width, hidden_channels=64, out_channels=16,
                            num_prototypes=16, freeze_prototypes_iters=2)
    model.tasks.mim.update(in_channels=width)
    if montage > 0:
        _add_montage(cfg, montage, img_size)

    _resize_pipeline(cfg.train_dataloader.dataset.pipeline, img_size, patch_size)
    cfg.train_dataloader.update(batch_size=batch_size, num_workers=0, persistent_workers=False,
                                pin_memory=False)
    if data_root is not None:
        cfg.train_dataloader.dataset.update(data_root=str(data_root), data_prefix=data_prefix)

    cfg.optim_wrapper = dict(
        type='OptimWrapper',  # AMP needs an accelerator
        optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
        clip_grad=dict(max_norm=5.0),
        paramwise_cfg=cfg.optim_wrapper.paramwise_cfg)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                end=max(1, max_iters // 4))]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=max_iters,
                                        by_epoch=False)
    cfg.log_processor = dict(by_epoch=False, window_size=1)
    # training only: the shipped evaluation block (ML-Images val.txt) is re-added, CPU-sized,
    # by tests/eval_helpers.py where a test validates
    for key in ('val_dataloader', 'val_evaluator', 'val_cfg', 'test_dataloader',
                'test_evaluator', 'test_cfg', 'val_pipeline'):
        cfg.pop(key, None)
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks', [])
                        if h['type'] != 'IterIntervalValHook']
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    cfg.randomness = dict(seed=0, deterministic=False)
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    return cfg


def _add_montage(cfg: Config, weight: float, img_size: int) -> None:
    """The montage task of ``hvp_swin-b_montage.py`` at the tiny Swin's widths."""
    shipped = Config.fromfile(str(ROOT / 'configs' / 'pretrain' / 'hvp_swin-b_montage.py'))
    if cfg.model.backbone.type != 'MaskedSwinTransformer':
        raise ValueError('the montage task needs the four Swin stages')
    fpn = 16
    head = shipped.model.tasks.montage
    head.neck.update(in_channels=[16, 32, 64, 128], out_channels=fpn)
    head.cell_head.update(in_channels=fpn, cell_size=img_size // 32, hidden_channels=32,
                          out_channels=16)
    head.predictors.update(in_channels=16, hidden_channels=32, out_channels=16)
    cfg.model.tasks.update(montage=head)
    cfg.model.backbone.out_indices = shipped.model.backbone.out_indices
    cfg.model.loss_weights = dict(cfg.model.loss_weights, montage=weight)
    cfg.custom_imports = shipped.custom_imports
