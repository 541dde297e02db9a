"""Stop a fine-tuning run whose backbone did not receive the pre-trained weights.

Every OpenMMLab loader of ``init_cfg=dict(type='Pretrained', ...)`` is
non-strict: a wrong prefix, mmdet's own Swin renaming keys, or a checkpoint
missing a stage leaves (part of) the backbone at random initialisation with at
most a warning buried in the log. This hook makes that impossible:

* ``before_run`` (before the weights are initialised) reads the checkpoint
  named by the backbone's ``Pretrained`` ``init_cfg``, strips the prefix and
  checks that **every** tensor of the backbone's state dict is in the file
  with the same shape;
* ``before_train`` (after initialisation) checks that the backbone now holds
  exactly those values, i.e. the loader really copied them.

Any failure raises ``RuntimeError`` listing the missing / unloaded keys by
group (``stages.3``, ``layers.11``, ...), so the run stops before step 1.

Documented exceptions:

* ``relative_position_index`` buffers: rebuilt by the model, dropped by
  ``tools/model_converters/hvp_to_backbone.py``;
* tables resized by the backbone's own load hooks when the window or image
  size changes (``relative_position_bias_table``, ``absolute_pos_embed``,
  ``pos_embed``): their presence is checked, not their values;
* keys matching the config's ``ignore_missing`` (regular expressions) may be
  absent from the file (new at fine-tuning, e.g. ``'^ln2\\.'`` for a ViT
  fine-tuned with a new average-pooling norm, ``'^norm[0-2]\\.'`` for the
  output norms of the stages pre-training never reads); when present they
  must load like any other key.

Weights restored by ``load_from`` / ``resume`` replace the pre-trained ones,
so the value check is skipped (and logged) in that case.

Top-level ``checkpoint`` variable: mmengine resolves config variables when the
file is parsed, so ``--cfg-options checkpoint=PATH`` alone would not reach
``model.backbone.init_cfg``. Configs pass their parse-time value as
``config_checkpoint``; if the top-level value was overridden and the
``init_cfg`` was not, the hook forwards the new path to the ``init_cfg``
before the weights are initialised.
"""
import re
from collections import Counter

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

__all__ = ['PretrainedLoadCheckHook', 'compare_with_checkpoint']

ALWAYS_EXEMPT = (r'(^|\.)relative_position_index$', )
RESIZABLE = (r'(^|\.)relative_position_bias_table$', r'(^|\.)absolute_pos_embed$',
             r'(^|\.)pos_embed$')


def _group(key):
    parts = key.split('.')
    depth = 2 if parts[0] in ('stages', 'layers') and len(parts) > 1 else 1
    return '.'.join(parts[:depth])


def _listing(keys, limit=8):
    """``'  stages.3: 12 keys (stages.3.blocks.0.norm1.weight, ...)'`` lines."""
    by_group = {}
    for key in keys:
        by_group.setdefault(_group(key), []).append(key)
    lines = []
    for group, members in sorted(by_group.items()):
        shown = ', '.join(members[:limit]) + (', ...' if len(members) > limit else '')
        lines.append(f'  {group}: {len(members)} keys ({shown})')
    return '\n'.join(lines)


def compare_with_checkpoint(model_state, file_state, ignore_missing=()):
    """Compare a module's state dict with the tensors of a checkpoint.

    Args:
        model_state (dict[str, Tensor]): ``module.state_dict()``.
        file_state (dict[str, Tensor]): checkpoint tensors, prefix stripped.
        ignore_missing (Sequence[str]): regular expressions of model keys
            that may be absent from the file (if present they must load).

    Returns:
        dict: ``expected`` (model keys that must come from the file),
        ``exempt``, ``missing``, ``shape_mismatch``, ``resized`` and
        ``unexpected`` (file keys the module has no use for), each a list.
    """
    always_exempt = [re.compile(p) for p in ALWAYS_EXEMPT]
    may_be_missing = [re.compile(p) for p in ignore_missing]
    resizable = [re.compile(p) for p in RESIZABLE]
    result = {k: [] for k in ('expected', 'exempt', 'missing', 'shape_mismatch',
                              'resized', 'unexpected')}
    for key, tensor in model_state.items():
        if any(p.search(key) for p in always_exempt) or (
                key not in file_state and any(p.search(key) for p in may_be_missing)):
            result['exempt'].append(key)
            continue
        result['expected'].append(key)
        if key not in file_state:
            result['missing'].append(key)
        elif tuple(file_state[key].shape) != tuple(tensor.shape):
            kind = 'resized' if any(p.search(key) for p in resizable) else 'shape_mismatch'
            result[kind].append(key)
    result['unexpected'] = [k for k in file_state if k not in model_state]
    return result


@HOOKS.register_module()
class PretrainedLoadCheckHook(Hook):
    """Fail fast unless the backbone received every pre-trained tensor.

    Args:
        module (str): attribute of the model to check. Defaults to
            ``'backbone'``.
        ignore_missing (Sequence[str]): regexes of module keys allowed to be
            absent from the checkpoint (documented exceptions).
        config_checkpoint (str, optional): the config's top-level
            ``checkpoint`` as written in the file (see the module docstring).
        checkpoint_var (str): name of that top-level variable.
    """

    priority = 'VERY_HIGH'

    def __init__(self, module='backbone', ignore_missing=(), config_checkpoint=None,
                 checkpoint_var='checkpoint'):
        self.module_name = module
        self.ignore_missing = tuple(ignore_missing)
        self.config_checkpoint = config_checkpoint
        self.checkpoint_var = checkpoint_var
        self.report = None
        self._file_state = None

    # -- helpers -------------------------------------------------------------
    def _module(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        module = getattr(model, self.module_name, None)
        if module is None:
            raise RuntimeError(f'PretrainedLoadCheckHook: {type(model).__name__} has '
                               f'no `{self.module_name}`')
        return module

    def _pretrained_cfg(self, module):
        init_cfgs = module.init_cfg if isinstance(module.init_cfg, list) else [module.init_cfg]
        for cfg in init_cfgs:
            if cfg is not None and str(cfg.get('type', '')).split('.')[-1] == 'Pretrained':
                return cfg
        raise RuntimeError(
            f'PretrainedLoadCheckHook: model.{self.module_name} has no '
            "init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.'): "
            'it would train from random initialisation. Set the checkpoint, or '
            'remove this hook to train from scratch on purpose.')

    def _forward_top_level_checkpoint(self, runner, init_cfg):
        top = runner.cfg.get(self.checkpoint_var, None)
        if (self.config_checkpoint is None or top is None
                or top == self.config_checkpoint or top == init_cfg.get('checkpoint')):
            return
        if init_cfg.get('checkpoint') == self.config_checkpoint:
            runner.logger.info(f'Pretrained checkpoint from `{self.checkpoint_var}={top}`')
            init_cfg['checkpoint'] = top
        else:
            runner.logger.warning(
                f'`{self.checkpoint_var}={top}` is ignored: model.{self.module_name}'
                f".init_cfg.checkpoint={init_cfg.get('checkpoint')} was set explicitly")

    # -- hook points ---------------------------------------------------------
    def before_run(self, runner) -> None:
        """Check keys and shapes of the file against the module (no weights yet)."""
        from mmengine.runner.checkpoint import CheckpointLoader
        module = self._module(runner)
        init_cfg = self._pretrained_cfg(module)
        self._forward_top_level_checkpoint(runner, init_cfg)
        path, prefix = init_cfg.get('checkpoint'), init_cfg.get('prefix') or ''
        if not path:
            raise RuntimeError(
                f'PretrainedLoadCheckHook: model.{self.module_name}.init_cfg.checkpoint is '
                'empty; export a backbone with tools/model_converters/hvp_to_backbone.py '
                f'and pass --cfg-options {self.checkpoint_var}=PATH')
        try:
            ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
        except FileNotFoundError as err:
            raise RuntimeError(f'PretrainedLoadCheckHook: {err}; export a backbone with '
                               'tools/model_converters/hvp_to_backbone.py') from err
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
        file_state = {k[len(prefix):]: v for k, v in state.items()
                      if k.startswith(prefix) and isinstance(v, torch.Tensor)}
        if not file_state:
            groups = Counter(k.split('.')[0] + '.' for k in state)
            raise RuntimeError(
                f'Pretrained load check failed: no key of {path} starts with the prefix '
                f'{prefix!r}; the file has {dict(groups) or "no tensors"}. Export the '
                'checkpoint with tools/model_converters/hvp_to_backbone.py or fix '
                f'model.{self.module_name}.init_cfg.prefix.')
        result = compare_with_checkpoint(module.state_dict(), file_state, self.ignore_missing)
        if result['missing'] or result['shape_mismatch']:
            msg = [f'Pretrained load check failed for model.{self.module_name} from {path} '
                   f'(prefix {prefix!r}): {len(result["missing"])} of '
                   f'{len(result["expected"])} tensors are missing from the file']
            if result['missing']:
                msg.append(_listing(result['missing']))
            if result['shape_mismatch']:
                msg.append(f'{len(result["shape_mismatch"])} tensors have another shape:')
                msg.append('\n'.join(
                    f'  {k}: file {tuple(file_state[k].shape)} vs model '
                    f'{tuple(module.state_dict()[k].shape)}' for k in result['shape_mismatch']))
            if result['unexpected']:
                msg.append(f'file keys the model does not use ({len(result["unexpected"])}):')
                msg.append(_listing(result['unexpected']))
            raise RuntimeError('\n'.join(msg))
        if result['unexpected']:
            runner.logger.warning(
                f'Pretrained load check: {len(result["unexpected"])} tensors of {path} are '
                f'not used by model.{self.module_name}:\n{_listing(result["unexpected"])}')
        self._file_state, self._result, self._path = file_state, result, path

    def before_train(self, runner) -> None:
        """Check that the module now holds the file's values."""
        if self._file_state is None:
            return
        file_state, result = self._file_state, self._result
        self._file_state = None
        if runner._has_loaded:  # load_from / resume replaced the weights
            runner.logger.info('Pretrained load check: weights restored by load_from / '
                               'resume; only keys and shapes were checked.')
            return
        module_state = self._module(runner).state_dict()
        not_loaded = [k for k in result['expected']
                      if k not in result['resized'] and not torch.equal(
                          module_state[k].detach().cpu(),
                          file_state[k].to(module_state[k].dtype))]
        if not_loaded:
            raise RuntimeError(
                f'Pretrained load check failed: {len(not_loaded)} of '
                f'{len(result["expected"])} tensors of model.{self.module_name} do not hold '
                f'the values of {self._path} (the loader skipped them):\n{_listing(not_loaded)}')
        total = len(result['expected'])
        self.report = dict(checkpoint=self._path, total=total, loaded=total,
                           percent=100.0, resized=len(result['resized']),
                           exempt=sorted(result['exempt']),
                           unused=sorted(result['unexpected']))
        runner.logger.info(
            f'Pretrained load check: {total}/{total} tensors of model.{self.module_name} '
            f'loaded from {self._path} (100.0%); resized by the model: '
            f'{len(result["resized"])}; exempt: {len(result["exempt"])} '
            f'(relative_position_index{", ignore_missing" if self.ignore_missing else ""}); '
            f'unused file tensors: {len(result["unexpected"])}')
