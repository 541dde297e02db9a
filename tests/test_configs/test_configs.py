"""Sweep over every config in configs/: it parses, follows the project's config rules and builds
its model."""
import ast
import pathlib

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)
IDS = [str(p.relative_to(ROOT / 'configs')) for p in CONFIGS]


def test_there_are_configs():
    kinds = {p.relative_to(ROOT / 'configs').parts[0] for p in CONFIGS}
    assert 'pretrain' in kinds


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_config_rules(path):
    """No top-level import (mmengine's parser mistakes it for a lazy config on py3.11)
    and the plugin is imported through custom_imports."""
    tree = ast.parse(path.read_text())
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not imports, f'{path}: top-level import at line {imports[0].lineno}'
    cfg = Config.fromfile(str(path))
    assert cfg.get('custom_imports', {}).get('imports') is not None, f'{path}: no custom_imports'
    assert 'hvp_mtl' in cfg.custom_imports['imports'] or any(
        i.startswith('hvp_mtl') for i in cfg.custom_imports['imports'])
    assert cfg.custom_imports.get('allow_failed_imports') is False
    if cfg.get('model', {}).get('type') == 'HVPMTL':
        # the EMA teacher and SwAV prototypes are updated by this hook only
        assert cfg.default_hooks.get('teacher_and_prototypes', {}).get('type') \
            == 'TeacherAndPrototypesHook', f'{path}: no TeacherAndPrototypesHook'


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_config_builds_model(path):
    """Build the model at its real size (weights are not initialised from files)."""
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(cfg.model)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params > 0
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), f'{path}: non-finite parameter {name} at build'
