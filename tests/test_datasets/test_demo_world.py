"""The demo world: deterministic, and every set loads through the real
mmpretrain / mmdet / mmseg dataset classes."""
import importlib.util
import json
import os.path as osp

import numpy as np
import torch

from hvp_mtl.datasets import TencentMLImages
from hvp_mtl.datasets.demo_world import (
    PRETRAIN_CLASSES,
    SEG_CLASSES,
    SEG_PALETTE,
    SHAPES,
    make_demo_world,
)
from tests.conftest import DEMO_WORLD_SIZES
from tests.helpers.scripts import file_digests

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_same_seed_gives_byte_identical_files(demo_world, tmp_path):
    spec = importlib.util.spec_from_file_location(
        'make_demo_data',
        osp.join(ROOT, 'tools', 'dataset_converters', 'make_demo_data.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    sizes = DEMO_WORLD_SIZES
    cli.main(['--out', str(tmp_path / 'again'), '--seed', str(sizes['seed']),
              '--num-pretrain', str(sizes['num_pretrain']),
              '--num-cls', str(sizes['num_cls']), '--num-det',
              str(sizes['num_det']), '--num-seg', str(sizes['num_seg']),
              '--size', str(sizes['size'])])
    reference = file_digests(demo_world)
    assert len(reference) > 100
    assert any(p.endswith('.jpg') or p.endswith('.JPEG') for p in reference)
    assert file_digests(tmp_path / 'again') == reference
    other = make_demo_world(str(tmp_path / 'seed1'), **dict(sizes, seed=1))
    changed = file_digests(other)
    assert changed.keys() != reference.keys() or changed != reference
    same_names = set(changed) & set(reference)
    assert sum(changed[p] != reference[p] for p in same_names) > len(same_names) // 2


def test_converter_defaults_are_the_world_the_demo_generates():
    from hvp_mtl.apis.demo import SIZES
    spec = importlib.util.spec_from_file_location(
        'make_demo_data', osp.join(ROOT, 'tools', 'dataset_converters', 'make_demo_data.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    args = vars(cli.parse_args([]))
    assert {k: args[k] for k in SIZES['default']['world']} == SIZES['default']['world']


def test_pretrain_set_is_tencent_format(demo_world):
    root = demo_world / 'pretrain'
    with open(root / 'train.txt') as f:
        lines = f.read().splitlines()
    assert any('\t' in line and line.startswith('https://') for line in lines)
    assert any('   ' in line and '.JPEG' in line for line in lines)
    for split, count in (('train', 28), ('val', 4)):
        dataset = TencentMLImages(
            ann_file=f'{split}.txt', data_root=str(root), data_prefix='images',
            dictionary_file='dictionary_and_semantic_hierarchy.txt')
        assert len(dataset) == count
        assert dataset.metainfo['classes'] == PRETRAIN_CLASSES
        for i in range(count):
            info = dataset.get_data_info(i)
            assert osp.isfile(info['img_path'])
            score = info['gt_score']
            leaves = [c for c in np.flatnonzero(score)
                      if ' ' in PRETRAIN_CLASSES[c] and 'background' not in
                      PRETRAIN_CLASSES[c] and 'object' not in PRETRAIN_CLASSES[c]]
            assert leaves, 'every image has a "colour shape" leaf'
            for leaf in leaves:  # expanded ancestors: shape kind and root
                shape = PRETRAIN_CLASSES[leaf].split(' ')[1]
                assert score[PRETRAIN_CLASSES.index(shape)] >= score[leaf] > 0
                assert score[0] > 0
            assert np.isin(score, np.float32([0.0, 0.8, 0.9, 1.0])).all()


def test_cls_set_loads_in_mmpretrain(demo_world):
    from mmpretrain.datasets import CustomDataset, ImageNet
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    root = str(demo_world / 'cls')
    for split, count in (('train', 18), ('val', 6)):
        folder = ImageNet(data_root=root, split=split, classes=list(SHAPES),
                          pipeline=pipeline)
        listed = CustomDataset(data_root=root, ann_file=f'meta/{split}.txt',
                               data_prefix=split, classes=list(SHAPES),
                               pipeline=pipeline)
        assert len(folder) == len(listed) == count
        for dataset in (folder, listed):
            for i in range(count):
                info = dataset.get_data_info(i)
                assert SHAPES[info['gt_label']] == osp.basename(
                    osp.dirname(info['img_path']))
        sample = listed[0]
        assert tuple(sample['inputs'].shape) == (3, 64, 64)
        assert int(sample['data_samples'].gt_label) == 0
    labels = [listed.get_data_info(i)['gt_label'] for i in range(6)]
    assert sorted(labels) == list(range(6))  # balanced classes


def test_coco_set_loads_in_mmdet(demo_world):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.transforms import LoadAnnotations, PackDetInputs
    root = demo_world / 'coco'
    for split, count in (('train', 12), ('val', 4)):
        ann_file = f'annotations/instances_{split}.json'
        with open(root / ann_file) as f:
            coco = json.load(f)
        dataset = CocoDataset(
            data_root=str(root), ann_file=ann_file,
            data_prefix=dict(img=f'{split}/'), metainfo=dict(classes=SHAPES),
            pipeline=[LoadImageFromFile(),
                      LoadAnnotations(with_bbox=True, with_mask=True),
                      PackDetInputs()])
        assert len(dataset) == count
        for i in range(count):
            packed = dataset[i]
            instances = packed['data_samples'].gt_instances
            image_id = dataset.get_data_info(i)['img_id']
            annotations = [a for a in coco['annotations'] if a['image_id'] == image_id]
            assert len(instances) == len(annotations) >= 1
            assert tuple(packed['inputs'].shape) == (3, 64, 64)
            masks = instances.masks.to_ndarray()
            assert masks.shape == (len(annotations), 64, 64)
            areas = sorted(masks.sum((1, 2)).tolist())
            expected = sorted(a['area'] for a in annotations)
            np.testing.assert_allclose(areas, expected, rtol=0.25, atol=12)
            labels = sorted(instances.labels.tolist())
            assert labels == sorted(a['category_id'] - 1 for a in annotations)


def test_ade_set_loads_in_mmseg(demo_world):
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import BaseSegDataset
    from mmseg.datasets.transforms import LoadAnnotations, PackSegInputs
    seen = set()
    for split, count in (('training', 12), ('validation', 4)):
        dataset = BaseSegDataset(
            data_root=str(demo_world / 'ade'),
            data_prefix=dict(img_path=f'images/{split}',
                             seg_map_path=f'annotations/{split}'),
            img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True,
            metainfo=dict(classes=SEG_CLASSES, palette=SEG_PALETTE),
            pipeline=[LoadImageFromFile(), LoadAnnotations(), PackSegInputs()])
        assert len(dataset) == count
        for i in range(count):
            seg = dataset[i]['data_samples'].gt_sem_seg.data
            assert tuple(seg.shape) == (1, 64, 64)
            values = set(torch.unique(seg).tolist())
            assert values <= set(range(len(SEG_CLASSES))) | {255}
            assert {0, 255} <= values  # background, and ignored outlines
            seen |= values
    assert len(seen - {0, 255}) >= 4  # several shape classes appear
