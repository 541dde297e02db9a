"""Why one initialisation fine-tunes slower than another: measured side by side.

For a classification fine-tune config and several initialisations (exported backbones with
``backbone.*`` keys, or the config's random initialisation under a seed), :func:`diagnose`
measures, with the real mmpretrain model of the config:

* per Swin stage: the Frobenius norm of its weights (every parameter of the stage but its
  LayerNorms), the mean ``|gamma|`` and ``|beta|`` of its LayerNorms;
* per stage: the effective rank (Roy & Vetterli, 2007: ``exp(H(p))``, ``p`` the normalised
  singular values of the centred ``[N, C]`` matrix of token-averaged stage outputs) of the
  train split's features, and the share of their variance in the top 5 principal components;
* per stage and for the head: the gradient norm of the cross-entropy of the first training
  batch (the config's pipeline under ``seed``) at fine-tune step 0, the head initialised the
  same for every initialisation.

:func:`first_epoch_losses` reads a fine-tune run's first-epoch loss curve from its work dir.
"""
import copy
import json
import math

import torch

from hvp_mtl.utils.atomic_io import atomic_write

from .work_dir_logs import training_records

__all__ = ['effective_rank', 'top_variance_share', 'stage_weight_stats', 'stage_features',
           'stage_grad_norms', 'first_epoch_losses', 'build_initialised', 'diagnose',
           'format_diagnostics', 'write_diagnostics']


def effective_rank(features: torch.Tensor) -> float:
    """Roy & Vetterli's effective rank of ``[N, C]`` features (centred): ``exp`` of the entropy
    of the singular values normalised to sum 1; between 1 (rank one) and ``min(N, C)``."""
    centred = features.double() - features.double().mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(centred)
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def top_variance_share(features: torch.Tensor, k: int = 5) -> float:
    """Share of the centred features' variance in their top ``k`` principal components."""
    centred = features.double() - features.double().mean(dim=0, keepdim=True)
    var = torch.linalg.svdvals(centred)**2
    return float(var[:k].sum() / var.sum())


def _is_norm(name: str) -> bool:
    return '.norm' in f'.{name}' or name.startswith('norm')


def stage_weight_stats(backbone) -> list:
    """Per stage: ``weight_norm`` (non-norm parameters), ``ln_gain`` and ``ln_bias`` (means of
    ``|gamma|``, ``|beta|`` over the stage's LayerNorms)."""
    out = []
    for stage in backbone.stages:
        weights, gains, biases = [], [], []
        for module in stage.modules():
            if isinstance(module, torch.nn.LayerNorm):
                gains.append(module.weight.detach().abs().flatten())
                biases.append(module.bias.detach().abs().flatten())
        for name, param in stage.named_parameters():
            if not _is_norm(name):
                weights.append(param.detach().flatten())
        out.append(dict(weight_norm=float(torch.cat(weights).norm()),
                        ln_gain=float(torch.cat(gains).mean()),
                        ln_bias=float(torch.cat(biases).mean())))
    return out


@torch.no_grad()
def stage_features(backbone, loader, data_preprocessor) -> list:
    """Token-averaged output of every stage (before its downsampling) ``[N, C_i]``."""
    captured, handles = {}, []
    for i, stage in enumerate(backbone.stages):
        def after_blocks(module, args, output, i=i):
            captured.setdefault(i, []).append(output.mean(dim=1).float())
        handles.append(stage.blocks[-1].register_forward_hook(after_blocks))
    try:
        for batch in loader:
            backbone(data_preprocessor(batch, False)['inputs'])
    finally:
        for handle in handles:
            handle.remove()
    return [torch.cat(captured[i]) for i in range(len(backbone.stages))]


def stage_grad_norms(model, data) -> dict:
    """Gradient norm of the model's loss on one preprocessed batch, per stage and the head."""
    model.zero_grad()
    losses = model.loss(data['inputs'], data['data_samples'])
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    norms = {}
    for i, stage in enumerate(model.backbone.stages):
        grads = [p.grad.flatten() for p in stage.parameters() if p.grad is not None]
        norms[f'stage{i}'] = float(torch.cat(grads).norm())
    grads = [p.grad.flatten() for p in model.head.parameters() if p.grad is not None]
    norms['head'] = float(torch.cat(grads).norm())
    model.zero_grad()
    return norms


def first_epoch_losses(work_dir) -> list:
    """``loss`` at every logged iteration of a fine-tune run's first epoch."""
    records = [r for r in training_records(work_dir) if 'loss' in r]
    return [float(r['loss']) for r in records if int(r.get('epoch', 1)) == 1]


def build_initialised(cfg, checkpoint, seed):
    """The config's model with ``checkpoint``'s backbone (``None``: the random init under
    ``seed``) and the head the random init of ``seed`` draws, whatever the backbone."""
    from mmengine.runner import set_random_seed
    from mmpretrain.registry import MODELS

    def build(init_cfg):
        set_random_seed(seed)
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.backbone.init_cfg = init_cfg
        model = MODELS.build(model_cfg)
        model.init_weights()
        return model

    model = build(None)
    if checkpoint is not None:
        pretrained = build(dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.'))
        model.backbone.load_state_dict(pretrained.backbone.state_dict())
    return model


def diagnose(config, inits, seed=0, cfg_options=None, feature_images=512):
    """Every measurement of the module docstring for each initialisation.

    Args:
        config (str): A classification fine-tune config.
        inits (dict): ``{name: backbone checkpoint or None (random)}``.
        seed (int): Seed of the random init, the head, and the first batch.
        cfg_options (dict, optional): Merged into the config (data roots).
        feature_images (int): Train images whose features give the effective ranks.

    Returns:
        dict: ``{name: {weights: [...], features: [...], grad_norms: {...}}}``.
    """
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner, set_random_seed

    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope('mmpretrain')
    clean = copy.deepcopy(cfg.train_dataloader)
    clean.dataset.pipeline = cfg.test_dataloader.dataset.pipeline
    clean.dataset['indices'] = feature_images
    clean.update(num_workers=0, persistent_workers=False, batch_size=64,
                 sampler=dict(type='DefaultSampler', shuffle=False))
    train = copy.deepcopy(cfg.train_dataloader)
    train.update(num_workers=0, persistent_workers=False)
    out = {}
    for name, checkpoint in inits.items():
        model = build_initialised(cfg, checkpoint, seed)
        model.eval()
        feats = stage_features(model.backbone, Runner.build_dataloader(clean, seed=seed),
                               model.data_preprocessor)
        model.train()
        set_random_seed(seed)
        data = model.data_preprocessor(next(iter(Runner.build_dataloader(train, seed=seed))),
                                       True)
        out[name] = dict(
            checkpoint=checkpoint, weights=stage_weight_stats(model.backbone),
            features=[dict(effective_rank=effective_rank(f), dims=int(f.shape[1]),
                           top5_variance=top_variance_share(f)) for f in feats],
            grad_norms=stage_grad_norms(model, data))
    return out


def format_diagnostics(result) -> str:
    """A side-by-side text table of :func:`diagnose`'s result."""
    names = list(result)
    lines = ['measure'.ljust(34) + ''.join(n[:14].rjust(15) for n in names)]
    stages = len(result[names[0]]['weights'])
    rows = []
    for i in range(stages):
        rows += [(f'stage {i} weight norm', lambda r, i=i: r['weights'][i]['weight_norm']),
                 (f'stage {i} LayerNorm mean |gamma|', lambda r, i=i: r['weights'][i]['ln_gain']),
                 (f'stage {i} effective rank', lambda r, i=i: r['features'][i]['effective_rank']),
                 (f'stage {i} top-5 PC variance', lambda r, i=i: r['features'][i]['top5_variance']),
                 (f'stage {i} grad norm, step 0', lambda r, i=i: r['grad_norms'][f'stage{i}'])]
    rows.append(('head grad norm, step 0', lambda r: r['grad_norms']['head']))
    for label, get in rows:
        values = [get(result[n]) for n in names]
        lines.append(label.ljust(34) + ''.join(
            (f'{v:15.4f}' if math.isfinite(v) else 'nan'.rjust(15)) for v in values))
    return '\n'.join(lines)


def write_diagnostics(result, out_file) -> str:
    with atomic_write(out_file, encoding='utf-8') as f:
        json.dump(result, f, indent=1)
    return out_file
