"""One entry point for every export format of a pre-training checkpoint.

The core of ``tools/model_converters/hvp_to_backbone.py``:

- ``'mmpretrain'`` (default): ``{'state_dict': {'backbone.*': ...}, 'meta': ...}`` for mmpretrain /
  mmdet / mmseg configs (:func:`hvp_mtl.apis.backbone_export.export_backbone`);
- ``'timm'``: the same backbone in timm's layout
  (:func:`hvp_mtl.apis.timm_export.export_timm`);
- ``'hf'``: a timm model directory (``config.json``, ``model.safetensors``, a model card) for
  ``timm.create_model('local-dir:DIR', pretrained=True)``
  (:func:`hvp_mtl.apis.hf_export.export_hf`);
- ``'mmdet-mcl'``: backbone, FPN and cell-head convs of an MCL checkpoint for a 4conv1fc mmdet
  detector (:func:`hvp_mtl.apis.mcl_export.export_mcl_detector`).
"""
import sys

__all__ = ['EXPORT_FORMATS', 'export_checkpoint']

EXPORT_FORMATS = ('mmpretrain', 'timm', 'hf', 'mmdet-mcl')


def export_checkpoint(src, dst, weights='auto', fmt='mmpretrain', file=None,
                      safetensors=False):
    """Export ``src`` to ``dst`` in format ``fmt``; a report of the kept keys goes to ``file``.

    Args:
        src (str): Pre-training checkpoint (mmengine ``.pth``).
        dst (str): Output checkpoint (``'hf'``: output directory).
        weights (str): ``'auto'`` (the EMA teacher of HVP-MTL, the online encoder of MCL),
            ``'teacher'`` (EMA teacher / momentum encoder) or ``'student'``.
        fmt (str): One of :data:`EXPORT_FORMATS`.
        file (io.TextIOBase, optional): Where the report is printed; default the current
            ``sys.stdout`` (looked up at call time, so ``redirect_stdout`` captures it).
        safetensors (bool): ``'mmpretrain'`` only: also write the state dict as
            ``<dst without .pth>.safetensors``.

    Returns:
        What the format's exporter wrote.

    Raises:
        ValueError: An unknown format, or a checkpoint the exporter cannot read.
        FileNotFoundError: ``src`` does not exist.
    """
    file = sys.stdout if file is None else file
    if safetensors and fmt != 'mmpretrain':
        raise ValueError(f'--safetensors is for --format mmpretrain (--format {fmt}: '
                         + ('model.safetensors is always written)' if fmt == 'hf'
                            else 'not available)'))
    if fmt == 'hf':
        from .hf_export import export_hf
        return export_hf(src, dst, weights, file=file)
    if fmt == 'timm':
        from .timm_export import export_timm
        return export_timm(src, dst, weights, file=file)
    if fmt == 'mmdet-mcl':
        from .mcl_export import export_mcl_detector
        return export_mcl_detector(src, dst, weights, file=file)
    if fmt != 'mmpretrain':
        raise ValueError(f'unknown export format {fmt!r}; choose from {EXPORT_FORMATS}')
    from .backbone_export import export_backbone
    return export_backbone(src, dst, weights, file=file, safetensors=safetensors)
