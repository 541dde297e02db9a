"""The window-12 / 384-px fine-tune (docs/FINETUNE.md, "Window size") loads a window-7 backbone.

The real config's Swin-B classifier is built; an export-format file of a Swin-B pre-trained with
7x7 windows at 224 px (random weights, ``relative_position_index`` dropped as the exporter drops
it) is loaded through the config's own ``init_cfg``; then the load check's comparison says every
tensor is in the file, the 24 bias tables are the resized ones, and every other tensor holds the
file's values. One 384-px image runs through the backbone.
"""
import pathlib

import pytest
import torch
from mmengine.config import Config

import hvp_mtl  # noqa: F401  (the SciPy-free table resize)
from hvp_mtl.engine.hooks.pretrained_load_check_hook import compare_with_checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs/finetune/mmpretrain/swin-base-w12_hvp-pre_8xb256-coslr-100e_in1k-384px.py'


@pytest.fixture(scope='module')
def w7_export(tmp_path_factory):
    from mmpretrain.models import SwinTransformer
    torch.manual_seed(0)
    w7 = SwinTransformer(arch='base', img_size=224, window_size=7)
    state = {f'backbone.{k}': v for k, v in w7.state_dict().items()
             if not k.endswith('relative_position_index')}
    path = tmp_path_factory.mktemp('w7') / 'backbone.pth'
    torch.save({'state_dict': state, 'meta': {}}, path)
    return path, state


def test_window12_384px_config_loads_a_window7_backbone(w7_export):
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    path, state = w7_export
    cfg = Config.fromfile(str(CONFIG))
    assert cfg.model.backbone.img_size == 384
    assert cfg.model.backbone.stage_cfgs.block_cfgs.window_size == 12
    cfg.model.backbone.init_cfg.checkpoint = str(path)
    cfg.model.backbone.drop_path_rate = 0.  # deterministic forward below
    model = MODELS.build(cfg.model)
    model.init_weights()
    backbone = model.backbone
    file_state = {k[len('backbone.'):]: v for k, v in state.items()}
    result = compare_with_checkpoint(backbone.state_dict(), file_state)
    assert not result['missing'] and not result['shape_mismatch'] and not result['unexpected']
    assert len(result['resized']) == 24
    assert all(k.endswith('relative_position_bias_table') for k in result['resized'])
    key = 'stages.0.blocks.0.attn.w_msa.relative_position_bias_table'
    assert file_state[key].shape == (13 * 13, 4) and backbone.state_dict()[key].shape == (23 * 23,
                                                                                          4)
    own = backbone.state_dict()
    not_loaded = [k for k in result['expected'] if k not in result['resized']
                  and not torch.equal(own[k], file_state[k])]
    assert not not_loaded, not_loaded[:5]
    # offset (0, 0) lies on both grids: the spline keeps its value
    torch.testing.assert_close(own[key].view(23, 23, 4)[11, 11],
                               file_state[key].view(13, 13, 4)[6, 6])
    backbone.eval()
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 384, 384))
    assert out[-1].shape == (1, 1024, 12, 12) and torch.isfinite(out[-1]).all()
