"""The compatibility fixes of hvp_mtl/compat.py, checked against the behaviour they restore."""
import numpy as np
import pytest

import hvp_mtl  # noqa: F401


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
@pytest.mark.parametrize('hue', [-0.5, -0.1, -0.03, 0.0, 0.03, 0.1, 0.5])
def test_adjust_hue_accepts_negative_hue_and_rotates_modulo_256(backend, hue):
    import cv2
    import mmcv
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = mmcv.adjust_hue(img, hue, backend=backend)
    assert out.shape == img.shape and out.dtype == img.dtype
    if backend == 'cv2':
        # the expected result computed independently: rotate H of HSV_FULL by int(hue*255) mod 256
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV_FULL).astype(np.int64)
        hsv[..., 0] = (hsv[..., 0] + int(hue * 255)) % 256
        expected = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR_FULL)
        np.testing.assert_array_equal(out, expected)
    if hue == 0.0:
        # a zero shift only round-trips through HSV
        assert np.abs(out.astype(int) - img.astype(int)).max() <= 8


def test_color_jitter_with_hue_runs_many_times():
    from mmpretrain.datasets.transforms import ColorJitter
    t = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
    img = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for _ in range(50):
        assert t(dict(img=img.copy()))['img'].shape == img.shape


def test_collate_fn_scope_from_cross_package_base_is_ignored():
    from mmengine.runner import Runner
    from torch.utils.data import Dataset

    class Numbers(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return i

    loader = Runner.build_dataloader(dict(
        batch_size=2, num_workers=0, dataset=Numbers(),
        sampler=dict(type='DefaultSampler', shuffle=False),
        collate_fn=dict(type='default_collate', _scope_='mmpretrain')))
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3]]


def test_swin_window_change_resizes_tables_without_index_buffers():
    """An export without relative_position_index loads into a Swin with another window size."""
    import torch
    from mmpretrain.models import SwinTransformer
    arch = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2])
    torch.manual_seed(0)
    src = SwinTransformer(arch=arch, img_size=64, window_size=4, pad_small_map=True)
    dst = SwinTransformer(arch=arch, img_size=64, window_size=2, pad_small_map=True)
    state = {k: v for k, v in src.state_dict().items() if 'relative_position_index' not in k}
    missing, unexpected = dst.load_state_dict(state, strict=False)
    assert not unexpected
    assert all('relative_position_index' in k for k in missing)
    key = 'stages.0.blocks.0.attn.w_msa.relative_position_bias_table'
    old, new = src.state_dict()[key], dst.state_dict()[key]
    assert old.shape == (49, 1) and new.shape == (9, 1)
    # the centre offset (0, 0) lies on both grids and a spline through it keeps its value
    torch.testing.assert_close(new.view(3, 3)[1, 1], old.view(7, 7)[3, 3])
    assert torch.isfinite(new).all()
    # the index buffers are the model's own, untouched
    assert dst.state_dict()[key.replace('bias_table', 'index')].shape == (4, 4)


class _NotAllowListed:
    """Any class of user code: weights-only loading must keep refusing it."""

    def __init__(self, value=1):
        self.value = value


class _BytesWithSize:
    """Pickles as the call ``builtins.bytes(16)``."""

    def __reduce__(self):
        return bytes, (16, )


def test_empty_history_buffer_loads_weights_only_and_others_stay_refused(
        tmp_path):
    """A message hub with a scalar that was never updated (an empty
    ``HistoryBuffer``) pickles its ``np.array([])`` as ``builtins.bytes()``:
    it loads with ``weights_only=True``; ``bytes`` with an argument, or an
    arbitrary class, is still refused."""
    import pickle

    import torch
    from mmengine.logging import HistoryBuffer, MessageHub

    hub = MessageHub.get_instance('empty_history_buffer_test')
    hub.update_scalar('train/loss', 0.5)
    # registered, never updated (as a hook that logs only later does)
    hub.log_scalars['train/never_updated'] = HistoryBuffer()
    hub._resumed_keys['train/never_updated'] = True
    path = tmp_path / 'ckpt.pth'
    torch.save({'message_hub': hub.state_dict(),
                'state_dict': {'w': torch.ones(2)}}, path)
    loaded = torch.load(path, map_location='cpu', weights_only=True)
    restored = MessageHub.get_instance('empty_history_buffer_restored')
    restored.load_state_dict(loaded['message_hub'])
    empty = restored.log_scalars['train/never_updated']
    assert len(empty.data[0]) == 0
    assert restored.get_scalar('train/loss').current() == 0.5

    for payload in (_BytesWithSize(), _NotAllowListed()):
        bad = tmp_path / 'bad.pth'
        torch.save({'state_dict': {}, 'x': payload}, bad)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(bad, map_location='cpu', weights_only=True)


def test_import_patches_nothing_of_mmengine_dist_until_asked():
    """``import hvp_mtl`` leaves mmengine's process-group start and DDP alone;
    ``enable_cpu_distributed`` (what the launch entry points call) wraps both
    when there is no CUDA device. Checked in a fresh interpreter."""
    import json
    import subprocess
    import sys
    code = '\n'.join([
        'import json, torch, hvp_mtl',
        'from mmengine.dist import utils',
        'from mmengine.model import MMDistributedDataParallel as DDP',
        'def wrapped():',
        '    return [hasattr(f, "__wrapped__") for f in (',
        '        utils._init_dist_pytorch, utils._init_dist_slurm, DDP.__init__)]',
        'before = wrapped()',
        'from hvp_mtl.engine.runner import enable_cpu_distributed',
        'applied = enable_cpu_distributed()',
        'print(json.dumps(dict(before=before, after=wrapped(), applied=applied,',
        '    again=enable_cpu_distributed(), cuda=torch.cuda.is_available())))',
    ])
    result = json.loads(subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True,
        check=True).stdout.strip().splitlines()[-1])
    assert result['before'] == [False, False, False]
    if result['cuda']:
        assert result['after'] == [False, False, False]
        assert result['applied'] is False
    else:
        assert result['after'] == [True, True, True]
        assert result['applied'] is True
    assert result['again'] is False  # idempotent
