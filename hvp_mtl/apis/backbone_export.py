"""Export the backbone of an HVP-MTL pre-training checkpoint for fine-tuning.

A pre-training checkpoint written by mmengine holds the whole algorithm
(student ``backbone.*`` with its ``mask_token``, the multi-label / SwAV / MIM
heads, the EMA teacher under ``teacher.*``) plus optimizer, schedulers and the
``message_hub``. Downstream toolkits need only the backbone, in mmpretrain key
layout, under ``backbone.``::

    {'state_dict': {'backbone.patch_embed.projection.weight': Tensor, ...},
     'meta': {...plain Python types only...}}

which loads with ``torch.load(weights_only=True)`` on any torch >= 2.6 without
an allow-list, and with ``init_cfg=dict(type='Pretrained', checkpoint=OUT,
prefix='backbone.')`` in mmpretrain, mmdet and mmseg. (The timm layout of the
same backbone is written by :mod:`hvp_mtl.apis.timm_export`.)

Dropped on the way: ``mask_token`` (pre-training only), every head, the
teacher or the student (whichever is not exported), and Swin's
``relative_position_index`` buffers (rebuilt by the model; their shape depends
on the window size, and torch refuses a shape clash even with
``strict=False``).

Which weights, default ``auto``: the EMA teacher for HVP-MTL, the online encoder (the student)
for MCL (:func:`resolve_weights`). For HVP-MTL the EMA teacher is a temporal ensemble
(Polyak average, momentum 0.995) of the student. DINO (arXiv 2104.14294,
Sec. 5.3) reports the momentum teacher outperforming the student throughout
training and uses it for every downstream evaluation; with a cosine learning
rate that ends near zero the two converge anyway, so the teacher is never
worse and is smoother. ``weights='student'`` exports the network that received
the gradients (also the only choice when the run was trained without the
distillation teacher). MCL's official converter exports its online encoder (``encoder_q``),
and with MCL's cosine momentum (0.99 -> 1) a short run's momentum encoder still holds a large
share of its random initialisation (the demo's 300 iterations: prod(m) = 0.221), so ``auto``
exports the student of an MCL checkpoint; ``teacher`` still exports its momentum encoder.
"""
import os.path as osp
import sys
from collections import Counter, OrderedDict

import torch

from .. import compat  # noqa: F401  (torch weights-only allow-list)
from ..utils.atomic_io import atomic_torch_save
from ..utils.checkpoint_file import load_checkpoint_file

__all__ = ['export_backbone', 'load_pretrain_checkpoint', 'select_backbone',
           'build_meta', 'report', 'key_group', 'safetensors_path', 'save_safetensors']

# Where the EMA teacher's backbone lives: ``HVPMTL.teacher`` is a
# ``MomentumTeacher`` holding ``backbone`` and ``mlc_head`` copies
# (``teacher.backbone.*``); an mmengine ``BaseAveragedModel`` wrapper would
# add ``.module``.
TEACHER_BACKBONE_PREFIXES = ('teacher.backbone.', 'teacher.module.backbone.')
STUDENT_BACKBONE_PREFIX = 'backbone.'
# Backbone entries that never go downstream (pre-training only / rebuilt).
DROPPED_BACKBONE_SUFFIXES = ('relative_position_index', )
DROPPED_BACKBONE_NAMES = ('mask_token', )
PLAIN_TYPES = (str, int, float, bool, type(None))


def load_pretrain_checkpoint(path):
    """Load a full mmengine checkpoint with ``weights_only=True``.

    :mod:`hvp_mtl.compat` (imported with this package) allow-lists exactly
    the classes mmengine puts in a checkpoint (``HistoryBuffer`` and numpy
    arrays); anything else is refused.
    """
    ckpt = load_checkpoint_file(path)  # plain errors for a file that is not a checkpoint
    if not isinstance(ckpt, dict):
        raise ValueError(f'{path}: expected a dict checkpoint, got '
                         f'{type(ckpt).__name__}')
    state_dict = ckpt.get('state_dict', ckpt)
    if all(k.startswith('module.') for k in state_dict):  # saved from DDP
        state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
    return ckpt, state_dict


def key_group(key):
    """Reporting group of a key: ``backbone.stages.2``, ``teacher.mlc_head``,
    ``layers.2`` / ``blocks.11`` (timm layout), ...

    Backbone keys are grouped by stage / layer so that a missing stage shows.
    """
    parts = key.split('.')
    if parts[0] in ('layers', 'blocks') and len(parts) > 2:
        return '.'.join(parts[:2])
    if parts[0] == 'teacher' and len(parts) > 2:
        return 'teacher.' + key_group('.'.join(parts[1:]))
    if parts[0] != 'backbone' or len(parts) < 2:
        return parts[0]
    if parts[1] in ('stages', 'layers') and len(parts) > 2:
        return '.'.join(parts[:3])
    return '.'.join(parts[:2])


#: top-level modules only an MCL checkpoint has (HVP-MTL's montage task keeps its FPN under
#: ``montage_head.``)
MCL_ONLY_PREFIXES = ('neck.', 'cell_head.')


def resolve_weights(state_dict, weights='auto'):
    """``'auto'`` -> ``'student'`` (the online encoder) for an MCL checkpoint, ``'teacher'``
    otherwise; ``'teacher'`` / ``'student'`` unchanged."""
    if weights not in ('auto', 'teacher', 'student'):
        raise ValueError(f"weights must be 'auto', 'teacher' or 'student', got {weights!r}")
    if weights != 'auto':
        return weights
    return 'student' if any(k.startswith(MCL_ONLY_PREFIXES) for k in state_dict) else 'teacher'


def select_backbone(state_dict, weights, src='<checkpoint>'):
    """Pick the exported backbone tensors and say why each other key is dropped.

    Args:
        state_dict (dict[str, Tensor]): the algorithm's full state dict.
        weights (str): ``'teacher'``, ``'student'`` or ``'auto'`` (:func:`resolve_weights`).
        src (str): file name for error messages.

    Returns:
        tuple[OrderedDict, dict[str, str]]: ``backbone.*`` tensors to keep and
        ``{dropped key: reason}``.
    """
    student = [k for k in state_dict if k.startswith(STUDENT_BACKBONE_PREFIX)]
    if not student:
        groups = sorted(Counter(key_group(k) for k in state_dict).items())
        raise ValueError(
            f'{src}: no backbone in this checkpoint (no "backbone.*" key); '
            f'key groups found: {groups or "none"}. Is it an HVP-MTL '
            'pre-training checkpoint?')
    weights = resolve_weights(state_dict, weights)
    prefix = STUDENT_BACKBONE_PREFIX
    if weights == 'teacher':
        prefix = next((p for p in TEACHER_BACKBONE_PREFIXES
                       if any(k.startswith(p) for k in state_dict)), None)
        if prefix is None:
            raise ValueError(
                f'{src}: no EMA teacher backbone (looked for '
                f'{", ".join(TEACHER_BACKBONE_PREFIXES)}); this run was '
                'trained without the teacher: pass --weights student')
        steps = state_dict.get('teacher.steps')
        if steps is not None and int(steps) == 0:
            raise ValueError(
                f'{src}: the EMA teacher was never updated (teacher.steps == '
                '0): it holds no trained weights. Export a checkpoint of a '
                'run that trained, or pass --weights student')

    kept, dropped = OrderedDict(), {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            if key.startswith(STUDENT_BACKBONE_PREFIX):
                dropped[key] = 'student backbone (exporting the teacher)'
            elif key.startswith(TEACHER_BACKBONE_PREFIXES):
                dropped[key] = 'teacher backbone (exporting the student)'
            else:
                dropped[key] = 'head / algorithm state'
            continue
        name = key[len(prefix):]
        leaf = name.rsplit('.', 1)[-1]
        if name in DROPPED_BACKBONE_NAMES:
            dropped[key] = 'pre-training only'
        elif leaf in DROPPED_BACKBONE_SUFFIXES:
            dropped[key] = 'rebuilt by the model (window-size dependent)'
        elif not isinstance(value, torch.Tensor):
            dropped[key] = f'not a tensor ({type(value).__name__})'
        else:
            kept['backbone.' + name] = value.detach().to('cpu').contiguous().clone()
    if not kept:
        raise ValueError(f'{src}: the {weights} backbone has no exportable tensor')
    return kept, dropped


def plain(value):
    """``value`` as plain Python types (numpy scalars become numbers)."""
    if isinstance(value, PLAIN_TYPES):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if hasattr(value, 'item') and getattr(value, 'ndim', 1) == 0:
        return value.item()
    return str(value)


def build_meta(ckpt, src, weights, kept, dropped):
    """Provenance as plain types: loadable with ``weights_only=True``."""
    source_meta = ckpt.get('meta', {}) if isinstance(ckpt.get('meta'), dict) else {}
    meta = {k: plain(source_meta[k]) for k in
            ('epoch', 'iter', 'seed', 'experiment_name', 'time',
             'mmengine_version', 'cfg') if k in source_meta}
    meta.update(
        hvp_mtl=dict(source=osp.basename(src), weights=weights,
                     num_tensors=len(kept),
                     num_parameters=int(sum(v.numel() for v in kept.values())),
                     dropped=dict(Counter(dropped.values()))))
    return meta


def report(kept, dropped, weights, file=sys.stdout, layout='mmpretrain'):
    """Print the kept and dropped keys by group."""
    print(f'Exported {weights} backbone ({layout} layout): {len(kept)} tensors, '
          f'{sum(v.numel() for v in kept.values()):,} values', file=file)
    print('  kept (by group):', file=file)
    for group, n in sorted(Counter(key_group(k) for k in kept).items()):
        print(f'    {group:<40s} {n:5d}', file=file)
    print(f'  dropped: {len(dropped)} keys', file=file)
    by_group = Counter((key_group(k), why) for k, why in dropped.items())
    for (group, why), n in sorted(by_group.items()):
        print(f'    {group:<40s} {n:5d}  ({why})', file=file)


def safetensors_path(dst):
    """``dst`` with ``.pth`` / ``.pt`` replaced by ``.safetensors``."""
    stem, ext = osp.splitext(dst)
    return (stem if ext in ('.pth', '.pt') else dst) + '.safetensors'


def save_safetensors(state_dict, meta, path):
    """Write ``state_dict`` as a safetensors file, ``meta`` as JSON in its header metadata
    (``{'format': 'mmpretrain', 'hvp_mtl_meta': json}``), atomically."""
    import json

    from safetensors.torch import save_file

    from ..utils.atomic_io import atomic_path
    with atomic_path(path) as tmp:
        save_file(dict(state_dict), tmp, metadata=dict(
            format='mmpretrain', hvp_mtl_meta=json.dumps(meta, sort_keys=True)))


def export_backbone(src, dst, weights='auto', file=sys.stdout, safetensors=False):
    """Export ``src`` (pre-training checkpoint) to ``dst`` (backbone only).

    Args:
        src (str): Pre-training checkpoint.
        dst (str): Output ``.pth``.
        weights (str): ``'teacher'`` or ``'student'``.
        file (io.TextIOBase): Where the report is printed.
        safetensors (bool): Also write the same state dict to :func:`safetensors_path`
            (``safetensors.torch.load_file`` gives ``{'backbone.*': tensor}``; the meta is
            JSON in the file's header metadata).

    Returns:
        dict: what was written (``state_dict`` and ``meta``).
    """
    ckpt, state_dict = load_pretrain_checkpoint(src)
    weights = resolve_weights(state_dict, weights)
    kept, dropped = select_backbone(state_dict, weights, src)
    out = {'state_dict': kept,
           'meta': build_meta(ckpt, src, weights, kept, dropped)}
    atomic_torch_save(out, dst)
    report(kept, dropped, weights, file=file)
    print(f'Saved {dst}', file=file)
    if safetensors:
        save_safetensors(kept, out['meta'], safetensors_path(dst))
        print(f'Saved {safetensors_path(dst)}', file=file)
    return out


