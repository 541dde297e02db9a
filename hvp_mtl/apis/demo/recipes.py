"""The demo's recipes: its configs, sizes, Table-5 loss weights and Table-6 backbone sizes.

Every run of the demo is one of the configs below with ``--cfg-options`` derived from here; the
fine-tune recipes themselves (lr, heads, pipelines) live in ``configs/demo/*.py``.
"""
import ast
from pathlib import Path
from typing import Dict, Union

__all__ = ['CONFIGS', 'SIZES', 'ARCHS', 'ABLATION_CONFIGS', 'ablation_weights', 'arch_options']

ROOT = Path(__file__).resolve().parents[3]

CONFIGS = dict(hvp='configs/demo/hvp_swin-demo_pretrain.py',
               mcl='configs/demo/mcl_swin-demo_pretrain.py',
               simmim='configs/demo/simmim_swin-demo_pretrain.py',
               swav='configs/demo/swav_swin-demo_pretrain.py',
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
    dict(world=dict(num_pretrain=256, num_cls=800, num_det=192, num_seg=192),
         pretrain=120,
         batch=32,
         cls=3,
         # detection and segmentation as at the default size: 4 epochs on 96 images gave <= 0.4 box
         # AP for every initialisation, 300 iterations on 96 images background-only maps (12.22
         # mIoU) in 5 of 15 runs (docs/RESULTS.md)
         det=6,
         seg=400),
    'default':
    dict(world=dict(num_pretrain=512, num_cls=1600, num_det=192, num_seg=192),
         pretrain=300,
         batch=32,
         cls=4,
         det=6,
         seg=400),
}
# Table 6: the demo Swin and a wider, deeper one (stage widths C, 2C, 4C, 8C)
ARCHS = dict(demo=dict(embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8]),
             wide=dict(embed_dims=48, depths=[2, 2, 4, 2], num_heads=[2, 4, 8, 16]))
# Table 5: each variant is one config of configs/pretrain/ablations/ (ViT-B, the paper's Table 5);
# the demo applies the loss weights that config sets (its own ``model.loss_weights``, not its
# base's) to the demo's Swin
ABLATION_CONFIGS = dict(wo_multilabel='configs/pretrain/ablations/hvp_vit-b_no-mlc.py',
                        wo_contrastive='configs/pretrain/ablations/hvp_vit-b_no-swav.py',
                        wo_mim='configs/pretrain/ablations/hvp_vit-b_no-mim.py',
                        wo_distillation='configs/pretrain/ablations/hvp_vit-b_no-distill.py')


def ablation_weights(variant: str, root: Union[str, Path] = ROOT) -> Dict[str, float]:
    """The loss weights the Table 5 config of ``variant`` sets (e.g. ``{'mim': 0.0}``).

    Read from the file's own ``model = dict(loss_weights=dict(...))`` (``ast``, literals
    only), so the demo and the ViT-B ablation configs cannot disagree.

    Raises:
        ValueError: The config sets no ``model.loss_weights``.
    """
    path = Path(root) / ABLATION_CONFIGS[variant]
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == 'model' for t in node.targets):
            for keyword in getattr(node.value, 'keywords', []):
                if keyword.arg == 'loss_weights':
                    return {k.arg: ast.literal_eval(k.value) for k in keyword.value.keywords}
    raise ValueError(f'{path}: no model = dict(loss_weights=dict(...))')


def arch_options(arch, config):
    """``--cfg-options`` that set the backbone ``arch`` and the widths that follow it."""
    spec = ARCHS[arch]
    c = spec['embed_dims']
    widths = [c, 2 * c, 4 * c, 8 * c]
    opts = [f'model.backbone.arch.{k}={v}'.replace(' ', '') for k, v in spec.items()]
    if config == 'hvp':
        opts += [f'model.tasks.{t}.in_channels={widths[-1]}' for t in ('mim', 'swav', 'mlc')]
    elif config == 'mcl':
        opts += [f'model.neck.in_channels={widths}'.replace(' ', '')]
    elif config == 'cls':
        opts += [f'model.head.in_channels={widths[-1]}']
    elif config == 'det':
        opts += [f'model.neck.in_channels={widths}'.replace(' ', '')]
    else:
        opts += [f'model.decode_head.in_channels={widths}'.replace(' ', ''),
                 f'model.auxiliary_head.in_channels={widths[2]}']
    return opts
