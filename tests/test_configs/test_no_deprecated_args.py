"""Every shipped ``HVPMTL`` config uses ``tasks=`` / ``teacher=``: building it warns nothing.

The per-task arguments (``mlc_head=``, ``distill_loss=``, ``teacher_momentum=``...) still work
for one release (``hvp_mtl/models/algorithms/legacy_args.py``) but emit a
``DeprecationWarning``; no config the project ships may rely on them, so no user run warns.
The models are built without ``init_weights`` (about 1 s each on one core): the warning is
raised while the constructor reads its arguments.
"""
import pathlib
import warnings

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

from hvp_mtl.models.algorithms.legacy_args import LEGACY_ARGS

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _hvpmtl_configs():
    """The pre-training configs of HVP-MTL (``hvp_*.py``) under configs/pretrain and demo."""
    return sorted(p for sub in ('pretrain', 'demo')
                  for p in (ROOT / 'configs' / sub).rglob('hvp_*.py')
                  if '_base_' not in p.parts)


CONFIGS = _hvpmtl_configs()
IDS = [p.relative_to(ROOT / 'configs').as_posix() for p in CONFIGS]


def test_the_sweep_covers_the_pretraining_configs():
    assert {'pretrain/hvp_swin-b.py', 'pretrain/hvp_vit-b.py', 'pretrain/hvp_swin-t.py',
            'pretrain/hvp_swin-b_montage.py', 'demo/hvp_swin-demo_pretrain.py',
            'demo/hvp_swin-demo_pretrain_11166-classes.py'} <= set(IDS)
    assert any(i.startswith('pretrain/ablations/') for i in IDS)


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_building_a_shipped_config_emits_no_deprecation_warning(path):
    cfg = Config.fromfile(str(path))
    assert cfg.model.type == 'HVPMTL'
    assert not set(cfg.model) & set(LEGACY_ARGS), sorted(set(cfg.model) & set(LEGACY_ARGS))
    assert 'tasks' in cfg.model and 'teacher' in cfg.model
    init_default_scope('mmpretrain')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = MODELS.build(cfg.model)
    ours = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)
            and ('HVPMTL' in str(w.message) or 'hvp_mtl' in str(w.filename))]
    assert not ours, ours
    assert set(model.task_names) == {name for name, weight in model.loss_weights.items()
                                     if weight > 0}
