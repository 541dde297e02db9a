"""The model card (``README.md``) of a Hugging Face-style export (:mod:`.hf_export`).

Everything on it is read from the checkpoint and the files next to it: the pre-training config
(stored by mmengine in ``meta['cfg']``), its data, the iterations / epochs reached, the
objectives the demo's ``ObjectiveMetricsHook`` wrote to ``objectives.json`` in the run's work
dir (if any), the code commit of the exporting checkout (the checkpoint does not record the
training commit), the licence and how to load the directory.
"""
import json
import os.path as osp
import subprocess

__all__ = ['model_card', 'code_commit']


def code_commit():
    """The commit of the checkout this package runs from (``'unknown'`` outside git)."""
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    try:
        out = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return 'unknown'
    return out.stdout.strip() or 'unknown'


def _config_facts(cfg_text):
    """``(backbone, data lines)`` of the stored pre-training config."""
    if not cfg_text:
        return 'not recorded', ['not recorded (the checkpoint holds no config)']
    from mmengine.config import Config
    cfg = Config.fromstring(cfg_text, '.py')
    bb = cfg.model.get('backbone', {})
    backbone = f"{bb.get('type')} (arch {bb.get('arch')!r}, img_size {bb.get('img_size')})"
    ds = (cfg.get('train_dataloader') or {}).get('dataset', {})
    batch = (cfg.get('train_dataloader') or {}).get('batch_size')
    data = [f"dataset `{ds.get('type')}`, root `{ds.get('data_root')}`, list "
            f"`{ds.get('ann_file')}`", f'batch {batch} per process']
    return backbone, data


def _objectives(src):
    """Markdown rows of the last entry of ``objectives.json`` next to ``src``, or []."""
    path = osp.join(osp.dirname(osp.abspath(src)), 'objectives.json')
    if not osp.isfile(path):
        return []
    with open(path, encoding='utf-8') as f:
        history = json.load(f)
    if not history:
        return []
    last = history[-1]
    rows = [f"Held-out objectives at iteration {last['step']} (`objectives.json` of the run):",
            '', '| objective | value | trivial baseline | learned |', '|---|---|---|---|']
    for task, entry in sorted(last['objectives'].items()):
        rows.append(f"| {task} | {entry['value']:.4f} | {entry['baseline']:.4f} | "
                    f"{'yes' if entry.get('learned') else 'no'} |")
    return rows


def model_card(src, prep, licence, name):
    """The card's Markdown text.

    Args:
        src (str): The pre-training checkpoint.
        prep (dict): What :func:`hvp_mtl.apis.timm_export.prepare_timm_export` returned.
        licence (str): The weights' licence (a Hub licence id).
        name (str): The directory name, used in the loading example.

    Returns:
        str: The card, with a YAML header for a model hub.
    """
    meta = prep['meta']
    info = meta['hvp_mtl']
    backbone, data = _config_facts(prep['cfg_text'])
    kwargs = ''.join(f', {k}={v!r}' for k, v in prep['kwargs'].items())
    results = _objectives(src) or ['No evaluation results were found next to the checkpoint '
                                   '(`objectives.json`); see the project\'s docs/RESULTS.md.']
    lines = [
        '---', 'library_name: timm', f'license: {licence}', 'tags:', '- image-feature-extraction',
        '- timm', '- hvp_mtl', '---', '',
        f'# {name}: an HVP-MTL pre-trained backbone ({prep["model"]})', '',
        'A backbone pre-trained with HVP-MTL (multi-label classification, SwAV clustering, '
        'SimMIM masked reconstruction and momentum distillation at once; arXiv 2310.07510), '
        'exported from the OpenMMLab checkpoint to timm\'s layout. No classifier: '
        '`num_classes=0`.', '',
        '## Pre-training', '',
        f'- checkpoint: `{info["source"]}` ({info["weights"]} weights: '
        f'{"the EMA teacher" if info["weights"] == "teacher" else "the student"})',
        f'- backbone: {backbone}',
        f"- reached: iteration {meta.get('iter', 'not recorded')}, epoch "
        f"{meta.get('epoch', 'not recorded')}; seed {meta.get('seed', 'not recorded')}",
        f"- run: `{meta.get('experiment_name', 'not recorded')}`",
        *[f'- data: {d}' for d in data],
        f'- code commit (of the export): `{code_commit()}`',
        f"- parameters: {info['num_parameters']:,} in {info['num_tensors']} tensors", '',
        '## Results', '', *results, '',
        '## How to load', '', '```python', 'import timm', '',
        f"model = timm.create_model('local-dir:{name}', pretrained=True)  # or 'hf-hub:USER/REPO'",
        'features = model.forward_features(images)  # or model(images): pooled features',
        '```', '',
        f'The same weights with an explicit architecture: `timm.create_model('
        f'{prep["model"]!r}, num_classes=0{kwargs})`, then load `model.safetensors` with '
        '`safetensors.torch.load_file` and `load_state_dict(..., strict=True)`.', '',
        '## Pre-training config', '', '<details><summary>config stored in the checkpoint'
        '</summary>', '', '```python', (prep['cfg_text'] or 'not recorded').strip(), '```', '',
        '</details>', '', '## Licence', '',
        f'The weights are released under {licence}, as the code that produced them. The '
        'pre-training data keeps its own licence.', '',
    ]
    return '\n'.join(lines)
