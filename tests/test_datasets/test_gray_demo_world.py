"""The colour-free demo world: deterministic, gray, the colour world's scenes, every file."""
import glob
import json
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from hvp_mtl.datasets import TencentMLImages
from hvp_mtl.datasets.demo_world import GRAY_LEVELS, PRETRAIN_CLASSES, make_demo_world
from tests.conftest import DEMO_WORLD_SIZES
from tests.helpers.scripts import file_digests


@pytest.fixture(scope='module')
def gray_world(tmp_path_factory):
    out = tmp_path_factory.mktemp('gray_world')
    make_demo_world(str(out), **DEMO_WORLD_SIZES, palette='gray')
    return out


def test_same_seed_gives_byte_identical_gray_files(gray_world, tmp_path):
    again = make_demo_world(str(tmp_path / 'again'), **DEMO_WORLD_SIZES, palette='gray')
    reference = file_digests(gray_world)
    assert len(reference) > 100
    assert file_digests(again) == reference


def test_colour_world_is_unchanged_by_the_palette_option(demo_world, tmp_path):
    explicit = make_demo_world(str(tmp_path / 'colour'), **DEMO_WORLD_SIZES, palette='colour')
    assert file_digests(explicit) == file_digests(demo_world)
    assert 'palette' not in json.loads((demo_world / 'world.json').read_text())


def test_gray_world_has_the_same_files_and_labels(gray_world, demo_world):
    gray, colour = file_digests(gray_world), file_digests(demo_world)
    assert gray.keys() == colour.keys()
    same = [p for p in ('pretrain/train.txt', 'pretrain/val.txt', 'cls/meta/train.txt',
                        'coco/annotations/instances_train.json',
                        'ade/annotations/training/ADE_train_00000001.png')
            if p in gray]
    assert len(same) >= 4
    for path in same:  # labels, masks, boxes: the scenes are the colour world's
        assert gray[path] == colour[path], path
    images = [p for p in gray if p.endswith(('.jpg', '.JPEG'))]
    assert sum(gray[p] != colour[p] for p in images) == len(images)


def test_every_gray_image_decodes_with_equal_channels(gray_world):
    files = glob.glob(str(gray_world / '**' / '*.jpg'), recursive=True)
    files += glob.glob(str(gray_world / '**' / '*.JPEG'), recursive=True)
    assert len(files) > 80
    for path in files:
        image = np.asarray(Image.open(path).convert('RGB')).astype(int)
        assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all(), \
            path


def test_gray_dictionary_names_the_levels(gray_world):
    root = gray_world / 'pretrain'
    dataset = TencentMLImages(ann_file='train.txt', data_root=str(root), data_prefix='images',
                              dictionary_file='dictionary_and_semantic_hierarchy.txt')
    classes = dataset.metainfo['classes']
    assert len(classes) == len(PRETRAIN_CLASSES) == 64
    levels = [name for name, _ in GRAY_LEVELS.values()]
    assert classes[1] == 'intensity' and list(classes[10:16]) == levels
    assert classes[24] == f'{levels[0]} circle'
    assert not {'red', 'green', 'blue', 'cyan'} & set(' '.join(classes).split())
    world = json.loads((gray_world / 'world.json').read_text())
    assert world['palette'] == 'gray' and world['classes']['pretrain'] == list(classes)


def test_levels_are_outside_the_background_range():
    values = sorted(v for _, v in GRAY_LEVELS.values())
    assert all(v < 74 or v > 185 for v in values)  # background 95-185, shaded x0.78
    assert min(b - a for a, b in zip(values, values[1:])) >= 20


def test_demo_data_stage_writes_the_gray_world(tmp_path):
    from hvp_mtl.apis.demo import Demo
    demo = Demo(str(tmp_path / 'work'), str(tmp_path / 'data'), 'tiny', world='gray')
    demo.make_world()
    world = json.loads((tmp_path / 'data' / 'world.json').read_text())
    assert world['palette'] == 'gray'
    # a colour demo on the same data root writes the colour world anew
    Demo(str(tmp_path / 'work2'), str(tmp_path / 'data'), 'tiny').make_world()
    assert 'palette' not in json.loads((tmp_path / 'data' / 'world.json').read_text())
    assert osp.isfile(tmp_path / 'data' / 'pretrain' / 'train.txt')
