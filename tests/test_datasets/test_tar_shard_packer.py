"""Pre-resized tar shards: resize, index sizes, labels and order, a resume after a kill."""
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hvp_mtl.datasets import TarShardIndex, TencentMLImages, build_tar_index
from hvp_mtl.datasets.tar_shard_packer import pack_folder, read_manifests

ROOT = Path(__file__).resolve().parents[2]
TOOL = 'tools/dataset_converters/build_tar_shard_index.py'


def photo_like(width, height, seed, mode='RGB'):
    """Smooth colour fields plus grain, as JPEG bytes (quality 95)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    field = np.asarray(small.resize((width, height), Image.BICUBIC), np.float64)
    image = Image.fromarray(np.clip(field + rng.normal(0, 6, field.shape), 0, 255)
                            .astype(np.uint8)).convert(mode)
    out = io.BytesIO()
    exif = None
    if mode == 'RGB' and seed == 3:  # stored sideways, EXIF orientation 6 (rotate 90)
        exif = Image.Exif()
        exif[0x0112] = 6
    image.save(out, 'JPEG', quality=95, **({'exif': exif} if exif else {}))
    return out.getvalue()


def run_tool(*args, **kwargs):
    return subprocess.run([sys.executable, TOOL, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, **kwargs)


def test_resized_pack_keeps_names_and_records_sizes(tmp_path):
    images = tmp_path / 'images'
    (images / 'a').mkdir(parents=True)
    sizes = {'a/wide.jpg': (300, 120), 'a/small.jpg': (50, 40), 'tall.jpg': (90, 200),
             'a/sideways.jpg': (160, 100), 'gray.jpg': (140, 140)}
    for i, (name, (w, h)) in enumerate(sizes.items()):
        seed = 3 if name == 'a/sideways.jpg' else i
        (images / name).write_bytes(photo_like(w, h, seed, 'L' if 'gray' in name else 'RGB'))
    (images / 'broken.jpg').write_bytes(b'not an image')
    out = run_tool('--pack-from', str(images), '--shard-dir', str(tmp_path / 'shards'),
                   '--out', str(tmp_path / 'index'), '--max-short-side', '64',
                   '--jpeg-quality', '85', '--workers', '2', '--shard-mb', '0.0001')
    assert out.returncode == 0, out.stderr
    assert 'broken.jpg: not a readable image' in out.stderr
    index = TarShardIndex(str(tmp_path / 'index'))
    upright = dict(sizes, **{'a/sideways.jpg': (100, 160)})  # (w, h) after EXIF
    for name, (w, h) in upright.items():
        data = index.read(name)
        stored = Image.open(io.BytesIO(data))
        scale = min(1, 64 / min(w, h))
        expected = (round(w * scale), round(h * scale))
        assert stored.size == expected, name
        assert index.image_size(name) == dict(original=(h, w), stored=expected[::-1])
        if scale == 1:  # small enough: the original bytes
            assert data == (images / name).read_bytes()
        else:
            assert stored.getexif().get(0x0112, 1) == 1
    assert index.read('broken.jpg') == b'not an image'
    assert index.image_size('broken.jpg') == dict(original=(0, 0), stored=(0, 0))
    assert Image.open(io.BytesIO(index.read('gray.jpg'))).mode == 'L'
    assert len(os.listdir(tmp_path / 'shards')) == 2 * 6 + 1  # shards, manifests, pack.json
    # the same folder with other settings is refused, naming the plan file
    with pytest.raises(ValueError, match='pack.json'):
        pack_folder(str(images), str(tmp_path / 'shards'), 100, max_short_side=32)


def test_dataset_labels_and_order_are_unchanged_on_resized_shards(demo_world, tmp_path):
    root = demo_world / 'pretrain'
    shards = pack_folder(str(root / 'images'), str(tmp_path / 'shards'), 2**14,
                         max_short_side=48, workers=2)
    build_tar_index(shards, str(tmp_path / 'index'), read_manifests(shards))
    common = dict(ann_file='train.txt', data_root=str(root), data_prefix='images',
                  dictionary_file='dictionary_and_semantic_hierarchy.txt')
    folder = TencentMLImages(pipeline=[dict(type='LoadImageFromFile')], **common)
    shard = TencentMLImages(pipeline=[dict(type='LoadImageFromFile', backend_args=dict(
        backend='tar_shards', index=str(tmp_path / 'index'), root=str(root / 'images')))],
        **common)
    assert len(shard) == len(folder)
    for i in range(len(folder)):
        a, b = folder[i], shard[i]
        assert a['img_path'] == b['img_path']
        np.testing.assert_array_equal(a['gt_score'], b['gt_score'])
        assert min(b['img'].shape[:2]) == 48 and min(a['img'].shape[:2]) == 64


def test_pack_resumes_after_a_kill(tmp_path):
    images = tmp_path / 'images'
    images.mkdir()
    count = 40
    for i in range(count):
        (images / f'{i:03d}.jpg').write_bytes(photo_like(900, 700, 100 + i))
    common = ['--pack-from', str(images), '--max-short-side', '96', '--shard-mb', '0.0001',
              '--workers', '1', '--no-progress']
    shard_dir = tmp_path / 'shards'
    child = subprocess.Popen([sys.executable, TOOL, *common, '--shard-dir', str(shard_dir),
                              '--out', str(tmp_path / 'index')], cwd=ROOT,
                             start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(shard_dir.glob('shard-*.json'))) < 2:  # two shards committed
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    done = sorted(shard_dir.glob('shard-*.json'))
    assert 2 <= len(done) < count  # killed mid-pack
    kept = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in shard_dir.glob('shard-*.tar') if p.with_suffix('.json').exists()}
    assert not (tmp_path / 'index').exists()
    # resumed (in this process: the same package function the tool calls)
    shards = pack_folder(str(images), str(shard_dir), 100, max_short_side=96)
    build_tar_index(shards, str(tmp_path / 'index'), read_manifests(shards))
    for name, stat in kept.items():  # committed shards are kept, not rewritten
        path = shard_dir / name
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == stat
    assert not [p for p in os.listdir(shard_dir) if p.endswith('.tmp')]
    pack_folder(str(images), str(tmp_path / 'fresh'), 100, max_short_side=96, workers=2)
    for i in range(count):  # the resumed pack is the uninterrupted one, byte for byte
        name = f'shard-{i:05d}.tar'
        assert (shard_dir / name).read_bytes() == (tmp_path / 'fresh' / name).read_bytes()
    index = TarShardIndex(str(tmp_path / 'index'))
    assert len(index) == count
    assert index.image_size('017.jpg') == dict(original=(700, 900), stored=(96, 123))
    with tarfile.open(shard_dir / 'shard-00000.tar') as tar:
        assert tar.getnames() == ['000.jpg']


def test_pack_of_a_missing_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / 'missing')):
        pack_folder(str(tmp_path / 'missing'), str(tmp_path / 'shards'), 100)
