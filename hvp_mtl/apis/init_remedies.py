"""Transformations of an exported backbone that trade pre-trained weights for fresh ones.

Both start from the same reference: the fine-tune config's random initialisation of the backbone
under a seed (what training "from random init" starts from), so a remedy moves the export
towards exactly the initialisation it is compared with.

* :func:`shrink_perturb` (Ash & Adams, "On Warm-Starting Neural Network Training", NeurIPS
  2020): ``w <- lam * w + sigma * w_random`` for every floating tensor. ``lam`` shrinks the
  pre-trained weights (and with them the few directions their features concentrate on),
  ``sigma`` adds the random init's directions back.
* :func:`reinit_stages`: the last ``k`` Swin stages (and the norm after the last stage)
  replaced by the random init, the earlier stages and the patch embedding kept.
"""
import torch

__all__ = ['random_backbone_state', 'shrink_perturb', 'reinit_stages']


def random_backbone_state(config, seed=0, cfg_options=None):
    """``{'backbone.*': tensor}`` of the config's randomly initialised backbone under ``seed``."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from .init_diagnostics import build_initialised
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope('mmpretrain')
    model = build_initialised(cfg, None, seed)
    return {f'backbone.{k}': v for k, v in model.backbone.state_dict().items()}


def _check_keys(state, reference):
    """Every exported tensor needs its random counterpart of the same shape (the random
    state may hold more: buffers the export leaves out)."""
    missing = sorted(k for k in state if k not in reference
                     or reference[k].shape != state[k].shape)
    if missing:
        raise ValueError(f'the random init lacks (or shapes differently) exported tensors, e.g. '
                         f'{missing[:3]}: is the config the one the backbone fine-tunes with?')


def shrink_perturb(state, reference, lam, sigma):
    """``lam * state + sigma * reference`` for floating tensors (others kept).

    Args:
        state (dict): Exported ``backbone.*`` tensors.
        reference (dict): The random init's tensors, same keys and shapes.
        lam (float): Shrink factor (1: keep the export).
        sigma (float): Weight of the random init (0: no perturbation).

    Returns:
        dict: New tensors.
    """
    _check_keys(state, reference)
    return {k: (lam * v + sigma * reference[k].to(v.dtype)) if v.is_floating_point() else v
            for k, v in state.items()}


def reinit_stages(state, reference, k, num_stages=4):
    """The last ``k`` stages (``backbone.stages.{i}.*``) and ``backbone.norm{num_stages-1}.*``
    from ``reference``; every other tensor from ``state``."""
    _check_keys(state, reference)
    if not 0 <= k <= num_stages:
        raise ValueError(f'k must be in [0, {num_stages}], got {k}')
    prefixes = tuple(f'backbone.stages.{i}.' for i in range(num_stages - k, num_stages))
    if k:
        prefixes += (f'backbone.norm{num_stages - 1}.', )
    return {key: (reference[key] if key.startswith(prefixes) else v).clone()
            for key, v in state.items()}


def load_backbone(path):
    """The ``state_dict`` of an exported backbone file (weights only)."""
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    return ckpt['state_dict'], ckpt.get('meta', {})
