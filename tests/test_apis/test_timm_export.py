"""The backbone as a timm model: strict load into the real timm, equal outputs.

Every pre-training config's backbone, built as the pre-trainer builds it, with
random weights, is converted and loaded with ``strict=True`` into
``timm.create_model(NAME, pretrained=False, num_classes=0)``; timm's
``forward_features`` must equal our last-stage output within 1e-5 (fp32, eval).
Sizes: ``tiny`` (the config with a small ``arch``, timm built with the matching
kwargs) and ``full`` (the config's own architecture and input size).
"""
import pathlib

import pytest
import timm
import torch
from mmpretrain.models.utils import PatchMerging as MMPatchMerging
from timm.models.swin_transformer import PatchMerging as TimmPatchMerging

from hvp_mtl.apis.timm_check import (
    backbone_from_config,
    compare_with_timm,
    randomize_,
    timm_last_stage,
)
from hvp_mtl.apis.timm_export import check_timm_state_dict, convert_to_timm, create_timm_model
from hvp_mtl.apis.timm_keys import swin_to_timm
from tests.helpers.exporter import TOL, export_in_process, images, load_plain
from tests.test_apis.test_export import swin_export, vit_export  # noqa: F401  (session fixtures)

pytestmark = pytest.mark.usefixtures('one_torch_thread')

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: HVP-MTL's pre-training configs (MCL's have their own export formats).
CONFIGS = sorted((ROOT / 'configs' / 'pretrain').glob('hvp_*.py'))
ABLATIONS = sorted((ROOT / 'configs' / 'pretrain' / 'ablations').glob('hvp_*.py'))
EXPECTED_NAME = {'hvp_swin-t.py': 'swin_tiny_patch4_window7_224',
                 'hvp_swin-s.py': 'swin_small_patch4_window7_224',
                 'hvp_swin-b.py': 'swin_base_patch4_window7_224',
                 'hvp_swin-b_fsdp.py': 'swin_base_patch4_window7_224',
                 'hvp_swin-b_distill-t0.07.py': 'swin_base_patch4_window7_224',
                 # the same backbone; only the data pipeline differs
                 'hvp_swin-b_fast-decode.py': 'swin_base_patch4_window7_224',
                 # four output stages: norm0-norm2 (dense-task outputs) have no timm key
                 'hvp_swin-b_montage.py': 'swin_base_patch4_window7_224',
                 'hvp_vit-b.py': 'vit_base_patch16_224'}
#: Tiny architectures; Swin keeps the config's window (7) at 224 px, depth 2
#: per stage so every stage has a shifted block.
TINY = {'MaskedSwinTransformer': dict(
            arch=dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4]), img_size=224),
        'MaskedViT': dict(
            arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=128),
            img_size=64)}
def test_every_pretraining_config_is_covered():
    assert sorted(p.name for p in CONFIGS) == sorted(EXPECTED_NAME)
    assert ABLATIONS  # the ViT-B ablations (Table 5): their backbone is hvp_vit-b.py's


SWEEP = ([(p, size) for p in CONFIGS for size in ('tiny', 'full')]
         + [(p, 'tiny') for p in ABLATIONS])


@pytest.mark.parametrize('config,size', SWEEP,
                         ids=[f'{p.parent.name}/{p.stem}-{size}' for p, size in SWEEP])
def test_timm_forward_features_equal_our_last_stage(config, size):
    from mmengine.config import Config
    kind = Config.fromfile(str(config)).model.backbone.type
    backbone, cfg = backbone_from_config(config, **(TINY[kind] if size == 'tiny' else {}))
    randomize_(backbone, seed=0)
    res = compare_with_timm(backbone, cfg, images(cfg.img_size))
    expected = EXPECTED_NAME.get(config.name, 'vit_base_patch16_224')
    if size == 'full':  # the config's own timm name and the plain one-liner: no kwargs
        assert (res['model'], res['kwargs']) == (expected, {})
    else:  # the family's name plus the tiny sizes
        assert res['model'].split('_')[0] == expected.split('_')[0]
        assert res['kwargs'] and set(res['kwargs']) <= {'embed_dim', 'depths', 'num_heads',
                                                        'depth', 'img_size', 'mlp_ratio'}
    assert res['max_abs_diff'] <= TOL, res


def test_patch_merging_channel_order_against_timm():
    """mmpretrain's nn.Unfold merge and timm's x0..x3 concat, same weights -> same output."""
    torch.manual_seed(0)
    channels, hw = 8, (6, 4)
    ours = MMPatchMerging(channels, 2 * channels)
    randomize_(ours)
    theirs = TimmPatchMerging(channels, 2 * channels)
    state = {f'stages.0.downsample.{k}': v for k, v in ours.state_dict().items()}
    converted, _ = swin_to_timm(state)
    theirs.load_state_dict({k[len('layers.1.downsample.'):]: v for k, v in converted.items()},
                           strict=True)
    x = torch.randn(2, hw[0] * hw[1], channels)
    out, out_hw = ours(x, hw)
    ref = theirs(x.view(2, *hw, channels))
    assert out_hw == (3, 2)
    torch.testing.assert_close(out.view(2, 3, 2, -1), ref, rtol=0, atol=1e-6)
    # the same weights unpermuted give another output: the test sees the order
    naive = TimmPatchMerging(channels, 2 * channels)
    naive.load_state_dict(ours.state_dict(), strict=True)
    assert (naive(x.view(2, *hw, channels)) - ref).abs().max() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['swin', 'vit'])
def test_exported_pretraining_checkpoint_is_the_teacher_in_timm(kind, request, tmp_path):
    """The tool on a real pre-training checkpoint: report, plain load, strict timm load, equal."""
    from mmpretrain.registry import MODELS
    export = request.getfixturevalue(f'{kind}_export')
    out = tmp_path / 'timm.pth'
    error, report = export_in_process(export['pretrain'], out, '--format', 'timm')
    assert error is None, error
    proc = load_plain(out)
    assert proc.returncode == 0, proc.stderr
    ckpt = torch.load(out, weights_only=True)
    info = ckpt['meta']['timm']
    assert info['model'] == ('swin_tiny_patch4_window7_224' if kind == 'swin'
                             else 'vit_base_patch16_224')
    assert ckpt['meta']['hvp_mtl']['format'] == 'timm'
    assert 'timm layout' in report and info['model'] in report and 'strict=True' in report
    for group in (('layers.0', 'layers.3', 'patch_embed', 'norm') if kind == 'swin'
                  else ('blocks.0', 'blocks.1', 'pos_embed', 'cls_token', 'norm')):
        assert f'    {group} ' in report, group
    assert 'pre-training only' in report and 'mlc_head' in report

    img_size = export['cfg'].model.backbone.img_size
    assert info['kwargs']['img_size'] == img_size  # recorded from the run's config
    model = timm.create_model(info['model'], pretrained=False, num_classes=0, **info['kwargs'])
    model.load_state_dict(ckpt['state_dict'], strict=True)
    # our backbone with the exported teacher (mmpretrain format, same run)
    cfg = export['cfg'].model.backbone.copy()
    ours = MODELS.build(cfg)
    mm_state = torch.load(export['export'], weights_only=True)['state_dict']
    missing, unexpected = ours.load_state_dict(
        {k[len('backbone.'):]: v for k, v in mm_state.items()}, strict=False)
    assert set(missing) <= {'mask_token'} | {k for k in missing if 'relative_position_index' in k}
    assert not unexpected
    x = images(img_size)
    ours.eval()
    model.eval()
    with torch.no_grad():
        diff = (ours(x)[-1] - timm_last_stage(model, x)).abs().max().item()
    assert diff <= TOL
    # the package's one-call loader gives the same model
    again = create_timm_model(str(out))
    again.eval()
    with torch.no_grad():
        assert torch.equal(again.forward_features(x), model.forward_features(x))


@pytest.fixture(scope='module')
def tiny_swin_timm():
    backbone, cfg = backbone_from_config(CONFIGS[0].parent / 'hvp_swin-t.py',
                                         **TINY['MaskedSwinTransformer'])
    return convert_to_timm(randomize_(backbone).state_dict(), cfg)


def test_a_missing_key_is_named(tiny_swin_timm, tmp_path):
    state = dict(tiny_swin_timm['state_dict'])
    del state['layers.2.blocks.1.norm1.weight']
    model = timm.create_model(tiny_swin_timm['model'], pretrained=False, num_classes=0,
                              **tiny_swin_timm['kwargs'])
    with pytest.raises(ValueError, match=r"missing key\(s\) \['layers.2.blocks.1.norm1.weight'\]"):
        check_timm_state_dict(state, model, 'lacking.pth')
    with pytest.raises(RuntimeError, match='layers.2.blocks.1.norm1.weight'):
        model.load_state_dict(state, strict=True)  # plain timm / torch names it too
    path = tmp_path / 'lacking.pth'
    torch.save({'state_dict': state, 'meta': {'timm': dict(model=tiny_swin_timm['model'],
                                                           kwargs=tiny_swin_timm['kwargs'])}},
               path)
    with pytest.raises(ValueError, match=r'lacking\.pth.*layers\.2\.blocks\.1\.norm1\.weight'):
        create_timm_model(str(path))


@pytest.mark.slow
def test_export_refuses_a_backbone_without_the_final_norm(swin_export, tmp_path):
    """A pre-training checkpoint whose teacher lost ``norm3`` (timm's ``norm``)."""
    import hvp_mtl  # noqa: F401  (allow-list for the full checkpoint)
    ckpt = torch.load(swin_export['pretrain'], map_location='cpu', weights_only=True)
    ckpt['state_dict'] = {k: v for k, v in ckpt['state_dict'].items()
                          if not k.startswith('teacher.backbone.norm3.')}
    src = tmp_path / 'no_norm3.pth'
    torch.save(ckpt, src)
    error, _ = export_in_process(src, tmp_path / 'out.pth', '--format', 'timm')
    assert error is not None and str(src) in error and "'norm.weight'" in error, error
    assert not (tmp_path / 'out.pth').exists()


def test_a_different_window_size_is_named(tmp_path):
    backbone, cfg = backbone_from_config(
        CONFIGS[0].parent / 'hvp_swin-t.py',
        **{**TINY['MaskedSwinTransformer'], 'window_size': 8, 'img_size': 256})
    converted = convert_to_timm(randomize_(backbone).state_dict(), cfg)
    assert converted['kwargs']['window_size'] == 8
    path = tmp_path / 'w8.pth'
    kwargs = {k: v for k, v in converted['kwargs'].items() if k != 'window_size'}
    torch.save({'state_dict': converted['state_dict'],
                'meta': {'timm': dict(model=converted['model'], kwargs=kwargs)}}, path)
    with pytest.raises(ValueError, match=r'w8\.pth.*window size mismatch: the checkpoint was '
                       r'trained with 8x8 windows \("layers\.0\.blocks\.0\.attn\.relative_position_'
                       r'bias_table" has 225 rows; 8 tables differ\).*has 7x7.*window_size=8'):
        create_timm_model(str(path))


@pytest.mark.parametrize('window', [2, 4])  # last-stage map 2x2: equal to / below the window
def test_a_small_map_padded_swin_is_refused_because_timm_computes_another_function(window):
    """``pad_small_map=True`` with a stage map <= the window: mmpretrain shifts (or pads) that
    window, timm does not. The refusal is checked to be needed: converted anyway (the check
    bypassed), the timm model's output differs."""
    demo = ROOT / 'configs' / 'demo' / 'hvp_swin-demo_pretrain.py'
    backbone, cfg = backbone_from_config(demo, window_size=window)
    assert cfg.pad_small_map and cfg.img_size == 64
    randomize_(backbone, seed=0)
    with pytest.raises(ValueError,
                       match=r'stage \d map is \dx\d, at most the .*pad_small_map=True'):
        convert_to_timm(backbone.state_dict(), cfg)
    if window == 2:  # (at window 4 timm shrinks the last stage's window: no strict load)
        res = compare_with_timm(backbone, dict(cfg, pad_small_map=False), images(cfg.img_size))
        assert res['max_abs_diff'] > 1e-2, res  # a different function


def test_a_backbone_timm_cannot_hold_is_refused():
    """A Swin with an absolute position embedding (timm's Swin has none)."""
    backbone, cfg = backbone_from_config(CONFIGS[0].parent / 'hvp_swin-t.py',
                                         **TINY['MaskedSwinTransformer'], use_abs_pos_embed=True)
    with pytest.raises(ValueError, match='"absolute_pos_embed" has no counterpart in timm'):
        convert_to_timm(backbone.state_dict(), cfg)


def test_an_unreadable_stored_config_is_named(tmp_path):
    src = tmp_path / 'bad_cfg.pth'
    torch.save({'state_dict': {'backbone.patch_embed.projection.weight': torch.zeros(2)},
                'meta': {'cfg': 'model = dict(('}}, src)
    error, _ = export_in_process(src, tmp_path / 'out.pth', '--format', 'timm',
                                 '--weights', 'student')
    assert error is not None and str(src) in error and 'meta["cfg"]' in error, error
    assert not (tmp_path / 'out.pth').exists()
