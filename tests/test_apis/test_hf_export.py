"""The Hugging Face-style export (``--format hf``), the ``.safetensors`` copy of the mmpretrain
export, and the exporter's message for a file that is not a checkpoint.

The HF directory is loaded in a fresh interpreter with torch and timm alone
(``timm.create_model('local-dir:DIR', pretrained=True)``); its features are compared with our
backbone built from the run's config and given the mmpretrain export of the same run.
"""
import json
import subprocess
import sys

import pytest
import torch

from tests.helpers.exporter import TOL, export_in_process, images
from tests.test_apis.test_export import swin_export  # noqa: F401  (session fixture)

pytestmark = pytest.mark.usefixtures('one_torch_thread')

#: runs with torch + timm only: prints forward_features of a seeded batch, as a list
TIMM_ALONE = '''
import sys, torch, timm
model = timm.create_model('local-dir:' + sys.argv[1], pretrained=True).eval()
assert not any(m.split('.')[0] in ('hvp_mtl', 'mmengine', 'mmpretrain', 'mmcv')
               for m in sys.modules), 'needs only torch and timm'
size = int(sys.argv[2])
x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    torch.save(model.forward_features(x), sys.argv[3])
print(type(model).__name__, model.num_classes)
'''


@pytest.mark.slow
def test_hf_directory_loads_with_timm_alone_and_equals_our_backbone(swin_export, tmp_path):
    from mmpretrain.registry import MODELS
    out = tmp_path / 'hvp_swin_hf'
    error, report = export_in_process(swin_export['pretrain'], out, '--format', 'hf')
    assert error is None, error
    assert sorted(p.name for p in out.iterdir()) == ['README.md', 'config.json',
                                                     'model.safetensors']
    assert f"create_model('local-dir:{out}', pretrained=True)" in report
    config = json.loads((out / 'config.json').read_text())
    assert config['architecture'] == 'swin_tiny_patch4_window7_224'
    assert config['num_classes'] == 0
    assert config['pretrained_cfg']['license'] == 'apache-2.0'
    assert config['pretrained_cfg']['tag'] == 'hvp_mtl'
    img_size = swin_export['cfg'].model.backbone.img_size
    assert config['model_args']['img_size'] in (img_size, [img_size, img_size])

    feats_file = tmp_path / 'timm_feats.pt'
    proc = subprocess.run([sys.executable, '-c', TIMM_ALONE, str(out), str(img_size),
                           str(feats_file)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ['SwinTransformer', '0']
    theirs = torch.load(feats_file, weights_only=True).permute(0, 3, 1, 2)

    ours = MODELS.build(swin_export['cfg'].model.backbone.copy())
    state = torch.load(swin_export['export'], weights_only=True)['state_dict']
    ours.load_state_dict({k[len('backbone.'):]: v for k, v in state.items()}, strict=False)
    ours.eval()
    with torch.no_grad():
        mine = ours(images(img_size))[-1]
    assert mine.shape == theirs.shape
    assert (mine - theirs).abs().max().item() <= TOL

    card = (out / 'README.md').read_text()
    assert card.startswith('---\nlibrary_name: timm\nlicense: apache-2.0\n')
    for fact in ('iteration 2', 'MaskedSwinTransformer', 'TencentMLImages', 'code commit',
                 "timm.create_model('local-dir:hvp_swin_hf', pretrained=True)",
                 'teacher weights', '## Pre-training config'):
        assert fact in card, fact

    # an existing export is replaced; any other existing directory is refused
    error, _ = export_in_process(swin_export['pretrain'], out, '--format', 'hf')
    assert error is None, error
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'notes.txt').write_text('mine')
    error, _ = export_in_process(swin_export['pretrain'], other, '--format', 'hf')
    assert error and 'not an earlier export' in error
    assert (other / 'notes.txt').read_text() == 'mine'


@pytest.mark.slow
def test_mmpretrain_export_with_a_safetensors_copy(swin_export, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file
    out = tmp_path / 'backbone.pth'
    error, report = export_in_process(swin_export['pretrain'], out, '--safetensors')
    assert error is None, error
    copy = tmp_path / 'backbone.safetensors'
    assert f'Saved {copy}' in report
    pth = torch.load(out, weights_only=True)
    tensors = load_file(str(copy))
    assert sorted(tensors) == sorted(pth['state_dict'])
    assert all(torch.equal(tensors[k], v) for k, v in pth['state_dict'].items())
    with safe_open(str(copy), framework='pt') as f:
        meta = f.metadata()
    assert meta['format'] == 'mmpretrain'
    assert json.loads(meta['hvp_mtl_meta'])['hvp_mtl']['weights'] == 'teacher'
    error, _ = export_in_process(swin_export['pretrain'], tmp_path / 't.pth', '--format',
                                 'timm', '--safetensors')
    assert error and '--safetensors is for --format mmpretrain' in error


@pytest.mark.parametrize('content', [b'', b'step,loss\n1,0.5\n', 'zip'])
def test_a_file_that_is_not_a_checkpoint_is_named_so(tmp_path, content):
    """Text, empty and truncated files: one message, never torch's weights_only=False advice."""
    src = tmp_path / 'epoch_30.pth'
    if content == 'zip':  # a real checkpoint cut in half (an interrupted copy)
        full = tmp_path / 'full.pth'
        torch.save({'state_dict': {'backbone.w': torch.ones(64, 64)}}, full)
        src.write_bytes(full.read_bytes()[:full.stat().st_size // 2])
    else:
        src.write_bytes(content)
    for fmt in ('mmpretrain', 'timm', 'hf'):
        error, _ = export_in_process(src, tmp_path / 'out', '--format', fmt)
        assert error and 'not a PyTorch checkpoint (or truncated)' in error, error
        assert 'weights_only' not in error and str(src) in error
    assert not (tmp_path / 'out').exists()
