"""The pre-trained backbone as a Hugging Face-style timm model directory.

``tools/model_converters/hvp_to_backbone.py --format hf CKPT OUT_DIR`` writes::

    OUT_DIR/config.json         timm's config: architecture, model_args, pretrained_cfg
    OUT_DIR/model.safetensors   the timm state dict (no pickle: nothing to execute on load)
    OUT_DIR/README.md           the model card: pre-training config, data, iterations,
                                results found next to the checkpoint, licence, how to load

through timm's own ``save_for_hf(model, OUT_DIR, safe_serialization=True)``, so that with torch
and timm alone::

    model = timm.create_model('local-dir:OUT_DIR', pretrained=True)

gives the exported backbone (``num_classes=0``: ``forward_features`` / pooled features), and the
directory can be uploaded to a model hub as it is. The conversion and its check are those of the
timm export (:func:`hvp_mtl.apis.timm_export.prepare_timm_export`).
"""
import os
import os.path as osp
import shutil
import sys

from ..utils.atomic_io import fsync_dir
from .model_card import model_card
from .timm_export import _timm_model, prepare_timm_export

__all__ = ['LICENSE', 'export_hf']

#: the licence of the exported weights (the project's)
LICENSE = 'apache-2.0'


def _hf_pretrained_cfg(cfg_text):
    """timm ``pretrained_cfg`` entries that describe these weights, not timm's own."""
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    if cfg_text:
        from mmengine.config import Config
        pre = Config.fromstring(cfg_text, '.py').model.get('data_preprocessor') or {}
        if pre.get('mean') and pre.get('std'):
            mean = [round(v / 255., 6) for v in pre['mean']]
            std = [round(v / 255., 6) for v in pre['std']]
    return dict(tag='hvp_mtl', license=LICENSE, mean=mean, std=std, num_classes=0)


def export_hf(src, out_dir, weights='auto', file=sys.stdout):
    """Export ``src`` (pre-training checkpoint) as the timm model directory ``out_dir``.

    The directory is written under a temporary name next to ``out_dir`` and renamed into place
    when complete; an existing ``out_dir`` is replaced only if it is an earlier export (holds a
    ``config.json``) or empty.

    Args:
        src (str): Pre-training checkpoint (mmengine ``.pth``).
        out_dir (str): The output directory.
        weights (str): ``'auto'``, ``'teacher'`` (EMA teacher) or ``'student'``
            (:func:`~hvp_mtl.apis.backbone_export.resolve_weights`).
        file (io.TextIOBase): Where the report is printed.

    Returns:
        dict: ``model`` and ``kwargs`` (what ``create_model`` builds) and ``files``.

    Raises:
        ValueError: ``out_dir`` exists and is something else, or ``src`` cannot be exported.
    """
    from timm.models import save_for_hf
    out_dir = osp.abspath(out_dir.rstrip('/'))
    if osp.exists(out_dir) and not (
            osp.isdir(out_dir) and (not os.listdir(out_dir)
                                    or osp.isfile(osp.join(out_dir, 'config.json')))):
        raise ValueError(f'{out_dir} exists and is not an earlier export (no config.json): '
                         'choose a new output directory')
    prep = prepare_timm_export(src, weights)
    model = _timm_model(prep['model'], prep['kwargs'])
    model.load_state_dict(prep['state_dict'], strict=True)
    model.eval()
    tmp = f'{out_dir}.tmp-{os.getpid()}'
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_for_hf(model, tmp, model_config=dict(pretrained_cfg=_hf_pretrained_cfg(
            prep['cfg_text'])), safe_serialization=True)
        card = model_card(src, prep, LICENSE, osp.basename(out_dir))
        with open(osp.join(tmp, 'README.md'), 'w', encoding='utf-8') as f:
            f.write(card)
        for name in os.listdir(tmp):
            with open(osp.join(tmp, name), 'rb') as f:
                os.fsync(f.fileno())
        old = f'{out_dir}.old-{os.getpid()}'
        if osp.exists(out_dir):
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
        fsync_dir(osp.dirname(out_dir))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from .backbone_export import report
    report(prep['state_dict'], prep['dropped'], prep['meta']['hvp_mtl']['weights'], file=file,
           layout='timm')
    files = sorted(os.listdir(out_dir))
    print(f"timm model: {prep['model']} ({', '.join(files)})\n"
          f"  model = timm.create_model('local-dir:{out_dir}', pretrained=True)", file=file)
    print(f'Saved {out_dir}', file=file)
    return dict(model=prep['model'], kwargs=prep['kwargs'], files=files)
