"""TencentMLImages, the list/dictionary parsers, the index and robust loading."""
import importlib.util
import os
import os.path as osp
import pickle
import shutil

import numpy as np
import pytest

from hvp_mtl.datasets import (
    MLImagesFormatError,
    MLImagesIndex,
    TencentMLImages,
    TooManyBadSamplesError,
    build_index,
    default_index_dir,
    parse_list_line,
    read_dictionary,
)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# The two official line styles: an ImageNet id with space-separated labels,
# a URL with tab-separated labels (from the dataset's README / tiny list).
IMAGENET_LINE = ('n04310904/n04310904_8388.JPEG   2367:1  2172:1  1831:1  '
                 '1054:1  1041:1  865:1   2:1')
URL_LINE = ('https://c2.staticflickr.com/4/3035/3033882900_a9a4263c55_o.jpg'
            '\t1053:0.8\t1193:0.9\t1379:1.0')


def load_tool(relative_path):
    """Import a script of tools/ as a module."""
    path = osp.join(ROOT, relative_path)
    spec = importlib.util.spec_from_file_location(osp.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path, text):
    with open(path, 'w', newline='\n') as f:
        f.write(text)
    return str(path)


def test_parse_both_line_styles():
    path, class_ids, confidences = parse_list_line(IMAGENET_LINE, 11166)
    assert path == 'n04310904/n04310904_8388.JPEG'
    assert class_ids.tolist() == [2367, 2172, 1831, 1054, 1041, 865, 2]
    assert confidences.tolist() == [1.0] * 7
    path, class_ids, confidences = parse_list_line(URL_LINE + '\r\n', 11166)
    assert path.endswith('3033882900_a9a4263c55_o.jpg')
    assert class_ids.tolist() == [1053, 1193, 1379]
    np.testing.assert_array_equal(confidences,
                                  np.float32([0.8, 0.9, 1.0]))
    assert parse_list_line('  \t\n') is None


def test_dataset_soft_targets_paths_and_threshold(tmp_path):
    list_file = write(tmp_path / 'train.txt',
                      IMAGENET_LINE + '\n\n' + URL_LINE + '\n')
    dataset = TencentMLImages(ann_file=list_file, data_prefix='images',
                              num_classes=11166)
    assert len(dataset) == 2
    first, second = dataset.get_data_info(0), dataset.get_data_info(1)
    assert first['img_path'] == 'images/n04310904/n04310904_8388.JPEG'
    assert second['img_path'] == 'images/3033882900_a9a4263c55_o.jpg'
    assert dataset.annotation_line(1) == f'{list_file}:3'
    assert first['gt_score'].dtype == np.float32
    assert first['gt_score'].shape == (11166, )
    expected = np.zeros(11166, np.float32)
    expected[[1053, 1193, 1379]] = [0.8, 0.9, 1.0]
    np.testing.assert_array_equal(second['gt_score'], expected)
    assert 'gt_label' not in second

    binary = TencentMLImages(ann_file=list_file, num_classes=11166,
                             binarize_threshold=0.85)
    score = binary.get_data_info(1)['gt_score']
    assert score[[1053, 1193, 1379]].tolist() == [0.0, 1.0, 1.0]
    assert score.sum() == 2.0
    assert binary.get_cat_ids(1) == [1053, 1193, 1379]
    assert binary.get_data_info(-1)['sample_idx'] == 1


@pytest.mark.parametrize('bad_line, reason', [
    ('img.jpg 3:1 12:0.5', 'class id 12 in \'12:0.5\' is outside [0, 10)'),
    ('img.jpg 3:1.5', 'confidence 1.5 in \'3:1.5\' is outside [0, 1]'),
    ('img.jpg 3:1,4:1', 'not of the form class:confidence'),
    ('img.jpg 3=1', 'not of the form class:confidence'),
    ('img.jpg -3:1', 'not a non-negative integer'),
    ('img.jpg 3:high', 'is not a decimal number'),
    ('img.jpg', 'no class:confidence labels'),
])
def test_bad_lines_name_file_line_and_text(tmp_path, bad_line, reason):
    list_file = write(tmp_path / 'list.txt', f'a.jpg 1:1\n\nb.jpg 2:0.9\n{bad_line}\n')
    with pytest.raises(MLImagesFormatError) as info:  # in-memory parse
        TencentMLImages(ann_file=list_file, num_classes=10)
    message = str(info.value)
    assert f'{list_file}:4:' in message and reason in message
    assert repr(bad_line) in message
    assert info.value.lineno == 4
    with pytest.raises(MLImagesFormatError, match=f'{list_file}:4:'):  # index
        build_index(list_file, num_classes=10, chunk_bytes=8, workers=2)
    assert not osp.exists(default_index_dir(list_file))

    converter = load_tool('tools/dataset_converters/build_ml_images_index.py')
    assert converter.main([list_file, '--num-classes', '10', '--no-progress']) == 1
    # --skip-invalid: reported and counted, nothing silently dropped
    assert converter.main([list_file, '--num-classes', '10', '--skip-invalid',
                           '--no-progress']) == 0
    index = MLImagesIndex.open(default_index_dir(list_file))
    meta = index.meta
    assert (meta['num_samples'], meta['num_rejected'], meta['num_blank_lines'],
            meta['num_lines']) == (2, 1, 1, 4)
    with open(osp.join(index.index_dir, 'rejected.txt')) as f:
        assert f'{list_file}:4: ' in f.read()
    assert [index.line_number(i) for i in range(2)] == [1, 3]


def test_dictionary_formats(tmp_path):
    official = write(tmp_path / 'dict.txt',
                     'category_index\tcategory_id\tindex_of_parent_category\t'
                     'category name\n0\tn00002452\t-1\tthing\n'
                     '1\tn00020827\t-1\tmatter\n'
                     '2\tn05220461\t0\tobject, physical object\n'
                     '3\tn09225146\t0,1\tbody of water, water\n')
    entries = read_dictionary(official)
    assert [e.name for e in entries] == ['thing', 'matter',
                                         'object, physical object',
                                         'body of water, water']
    assert entries[3].parents == (0, 1) and entries[0].parents == ()
    no_index = write(tmp_path / 'dict3.txt', 'n1\t-1\tthing\nn2\t0\tpart\n')
    assert [e.parents for e in read_dictionary(no_index)] == [(), (0, )]
    bad = write(tmp_path / 'bad.txt', 'n1\t-1\tthing\nn2\t7\tpart\n')
    with pytest.raises(MLImagesFormatError, match='bad.txt:2: parent index 7'):
        read_dictionary(bad)
    list_file = write(tmp_path / 'l.txt', 'a.jpg 3:1\n')
    dataset = TencentMLImages(ann_file=list_file, dictionary_file=official)
    assert dataset.metainfo['classes'][2] == 'object, physical object'
    assert dataset.get_data_info(0)['gt_score'].shape == (4, )
    with pytest.raises(ValueError, match='num_classes=5'):
        TencentMLImages(ann_file=list_file, dictionary_file=official,
                        num_classes=5)


def test_index_round_trip_equals_direct_parsing(tmp_path):
    from hvp_mtl.perf.synthetic_ml_images import write_synthetic_list
    list_file = str(tmp_path / 'synthetic.txt')
    write_synthetic_list(list_file, 3000, seed=1, batch_lines=1000)
    with open(list_file, 'a') as f:  # both official styles, odd spacing
        f.write(IMAGENET_LINE + '\n \n' + URL_LINE + '\r\n' + 'x.jpg 7:.5 8:1.\n')
    index = build_index(list_file, num_classes=11166, chunk_bytes=4096,
                        workers=2)  # many blocks: boundaries and line offsets
    with open(list_file) as f:
        lines = f.read().split('\n')
    expected = [(n, parse_list_line(line, 11166)) for n, line in
                enumerate(lines, 1) if parse_list_line(line, 11166) is not None]
    assert len(index) == len(expected) == 3003
    for i, (lineno, (path, class_ids, confidences)) in enumerate(expected):
        assert index.raw_path(i) == path
        assert index.line_number(i) == lineno
        got_ids, got_conf = index.labels(i)
        np.testing.assert_array_equal(got_ids, class_ids)
        np.testing.assert_array_equal(got_conf, confidences)
    in_memory = build_index(list_file, num_classes=11166, in_memory=True)
    for name, array in index.arrays.items():
        np.testing.assert_array_equal(np.asarray(array), in_memory.arrays[name])


def test_dataset_uses_index_and_explains_missing_one(tmp_path):
    list_file = write(tmp_path / 'train.txt', IMAGENET_LINE + '\n' + URL_LINE + '\n')
    with pytest.raises(FileNotFoundError) as info:
        TencentMLImages(ann_file=list_file, num_classes=11166,
                        max_inmemory_list_mb=0)
    assert ('tools/dataset_converters/build_ml_images_index.py '
            f'{list_file} --num-classes 11166') in str(info.value)
    build_index(list_file, num_classes=11166)
    dataset = TencentMLImages(ann_file=list_file, num_classes=11166,
                              max_inmemory_list_mb=0)
    assert dataset._index.index_dir == default_index_dir(list_file)
    assert isinstance(dataset._index.arrays['class_ids'], np.memmap)
    # pickling (spawned loader workers) sends the path, not the arrays
    clone = pickle.loads(pickle.dumps(dataset))
    assert len(pickle.dumps(dataset._index)) < 4096
    np.testing.assert_array_equal(clone.get_data_info(1)['gt_score'],
                                  dataset.get_data_info(1)['gt_score'])
    write(list_file, IMAGENET_LINE + '\n')  # the list changed: index is stale
    with pytest.raises(FileNotFoundError, match='built from another version'):
        TencentMLImages(ann_file=list_file, num_classes=11166,
                        max_inmemory_list_mb=0)
    assert len(TencentMLImages(ann_file=list_file, num_classes=11166)) == 1
    subset = dataset.get_subset([1])
    assert len(subset) == 1 and subset.get_cat_ids(0) == [1053, 1193, 1379]
    assert len(TencentMLImages(ann_file=list_file, num_classes=11166,
                               indices=1)) == 1


@pytest.fixture
def broken_pretrain_set(demo_world, tmp_path):
    """A copy of the demo pre-training set with a corrupt and a missing image."""
    root = tmp_path / 'pretrain'
    shutil.copytree(demo_world / 'pretrain', root)
    dataset = TencentMLImages(ann_file='train.txt', data_root=str(root),
                              data_prefix='images',
                              dictionary_file='dictionary_and_semantic_hierarchy.txt')
    corrupt, missing = dataset.get_data_info(3), dataset.get_data_info(7)
    with open(corrupt['img_path'], 'r+b') as f:  # keep the size, break bytes
        f.write(b'\x00' * 400)
    os.remove(missing['img_path'])
    return root, len(dataset)


def make_pipeline_dataset(root, max_bad_fraction):
    return TencentMLImages(
        ann_file='train.txt', data_root=str(root), data_prefix='images',
        dictionary_file='dictionary_and_semantic_hierarchy.txt',
        max_bad_fraction=max_bad_fraction,
        pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])


def test_corrupt_and_missing_images_are_skipped_and_counted(broken_pretrain_set):
    root, size = broken_pretrain_set
    dataset = make_pipeline_dataset(root, max_bad_fraction=0.1)
    paths = [dataset[i]['data_samples'].img_path for i in range(size)]
    info = [dataset.get_data_info(i) for i in range(size)]
    # the bad samples are replaced by the next index, deterministically
    assert paths[3] == info[4]['img_path'] and paths[7] == info[8]['img_path']
    assert all(paths[i] == info[i]['img_path'] for i in range(size) if i not in (3, 7))
    stats = dataset.bad_sample_tracker.stats
    assert stats['num_bad_samples'] == 2 and stats['num_failures'] == 2
    assert stats['num_fetches'] == size + 2
    sample = dataset[3]
    assert tuple(sample['inputs'].shape) == (3, 64, 64)
    assert sample['data_samples'].gt_score.shape == (64, )


def test_bad_image_ceiling_stops_the_run(broken_pretrain_set):
    root, size = broken_pretrain_set
    dataset = make_pipeline_dataset(root, max_bad_fraction=1.5 / size)
    dataset[3]  # first failure: within the ceiling of one sample
    with pytest.raises(TooManyBadSamplesError) as info:
        dataset[7]
    message = str(info.value)
    assert '2 distinct samples > ' in message
    assert 'train.txt:4' in message and 'train.txt:8' in message


def pack_into_shards(images, tmp_path):
    """Pack ``images`` into several small tar shards; the index directory."""
    packer = load_tool('tools/dataset_converters/build_tar_shard_index.py')
    index_dir = str(tmp_path / 'train.tarindex')
    assert packer.main(['--pack-from', str(images), '--shard-dir',
                        str(tmp_path / 'shards'), '--shard-mb', '0.02',
                        '--out', index_dir]) == 0
    return index_dir


def test_images_read_from_indexed_tar_shards(demo_world, tmp_path):
    root = demo_world / 'pretrain'
    index_dir = pack_into_shards(root / 'images', tmp_path)
    assert len(os.listdir(tmp_path / 'shards')) > 1  # several shards
    common = dict(ann_file='train.txt', data_root=str(root), data_prefix='images',
                  dictionary_file='dictionary_and_semantic_hierarchy.txt')
    from_folder = TencentMLImages(
        pipeline=[dict(type='LoadImageFromFile')], **common)
    from_tars = TencentMLImages(
        pipeline=[dict(type='LoadImageFromFile',
                       backend_args=dict(backend='tar_shards', index=index_dir,
                                         root=str(root / 'images')))],
        max_bad_fraction=0.5, **common)
    for i in reversed(range(len(from_folder))):  # random access, any order
        np.testing.assert_array_equal(from_tars[i]['img'], from_folder[i]['img'])
    assert from_tars.bad_sample_tracker.stats['num_failures'] == 0
    # a list entry missing from the shards is a counted skip like a missing file
    with open(root / 'train.txt') as f:
        lines = f.read().splitlines()
    write(tmp_path / 'train.txt', '\n'.join(['gone/gone.JPEG 1:1'] + lines) + '\n')
    missing = TencentMLImages(
        ann_file=str(tmp_path / 'train.txt'), data_prefix=str(root / 'images'),
        num_classes=64, max_bad_fraction=0.5,
        pipeline=[dict(type='LoadImageFromFile',
                       backend_args=dict(backend='tar_shards', index=index_dir,
                                         root=str(root / 'images')))])
    np.testing.assert_array_equal(missing[0]['img'], from_folder[0]['img'])
    assert missing.bad_sample_tracker.stats['num_bad_samples'] == 1


# --- environmental failures are not bad samples; bounded descriptors -------
def _many_shards(tmp_path, num_shards):
    """``num_shards`` one-member tar shards and their index."""
    import io
    import tarfile

    from hvp_mtl.datasets import build_tar_index
    paths, names = [], []
    for s in range(num_shards):
        path = str(tmp_path / f'shard_{s:04d}.tar')
        with tarfile.open(path, 'w') as tar:
            data = bytes([s % 256]) * (100 + s)
            info = tarfile.TarInfo(f'm{s:04d}.bin')
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        paths.append(path)
        names.append(f'm{s:04d}.bin')
    build_tar_index(paths, str(tmp_path / 'index'))
    return str(tmp_path / 'index'), names


class _low_fd_limit:
    """Lower RLIMIT_NOFILE to the descriptors open now + ``spare``."""

    def __init__(self, spare):
        self.spare = spare

    def __enter__(self):
        import resource
        self.old = resource.getrlimit(resource.RLIMIT_NOFILE)
        in_use = len(os.listdir('/proc/self/fd'))
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (in_use + self.spare, self.old[1]))
        return in_use + self.spare

    def __exit__(self, *exc):
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, self.old)


def _open_tar_fds(directory):
    """Descriptors of this process open on ``.tar`` files in ``directory``."""
    count = 0
    for fd in os.listdir('/proc/self/fd'):
        try:
            target = os.readlink(f'/proc/self/fd/{fd}')
            count += target.startswith(directory) and target.endswith('.tar')
        except OSError:
            pass
    return count


class _ReadMembers:
    """A map-style dataset reading shard members; reports open tar fds."""

    def __init__(self, index_dir, names, max_open_shards):
        from hvp_mtl.datasets import TarShardBackend
        self.backend = TarShardBackend(index_dir,
                                       max_open_shards=max_open_shards)
        self.names = names
        self.shard_dir = osp.dirname(self.backend.index.shards[0])

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        return (len(self.backend.get(self.names[i])),
                _open_tar_fds(self.shard_dir))


def test_shard_descriptors_stay_within_the_lru_under_a_low_fd_limit(tmp_path):
    """300 shards, a limit of 80 spare descriptors: the LRU of 16 reads every
    member in random order, in the main process and in 2 loader workers
    (which also drop the descriptors inherited from the parent)."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from hvp_mtl.datasets import DataEnvironmentError
    index_dir, names = _many_shards(tmp_path, 300)
    order = np.random.default_rng(0).permutation(300)
    with _low_fd_limit(spare=80):
        dataset = _ReadMembers(index_dir, names, max_open_shards=16)
        for i in order:
            size, open_fds = dataset[int(i)]
            assert size == 100 + i and open_fds <= 16
        assert dataset.backend.index.open_shards == 16
        loader = DataLoader(dataset, batch_size=10, num_workers=2,
                            sampler=RandomSampler(dataset, num_samples=600,
                                                  generator=torch.Generator().manual_seed(0)),
                            collate_fn=list,  # no shared-memory tensors
                            multiprocessing_context='fork')
        seen = [sample for batch in loader for sample in batch]
        assert len(seen) == 600
        assert max(open_fds for _, open_fds in seen) <= 16
        # one descriptor per shard, as before, runs out: a clear error
        unbounded = _ReadMembers(index_dir, names, max_open_shards=10**6)
        with pytest.raises(DataEnvironmentError) as info:
            for i in order:
                unbounded.backend.get(names[i])
        unbounded.backend.index.close()
    assert 'out of file descriptors' in str(info.value)
    assert 'shard_' in str(info.value) and '.tar' in str(info.value)


def _tar_dataset(root, index_dir, **kwargs):
    return TencentMLImages(
        ann_file='train.txt', data_root=str(root), data_prefix='images',
        dictionary_file='dictionary_and_semantic_hierarchy.txt',
        max_bad_fraction=0.5,
        pipeline=[dict(type='LoadImageFromFile',
                       backend_args=dict(backend='tar_shards', index=index_dir,
                                         root=str(root / 'images'), **kwargs))])


def test_emfile_and_missing_shard_stop_with_a_message_not_a_bad_count(
        demo_world, tmp_path):
    from hvp_mtl.datasets import DataEnvironmentError
    root = demo_world / 'pretrain'
    index_dir = pack_into_shards(root / 'images', tmp_path)
    # no descriptor left in this process: EMFILE, for a folder and for shards
    folder = make_pipeline_dataset(root, max_bad_fraction=0.5)
    tars = _tar_dataset(root, index_dir)
    held = []
    with _low_fd_limit(spare=0):
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        try:
            for dataset in (folder, tars):
                with pytest.raises(DataEnvironmentError) as info:
                    dataset[2]
                message = str(info.value)
                assert 'environment' in message and 'train.txt:3' in message
        finally:
            for fd in held:
                os.close(fd)
    for dataset in (folder, tars):
        assert dataset.bad_sample_tracker.stats['num_failures'] == 0
    # a shard that disappeared is the storage failing, not a bad image
    fresh = _tar_dataset(root, index_dir)
    path = fresh.get_data_info(0)['img_path']
    from hvp_mtl.datasets import TarShardIndex
    index = TarShardIndex(index_dir)
    member = osp.relpath(path, str(root / 'images'))
    shard = index.shards[int(index.arrays['shard_ids'][index.find(member)])]
    os.remove(shard)
    with pytest.raises(DataEnvironmentError, match='cannot open tar shard .*' +
                       osp.basename(shard)):
        fresh[0]
    assert fresh.bad_sample_tracker.stats['num_failures'] == 0


def test_list_paths_stay_below_data_root_unless_allowed(demo_world, tmp_path):
    root = tmp_path / 'set'
    (root / 'images' / 'a').mkdir(parents=True)
    source = demo_world / 'pretrain'
    first = TencentMLImages(ann_file='train.txt', data_root=str(source),
                            data_prefix='images', num_classes=64)
    image = first.get_data_info(0)['img_path']
    shutil.copy(image, root / 'images' / 'a' / 'inside.jpg')
    shutil.copy(image, root / 'outside.jpg')  # in data_root, not the prefix
    shutil.copy(image, tmp_path / 'outside.jpg')
    write(root / 'train.txt', 'a/inside.jpg 1:1\n../outside.jpg 2:1\n'
          f'{tmp_path / "outside.jpg"} 3:1\na/../a/inside.jpg 4:1\n')
    common = dict(ann_file='train.txt', data_root=str(root),
                  data_prefix='images', num_classes=64,
                  pipeline=[dict(type='LoadImageFromFile')])
    confined = TencentMLImages(max_bad_fraction=0.9, **common)
    with pytest.raises(ValueError, match=r'train.txt:2: image path '
                       r"'../outside.jpg' is absolute or leaves"):
        confined.get_data_info(1)
    paths = [confined[i]['img_path'] for i in range(4)]
    # lines 2 and 3 are counted, logged skips replaced by the next sample
    assert paths[1] == paths[2] == paths[3] == str(root / 'images' /
                                                  'a/../a/inside.jpg')
    assert confined.bad_sample_tracker.stats['num_bad_samples'] == 2
    opted_out = TencentMLImages(allow_paths_outside_root=True, **common)
    assert opted_out[1]['img_path'].endswith('images/../outside.jpg')
    assert opted_out[2]['img_path'] == str(tmp_path / 'outside.jpg')
    assert opted_out.bad_sample_tracker.stats['num_failures'] == 0
