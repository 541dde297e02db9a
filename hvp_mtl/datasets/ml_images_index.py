"""A compact, memory-mapped index of an ML-Images list.

The index of ``train.txt`` is the directory ``train.txt.index/`` holding raw
little-endian arrays and a ``meta.json`` that records their dtypes and the
fingerprint of the list it was built from::

    path_offsets.bin   int64   [N+1]  byte range of path i in paths.bin
    paths.bin          uint8   [P]    the paths (URLs / ids) concatenated
    label_offsets.bin  int64   [N+1]  range of the labels of sample i
    class_ids.bin      uint16  [M]    (int32 when num_classes > 65536)
    confidences.bin    float32 [M]
    line_numbers.bin   uint32  [N]    1-based line of sample i in the list
    rejected.txt                      lines rejected with --skip-invalid
    meta.json

The arrays are opened with ``np.memmap(mode='r')``: opening is O(1), and data
loader workers share the page cache instead of holding copies (17.6M lines:
~0.6 GB of paths and ~0.9 GB of labels on disk, a few MB resident per
worker). Build it with ``tools/dataset_converters/build_ml_images_index.py``.
"""
import hashlib
import json
import os.path as osp
from typing import Dict, Optional, Tuple

import numpy as np

__all__ = ['MLImagesIndex', 'default_index_dir', 'list_fingerprint']

INDEX_FORMAT = 'hvp_mtl.ml_images_index'
INDEX_VERSION = 1
ARRAY_NAMES = ('path_offsets', 'paths', 'label_offsets', 'class_ids',
               'confidences', 'line_numbers')


def default_index_dir(list_file: str) -> str:
    """The index directory that belongs to ``list_file``: ``<list>.index``."""
    return str(list_file) + '.index'


def list_fingerprint(list_file: str, probe_bytes: int = 1 << 20) -> Dict:
    """Size plus a hash of the first and last MiB: cheap and copy-proof."""
    size = osp.getsize(list_file)
    digest = hashlib.sha1()
    with open(list_file, 'rb') as f:
        digest.update(f.read(probe_bytes))
        if size > probe_bytes:
            f.seek(max(size - probe_bytes, probe_bytes))
            digest.update(f.read(probe_bytes))
    return dict(size=size, sha1_head_tail=digest.hexdigest())


def class_id_dtype(num_classes: Optional[int]) -> np.dtype:
    return np.dtype(np.uint16 if num_classes and num_classes <= 65536 else
                    np.int32)


class MLImagesIndex:
    """Random access to the samples of an ML-Images list.

    Args:
        arrays (dict[str, np.ndarray]): The arrays listed in the module doc.
        meta (dict): The metadata (see :func:`build_index`).
        index_dir (str, optional): Directory the arrays are mapped from; set
            for memory-mapped indexes so that pickling (``spawn`` workers)
            sends the path, not the data.
        rejected (list, optional): Rejected lines of the last build.
    """

    def __init__(self, arrays, meta, index_dir=None, rejected=None):
        self.arrays, self.meta, self.index_dir = arrays, meta, index_dir
        self.rejected = rejected or []

    @classmethod
    def open(cls, index_dir: str) -> 'MLImagesIndex':
        """Memory-map an index directory written by :func:`build_index`."""
        with open(osp.join(index_dir, 'meta.json')) as f:
            meta = json.load(f)
        if meta.get('format') != INDEX_FORMAT or meta.get('version') != INDEX_VERSION:
            raise ValueError(f'{index_dir} is not a version-{INDEX_VERSION} '
                             f'{INDEX_FORMAT} directory')
        arrays = {}
        for name in ARRAY_NAMES:
            path = osp.join(index_dir, f'{name}.bin')
            dtype = np.dtype(meta['dtypes'][name])
            if osp.getsize(path) == 0:
                arrays[name] = np.zeros(0, dtype)
            else:
                arrays[name] = np.memmap(path, dtype=dtype, mode='r')
        return cls(arrays, meta, index_dir=index_dir)

    def is_fresh_for(self, list_file: str) -> bool:
        """Whether the index was built from the current content of a list."""
        source = self.meta.get('source', {})
        current = list_fingerprint(list_file)
        return all(source.get(k) == v for k, v in current.items())

    def __len__(self) -> int:
        return int(self.meta['num_samples'])

    def raw_path(self, i: int) -> str:
        """The first field of sample ``i`` (ImageNet-id path or URL)."""
        offsets = self.arrays['path_offsets']
        return self.arrays['paths'][offsets[i]:offsets[i + 1]].tobytes().decode(
            'utf-8', errors='surrogateescape')

    def labels(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(class_ids int64 [L], confidences float32 [L])`` of sample i."""
        offsets = self.arrays['label_offsets']
        start, end = offsets[i], offsets[i + 1]
        return (np.array(self.arrays['class_ids'][start:end], np.int64),
                np.array(self.arrays['confidences'][start:end], np.float32))

    def line_number(self, i: int) -> int:
        """1-based line of sample ``i`` in the list it was built from."""
        return int(self.arrays['line_numbers'][i])

    def __getstate__(self):
        state = self.__dict__.copy()
        if self.index_dir is not None:
            state['arrays'] = None  # re-mapped on unpickle, never copied
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.arrays is None:
            self.arrays = MLImagesIndex.open(self.index_dir).arrays
