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
