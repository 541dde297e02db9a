"""Random access to images stored in uncompressed tar shards.

17.6M small files are slow on most shared file systems; the usual remedy is a
few thousand ~1 GB tar shards. Sequential shard readers (webdataset) break
the distributed sampler and exact resume, so here the shards are indexed
once (member name -> shard, byte offset, size) and read by offset:

1. ``python tools/dataset_converters/build_tar_shard_index.py SHARD...
   --out shards.tarindex`` writes the index (raw numpy arrays + meta.json).
2. The image loader reads through the mmengine file backend ``'tar_shards'``
   registered here; nothing else changes::

       dict(type='LoadImageFromFile',
            backend_args=dict(backend='tar_shards',
                              index='data/ml-images/train.tarindex',
                              root='data/ml-images/images'))

   ``root`` is stripped from the requested path (``data_root/data_prefix``
   of the dataset) to get the member name.

Member lookup hashes the name (64-bit BLAKE2b), binary-searches the sorted
hash array and checks the stored name, so the index is opened with
``np.memmap`` like the list index and is shared by all loader workers.

File descriptors: each process keeps at most ``max_open_shards`` shards open
(least recently used closed first; default 64), so ~1,800 shards x 8 loader
workers stay far below ``ulimit -n``. Descriptors inherited from the parent
are closed in a forked worker. A shard that is missing, truncated or cannot
be opened or read (``EMFILE``, ``EIO``, ...) raises
:class:`~.bad_sample_tracker.DataEnvironmentError` naming the shard: that is
the storage failing, not a bad image, and it is never counted as one. A
member absent from the index is a sample's own problem (``FileNotFoundError``,
counted like a missing image file).
"""
import errno
import hashlib
import json
import os
import os.path as osp
import tarfile
from collections import OrderedDict
from typing import List, Mapping, Optional, Sequence

import numpy as np
from mmengine.fileio import register_backend
from mmengine.fileio.backends import BaseStorageBackend

from ..utils.atomic_io import atomic_path, atomic_write
from .bad_sample_tracker import DataEnvironmentError

__all__ = ['build_tar_index', 'TarShardIndex', 'TarShardBackend', 'name_hash']

_ARRAYS = dict(hashes='uint64', shard_ids='uint32', offsets='int64',
               sizes='int64', name_offsets='int64', names='uint8')


def name_hash(name: str) -> int:
    """64-bit hash of a member name."""
    return int.from_bytes(hashlib.blake2b(name.encode('utf-8'), digest_size=8).digest(),
                          'little')


def build_tar_index(shards: Sequence[str], out_dir: str,
                    image_sizes: Optional[Mapping[str, Sequence[int]]] = None
                    ) -> 'TarShardIndex':
    """Scan tar shards and write their member index to ``out_dir``.

    Args:
        shards (Sequence[str]): Uncompressed ``.tar`` files.
        out_dir (str): Index directory; shard paths are stored relative to it.
        image_sizes (Mapping, optional): ``{member: (original h, original w,
            stored h, stored w)}`` (the packer's manifests), kept in
            ``image_sizes.bin`` for :meth:`TarShardIndex.image_size`.

    Returns:
        TarShardIndex: The opened index.

    Raises:
        ValueError: for a compressed shard or a member name present twice.
    """
    names, hashes, shard_ids, offsets, sizes = [], [], [], [], []
    for shard_id, shard in enumerate(shards):
        with tarfile.open(shard, mode='r:') as tar:  # 'r:' refuses compression
            for member in tar:
                if not member.isfile():
                    continue
                names.append(member.name)
                hashes.append(name_hash(member.name))
                shard_ids.append(shard_id)
                offsets.append(member.offset_data)
                sizes.append(member.size)
    order = np.argsort(np.array(hashes, dtype=np.uint64), kind='stable')
    sorted_names = [names[i] for i in order]
    arrays = dict(hashes=np.array(hashes, np.uint64)[order],
                  shard_ids=np.array(shard_ids, np.uint32)[order],
                  offsets=np.array(offsets, np.int64)[order],
                  sizes=np.array(sizes, np.int64)[order])
    same_hash = np.flatnonzero(arrays['hashes'][1:] == arrays['hashes'][:-1])
    for i in same_hash:
        if sorted_names[i] == sorted_names[i + 1]:
            raise ValueError(f'member {sorted_names[i]!r} is in '
                             f'{shards[arrays["shard_ids"][i]]} and '
                             f'{shards[arrays["shard_ids"][i + 1]]}')
    encoded = [n.encode('utf-8') for n in sorted_names]
    arrays['name_offsets'] = np.concatenate(
        ([0], np.cumsum([len(b) for b in encoded]))).astype(np.int64)
    arrays['names'] = np.frombuffer(b''.join(encoded), np.uint8)
    if image_sizes:
        missing = [n for n in sorted_names if n not in image_sizes]
        if missing:
            raise ValueError(f'image_sizes lacks {len(missing)} members, e.g. {missing[0]!r}')
        arrays['image_sizes'] = np.array([image_sizes[n] for n in sorted_names],
                                         np.int32).reshape(-1, 4)
    os.makedirs(out_dir, exist_ok=True)
    for key, array in arrays.items():
        with atomic_path(osp.join(out_dir, f'{key}.bin')) as tmp:
            array.astype(_ARRAYS.get(key, 'int32')).tofile(tmp)
    meta = dict(format='hvp_mtl.tar_shard_index', version=1,
                num_members=len(names), image_sizes='image_sizes' in arrays,
                shards=[osp.relpath(osp.abspath(s), osp.abspath(out_dir))
                        for s in shards])
    with atomic_write(osp.join(out_dir, 'meta.json')) as f:
        json.dump(meta, f, indent=1)
    return TarShardIndex(out_dir)


class TarShardIndex:
    """Memory-mapped member index of a set of tar shards.

    Args:
        index_dir (str): Directory written by :func:`build_tar_index`.
        max_open_shards (int): Shards kept open per process (an LRU).
    """

    def __init__(self, index_dir: str, max_open_shards: int = 64):
        if max_open_shards < 1:
            raise ValueError(f'max_open_shards must be >= 1, got '
                             f'{max_open_shards}')
        self.index_dir = index_dir
        self.max_open_shards = max_open_shards
        with open(osp.join(index_dir, 'meta.json')) as f:
            self.meta = json.load(f)
        self.shards: List[str] = [osp.normpath(osp.join(index_dir, s))
                                  for s in self.meta['shards']]
        self.arrays = {}
        for key, dtype in _ARRAYS.items():
            path = osp.join(index_dir, f'{key}.bin')
            self.arrays[key] = (np.memmap(path, dtype=dtype, mode='r')
                                if osp.getsize(path) else np.zeros(0, dtype))
        if self.meta.get('image_sizes'):
            self.arrays['image_sizes'] = np.memmap(
                osp.join(index_dir, 'image_sizes.bin'), dtype='int32', mode='r').reshape(-1, 4)
        self._fds: 'OrderedDict[int, int]' = OrderedDict()
        self._pid = os.getpid()

    def __getstate__(self):
        state = self.__dict__.copy()
        state['_fds'] = OrderedDict()  # descriptors do not travel
        return state

    @property
    def open_shards(self) -> int:
        """Shards this process holds open now."""
        return len(self._fds) if self._pid == os.getpid() else 0

    def close(self) -> None:
        """Close every shard this process opened."""
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self._fds = OrderedDict()

    def __del__(self):
        try:
            self.close()
        except (OSError, AttributeError, TypeError):
            pass

    def _shard_fd(self, shard_id: int) -> int:
        """The descriptor of shard ``shard_id``, opened through the LRU."""
        if os.getpid() != self._pid:  # a forked worker: drop the parent's
            for fd in self._fds.values():
                os.close(fd)
            self._fds, self._pid = OrderedDict(), os.getpid()
        fd = self._fds.get(shard_id)
        if fd is not None:
            self._fds.move_to_end(shard_id)
            return fd
        while len(self._fds) >= self.max_open_shards:
            os.close(self._fds.popitem(last=False)[1])
        path = self.shards[shard_id]
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, 'O_CLOEXEC', 0))
        except OSError as error:
            hint = (' (the process is out of file descriptors: raise '
                    '`ulimit -n` or lower max_open_shards / num_workers)'
                    if error.errno in (errno.EMFILE, errno.ENFILE) else '')
            raise DataEnvironmentError(
                error.errno, f'cannot open tar shard {path} of index '
                f'{self.index_dir}: {error.strerror}{hint}') from error
        self._fds[shard_id] = fd
        return fd

    def __len__(self) -> int:
        return int(self.meta['num_members'])

    def find(self, name: str) -> Optional[int]:
        """Position of member ``name`` in the index, or None."""
        hashes = self.arrays['hashes']
        key = np.uint64(name_hash(name))
        position = int(np.searchsorted(hashes, key))
        encoded = name.encode('utf-8')
        offsets = self.arrays['name_offsets']
        while position < len(hashes) and hashes[position] == key:
            stored = self.arrays['names'][offsets[position]:offsets[position + 1]]
            if stored.tobytes() == encoded:
                return position
            position += 1
        return None

    def image_size(self, name: str) -> Optional[dict]:
        """``dict(original=(h, w), stored=(h, w))`` of member ``name`` as the
        packer recorded it; None for an index without sizes or an absent name
        ((0, 0) for a member that was not a readable image)."""
        position = self.find(name)
        if position is None or 'image_sizes' not in self.arrays:
            return None
        sizes = [int(v) for v in self.arrays['image_sizes'][position]]
        return dict(original=tuple(sizes[:2]), stored=tuple(sizes[2:]))

    def read(self, name: str) -> bytes:
        """The bytes of member ``name``; ``FileNotFoundError`` if absent."""
        position = self.find(name)
        if position is None:
            raise FileNotFoundError(f'{name!r} is not in the tar shards of '
                                    f'{self.index_dir}')
        shard_id = int(self.arrays['shard_ids'][position])
        path = self.shards[shard_id]
        size = int(self.arrays['sizes'][position])
        try:
            data = os.pread(self._shard_fd(shard_id), size,
                            int(self.arrays['offsets'][position]))
        except DataEnvironmentError:
            raise
        except OSError as error:
            raise DataEnvironmentError(
                error.errno, f'cannot read member {name!r} of tar shard '
                f'{path}: {error.strerror}') from error
        if len(data) != size:
            raise DataEnvironmentError(
                errno.EIO, f'tar shard {path} is truncated at member {name!r} '
                f'(read {len(data)} of {size} bytes); rebuild or re-copy it')
        return data


@register_backend('tar_shards')
class TarShardBackend(BaseStorageBackend):
    """mmengine file backend reading members of indexed tar shards.

    Args:
        index (str): Directory written by :func:`build_tar_index`.
        root (str): Prefix removed from requested paths to get member names.
            Defaults to '' (paths are member names).
        max_open_shards (int): Shards kept open per process. Defaults to 64.
    """

    def __init__(self, index: str, root: str = '', max_open_shards: int = 64):
        self.index = TarShardIndex(index, max_open_shards)
        self.root = root

    def _member(self, filepath) -> str:
        filepath = str(filepath)
        if self.root:
            filepath = osp.relpath(filepath, self.root)
        return filepath.replace(os.sep, '/')

    def get(self, filepath) -> bytes:
        return self.index.read(self._member(filepath))

    def get_text(self, filepath, encoding: str = 'utf-8') -> str:
        return self.get(filepath).decode(encoding)

    def exists(self, filepath) -> bool:
        return self.index.find(self._member(filepath)) is not None

    isfile = exists

    def join_path(self, filepath, *filepaths) -> str:
        return osp.join(filepath, *filepaths)
