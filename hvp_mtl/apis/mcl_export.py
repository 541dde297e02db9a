"""Export an MCL pre-training checkpoint for an mmdet FPN detector.

MCL (arXiv 2304.02010) pre-trains the backbone, the FPN and the four convs of
its cell head; its transfer (official ``convert-sppretrain-to-detectron2.py``)
carries all three into Mask R-CNN R50-FPN with a 4conv1fc box head. Here the
keys are written in mmdet's layout::

    backbone.*                   <- [teacher.]backbone.*
    neck.*                       <- [teacher.]neck.*           (mmdet FPN)
    roi_head.bbox_head.shared_convs.{i}.*
                                 <- [teacher.]cell_head.convs.{i}.*

and load with ``init_cfg=dict(type='Pretrained', checkpoint=OUT, prefix=...)``
on ``backbone`` (``'backbone.'``), ``neck`` (``'neck.'``) and ``roi_head``
(``'roi_head.'``) of ``Shared4Conv1FCBBoxHead``-based configs. The backbone
part is selected by :func:`~hvp_mtl.apis.backbone_export.select_backbone`;
the file format, meta and report are the backbone exporter's.
"""
import sys
from collections import OrderedDict

from ..utils.atomic_io import atomic_torch_save
from .backbone_export import (
    build_meta,
    load_pretrain_checkpoint,
    report,
    resolve_weights,
    select_backbone,
)

__all__ = ['export_mcl_detector', 'select_mcl_detector']

#: (source module, destination prefix) of the pre-trained parts after the backbone
MCL_PARTS = (('neck.', 'neck.'),
             ('cell_head.convs.', 'roi_head.bbox_head.shared_convs.'))


def select_mcl_detector(state_dict, weights, src='<checkpoint>'):
    """Backbone, FPN and head convs of ``weights`` in mmdet's layout.

    Returns:
        tuple[OrderedDict, dict[str, str]]: kept tensors and
        ``{dropped key: reason}``.
    """
    weights = resolve_weights(state_dict, weights)
    kept, dropped = select_backbone(state_dict, weights, src)
    source = 'teacher.' if weights == 'teacher' else ''
    for module, target in MCL_PARTS:
        prefix = source + module
        found = [k for k in state_dict if k.startswith(prefix)]
        if not found:
            raise ValueError(f'{src}: no {weights} {module.rstrip(".")} (no '
                             f'"{prefix}*" key): is it an MCL checkpoint?')
        for key in found:
            kept[target + key[len(prefix):]] = (
                state_dict[key].detach().to('cpu').contiguous().clone())
            dropped.pop(key, None)
    return kept, dropped


def export_mcl_detector(src, dst, weights='auto', file=sys.stdout):
    """Export ``src`` (MCL checkpoint) to ``dst`` (backbone + FPN + head convs).

    Returns:
        dict: what was written (``state_dict`` and ``meta``).
    """
    ckpt, state_dict = load_pretrain_checkpoint(src)
    weights = resolve_weights(state_dict, weights)
    kept, dropped = select_mcl_detector(state_dict, weights, src)
    kept = OrderedDict(kept)
    out = {'state_dict': kept,
           'meta': build_meta(ckpt, src, weights, kept, dropped)}
    atomic_torch_save(out, dst)
    report(kept, dropped, weights, file=file, layout='mmdet MCL')
    print(f'Saved {dst}', file=file)
    return out
