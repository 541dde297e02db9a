"""The pre-training pipeline: two views, RandAugment, a mask for view 0, packing."""
import numpy as np
import pytest
import torch
from mmengine.dataset import default_collate
from mmpretrain.registry import MODELS, TRANSFORMS
from mmpretrain.structures import DataSample

from hvp_mtl.datasets import TencentMLImages


def view_pipeline(size):
    return [
        dict(type='RandomResizedCrop', scale=size, crop_ratio_range=(0.2, 1.0),
             backend='pillow', interpolation='bicubic'),
        dict(type='RandomFlip', prob=0.5),
        # no hue jitter: mmcv 2.1's adjust_hue overflows on numpy 2 for
        # negative hue factors
        dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.2),
        dict(type='RandAugment', policies='timm_increasing', num_policies=2,
             total_level=10, magnitude_level=9, magnitude_std=0.5,
             hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    ]


def pretrain_pipeline(size, model_patch_size):
    return [
        dict(type='LoadImageFromFile'),
        dict(type='MultiViewWithMask',
             transforms=[view_pipeline(size), view_pipeline(size)],
             mask_generator=dict(type='SimMIMMaskGenerator', input_size=size,
                                 mask_patch_size=32,
                                 model_patch_size=model_patch_size,
                                 mask_ratio=0.6)),
        dict(type='PackInputs'),
    ]


def demo_pretrain(demo_world, pipeline):
    return TencentMLImages(
        ann_file='train.txt', data_root=str(demo_world / 'pretrain'),
        data_prefix='images',
        dictionary_file='dictionary_and_semantic_hierarchy.txt',
        pipeline=pipeline)


@pytest.mark.parametrize('size, model_patch_size', [(64, 4), (96, 16)])
def test_packed_sample_follows_the_data_contract(demo_world, size,
                                                 model_patch_size):
    np.random.seed(0)
    dataset = demo_pretrain(demo_world, pretrain_pipeline(size, model_patch_size))
    packed = dataset[0]
    views = packed['inputs']
    assert isinstance(views, list) and len(views) == 2
    for view in views:
        assert view.dtype == torch.uint8 and tuple(view.shape) == (3, size, size)
    assert not torch.equal(views[0], views[1])  # independent augmentations
    sample = packed['data_samples']
    assert isinstance(sample, DataSample)
    assert sample.gt_score.dtype == torch.float32
    expected = torch.from_numpy(dataset.get_data_info(0)['gt_score'])
    torch.testing.assert_close(sample.gt_score, expected)
    tokens = size // model_patch_size
    assert tuple(sample.mask.shape) == (tokens, tokens)
    assert set(sample.mask.unique().tolist()) <= {0, 1}
    # 32-px blocks, ceil(0.6 * blocks) of them masked
    blocks = (size // 32)**2
    scale = 32 // model_patch_size
    assert int(sample.mask.sum()) == int(np.ceil(0.6 * blocks)) * scale**2
    coarse = sample.mask[::scale, ::scale]
    assert torch.equal(sample.mask,
                       coarse.repeat_interleave(scale, 0).repeat_interleave(scale, 1))


def test_batch_through_selfsup_preprocessor(demo_world):
    dataset = demo_pretrain(demo_world, pretrain_pipeline(64, 4))
    batch = default_collate([dataset[i] for i in range(3)])
    preprocessor = MODELS.build(
        dict(type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
             std=[58.395, 57.12, 57.375], to_rgb=True))
    data = preprocessor(batch, training=True)
    inputs, samples = data['inputs'], data['data_samples']
    assert [tuple(x.shape) for x in inputs] == [(3, 3, 64, 64)] * 2
    assert inputs[0].dtype == torch.float32
    masks = torch.stack([s.mask for s in samples])
    scores = torch.stack([s.gt_score for s in samples])
    assert tuple(masks.shape) == (3, 16, 16) and tuple(scores.shape) == (3, 64)
    assert (scores.sum(1) > 0).all()


def test_mask_must_tile_the_view(demo_world):
    transform = TRANSFORMS.build(
        dict(type='MultiViewWithMask', transforms=[view_pipeline(64)] * 2,
             mask_generator=dict(type='SimMIMMaskGenerator', input_size=96,
                                 mask_patch_size=32, model_patch_size=4)))
    image = np.zeros((80, 80, 3), np.uint8)
    with pytest.raises(ValueError, match='set the mask generator input_size'):
        transform(dict(img=image, gt_score=np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match='masked_view=2'):
        TRANSFORMS.build(dict(type='MultiViewWithMask',
                              transforms=[view_pipeline(64)] * 2, masked_view=2))
    no_mask = TRANSFORMS.build(dict(type='MultiViewWithMask',
                                    transforms=[view_pipeline(64)] * 3,
                                    mask_generator=None))
    out = no_mask(dict(img=image))
    assert len(out['img']) == 3 and 'mask' not in out
