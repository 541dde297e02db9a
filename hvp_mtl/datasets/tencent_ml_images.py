"""Tencent ML-Images (17.6M images, 11,166 classes) as an mmpretrain dataset."""
import copy
import logging
import os.path as osp
import time
from typing import List, Optional, Sequence, Union

import numpy as np
from mmengine.fileio import get_local_path, join_path
from mmengine.logging import print_log
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from ..utils.near_names import missing_file_error
from .bad_sample_tracker import (
    BadSampleTracker,
    DataEnvironmentError,
    UndecodableImageError,
    is_environmental_error,
)
from .ml_images_format import escapes_root, map_image_path, read_dictionary
from .ml_images_index import MLImagesIndex, default_index_dir
from .ml_images_index_builder import build_index

__all__ = ['TencentMLImages']

BUILD_INDEX_COMMAND = ('python tools/dataset_converters/build_ml_images_index.py '
                       '{list} --num-classes {num_classes}')


@DATASETS.register_module()
class TencentMLImages(BaseDataset):
    """Multi-label Tencent ML-Images, read lazily from a memory-mapped index.

    Each sample is ``dict(img_path=..., gt_score=float32 [C], sample_idx=...)``
    (:meth:`annotation_line` gives its ``list.txt:LINE``). ``gt_score`` holds
    the annotation confidence of every labelled class (the maximum if a class
    repeats on the line), 0 elsewhere.
    There is no ``gt_label``: multi-hot targets never go through mmpretrain's
    index-label path.

    Annotations are never expanded into Python dicts. The list is read through
    its index (``<ann_file>.index/``, see :mod:`.ml_images_index`), built by
    ``tools/dataset_converters/build_ml_images_index.py``; lists up to
    ``max_inmemory_list_mb`` without an index are parsed in memory at start-up
    (vectorised, a few seconds per million lines); larger ones raise with the
    command that builds the index.

    Images: list entries are mapped to files below ``data_root/data_prefix``
    by ``path_mapping`` (see :func:`~.ml_images_format.map_image_path`:
    ImageNet ids stay relative paths, URLs become their basename). When the
    leading ``Load*`` transform of the pipeline fails (missing file,
    undecodable bytes), the sample is logged, counted and replaced by the next
    index (deterministic); past ``max_bad_fraction`` a
    :class:`~.bad_sample_tracker.TooManyBadSamplesError` stops the run. A
    failure of the environment (``EMFILE``, ``ENOSPC``, ``EIO``, a missing
    tar shard) is not counted: it raises
    :class:`~.bad_sample_tracker.DataEnvironmentError` naming the image and
    list line.

    Args:
        ann_file (str): The list file (``train.txt``), relative to
            ``data_root`` unless absolute.
        data_root (str): Root of ``ann_file``, ``dictionary_file`` and
            ``data_prefix``. Defaults to ''.
        data_prefix (str | dict): Image folder (or ``dict(img_path=...)``).
        dictionary_file (str, optional): ``dictionary_and_semantic_hierarchy
            .txt``; gives ``metainfo['classes']`` and ``num_classes``.
        num_classes (int, optional): Number of classes when no dictionary is
            given (must match it when both are). One of the two is required.
        binarize_threshold (float, optional): If set, ``gt_score`` becomes
            ``(confidence >= threshold)`` as 0/1 floats. Defaults to None
            (soft targets).
        path_mapping (str): ``'auto'``, ``'relative'`` or ``'basename'``.
        index_dir (str, optional): Index directory. Defaults to
            ``<ann_file>.index``.
        max_inmemory_list_mb (float): Largest list parsed in memory when it
            has no (fresh) index. Defaults to 256.
        max_bad_fraction (float): Ceiling on unreadable images, see
            :class:`~.bad_sample_tracker.BadSampleTracker`. Defaults to 0.001.
        allow_paths_outside_root (bool): Accept list entries that are
            absolute or climb out with ``..``. Defaults to False: such an
            entry is refused (a counted, logged bad sample naming the list
            line) instead of reading outside ``data_root/data_prefix``.
        backend_args (dict, optional): mmengine file backend arguments used
            to fetch ``ann_file`` and ``dictionary_file`` and to join image
            paths. The image loader takes its own ``backend_args`` in the
            pipeline, as in every mmpretrain config.
        **kwargs: ``metainfo``, ``pipeline``, ``test_mode``, ``indices``,
            ``lazy_init`` of :class:`mmpretrain.datasets.BaseDataset`.
    """

    METAINFO = dict()

    def __init__(self,
                 ann_file: str,
                 data_root: str = '',
                 data_prefix: Union[str, dict] = '',
                 dictionary_file: Optional[str] = None,
                 num_classes: Optional[int] = None,
                 binarize_threshold: Optional[float] = None,
                 path_mapping: str = 'auto',
                 index_dir: Optional[str] = None,
                 max_inmemory_list_mb: float = 256,
                 max_bad_fraction: float = 0.001,
                 allow_paths_outside_root: bool = False,
                 backend_args: Optional[dict] = None,
                 **kwargs):
        if dictionary_file and data_root and not osp.isabs(dictionary_file):
            dictionary_file = join_path(data_root, dictionary_file)
        self.backend_args = backend_args
        self.class_entries = None
        if dictionary_file:
            if not backend_args and '://' not in dictionary_file and not osp.isfile(
                    dictionary_file):
                raise missing_file_error(dictionary_file, 'class dictionary (dictionary_file)')
            with get_local_path(dictionary_file, backend_args) as local:
                self.class_entries = read_dictionary(local)
            if num_classes not in (None, len(self.class_entries)):
                raise ValueError(f'num_classes={num_classes} but '
                                 f'{dictionary_file} has '
                                 f'{len(self.class_entries)} classes')
            num_classes = len(self.class_entries)
        if num_classes is None:
            raise ValueError('TencentMLImages needs dictionary_file or '
                             'num_classes')
        self.num_classes = int(num_classes)
        self.binarize_threshold = binarize_threshold
        map_image_path('x', path_mapping)  # validates the rule
        self.path_mapping = path_mapping
        self.index_dir = index_dir
        self.max_inmemory_list_mb = max_inmemory_list_mb
        self.max_bad_fraction = max_bad_fraction
        self.allow_paths_outside_root = allow_paths_outside_root
        self._index: Optional[MLImagesIndex] = None
        self._subset: Optional[np.ndarray] = None
        self._tracker: Optional[BadSampleTracker] = None
        metainfo = dict(kwargs.pop('metainfo', None) or {})
        if self.class_entries is not None:
            metainfo.setdefault('classes',
                                tuple(e.name for e in self.class_entries))
        else:
            metainfo.setdefault('classes',
                                tuple(str(i) for i in range(self.num_classes)))
        kwargs['serialize_data'] = False  # nothing to serialize: lazy index
        super().__init__(ann_file=ann_file, data_root=data_root,
                         data_prefix=data_prefix, metainfo=metainfo, **kwargs)

    # ------------------------------------------------------------ index
    def _open_index(self) -> MLImagesIndex:
        """Open the fresh index, parse a small list in memory, or raise."""
        index_dir = self.index_dir or default_index_dir(self.ann_file)
        command = BUILD_INDEX_COMMAND.format(list=self.ann_file,
                                             num_classes=self.num_classes)
        with get_local_path(self.ann_file, self.backend_args) as list_file:
            stale = ''
            if osp.isdir(index_dir):
                index = MLImagesIndex.open(index_dir)
                if not osp.exists(list_file):  # only the index was shipped
                    print_log(f'{self.ann_file} is absent; using its index '
                              f'{index_dir} as is', logger='current',
                              level=logging.WARNING)
                    return index
                if index.is_fresh_for(list_file):
                    return index
                stale = f'The index {index_dir} was built from another version of the list. '
            elif not osp.exists(list_file):
                raise missing_file_error(self.ann_file, 'list file (ann_file)')
            size_mb = osp.getsize(list_file) / 2**20
            if size_mb > self.max_inmemory_list_mb:
                raise FileNotFoundError(
                    f'{stale}{self.ann_file} ({size_mb:.0f} MB) has no usable '
                    f'index and is larger than max_inmemory_list_mb='
                    f'{self.max_inmemory_list_mb}. Build it once with:\n  '
                    f'{command}' + (f' --out {index_dir}' if self.index_dir else ''))
            start = time.perf_counter()
            index = build_index(list_file, num_classes=self.num_classes,
                                in_memory=True)
        print_log(f'{stale}Parsed {self.ann_file} in memory: {len(index)} '
                  f'images in {time.perf_counter() - start:.1f}s (for large '
                  f'lists build the index once: {command})', logger='current')
        return index

    def full_init(self):
        """Open the index (no per-sample Python objects are created)."""
        if self._fully_initialized:
            return
        self._index = self._open_index()
        meta = self._index.meta
        if meta['max_class_id'] >= self.num_classes:
            raise ValueError(f'{self.ann_file}: the index holds class id '
                             f'{meta["max_class_id"]}, outside [0, '
                             f'{self.num_classes})')
        if meta.get('num_rejected'):
            print_log(f'{self.ann_file}: {meta["num_rejected"]} lines were '
                      f'rejected when the index was built (listed in '
                      f'{self._index.index_dir}/rejected.txt)',
                      logger='current', level=logging.WARNING)
        if self._indices is not None:
            self._subset = self._subset_positions(self._indices, len(self._index))
        self._fully_initialized = True

    @staticmethod
    def _subset_positions(indices, total) -> np.ndarray:
        if isinstance(indices, int):
            return (np.arange(min(indices, total)) if indices >= 0 else
                    np.arange(max(total + indices, 0), total))
        return np.asarray(indices, dtype=np.int64)

    def load_data_list(self) -> List[dict]:
        """Not used: samples are read lazily from the index."""
        return []

    def get_subset_(self, indices: Union[Sequence[int], int]) -> None:
        """Restrict the dataset in place to ``indices`` (positions)."""
        self.full_init()
        base = self._subset if self._subset is not None else np.arange(len(self._index))
        self._subset = base[self._subset_positions(indices, len(base))]

    def get_subset(self, indices: Union[Sequence[int], int]) -> 'TencentMLImages':
        """A copy restricted to ``indices``; shares the index arrays."""
        other = copy.copy(self)
        other._tracker = None
        other.get_subset_(indices)
        return other

    def __len__(self) -> int:
        self.full_init()
        return len(self._subset) if self._subset is not None else len(self._index)

    def _source_index(self, idx: int) -> int:
        if idx < 0:
            idx += len(self)
        return int(self._subset[idx]) if self._subset is not None else idx

    def get_cat_ids(self, idx: int) -> List[int]:
        """Class ids annotated for sample ``idx`` (for class-aware samplers)."""
        self.full_init()
        return self._index.labels(self._source_index(idx))[0].tolist()

    def get_data_info(self, idx: int) -> dict:
        """The annotation of sample ``idx``, built from the index on demand."""
        self.full_init()
        source = self._source_index(idx)
        class_ids, confidences = self._index.labels(source)
        gt_score = np.zeros(self.num_classes, dtype=np.float32)
        np.maximum.at(gt_score, class_ids, confidences)
        if self.binarize_threshold is not None:
            gt_score = (gt_score >= self.binarize_threshold).astype(np.float32)
        relative = map_image_path(self._index.raw_path(source), self.path_mapping)
        if not self.allow_paths_outside_root and escapes_root(relative):
            raise ValueError(
                f'{self.annotation_line(idx)}: image path {relative!r} is '
                'absolute or leaves data_root/data_prefix; set '
                'allow_paths_outside_root=True to accept such entries')
        prefix = self.data_prefix.get('img_path', '')
        img_path = (join_path(prefix, relative, backend_args=self.backend_args)
                    if prefix else relative)
        return dict(img_path=img_path, gt_score=gt_score,
                    sample_idx=idx if idx >= 0 else idx + len(self))

    def annotation_line(self, idx: int) -> str:
        """``'list.txt:LINE'`` of sample ``idx`` (read only when needed, so
        that a sample touches as few index pages as possible)."""
        self.full_init()
        return f'{self.ann_file}:{self._index.line_number(self._source_index(idx))}'

    # ------------------------------------------------------- robust load
    @property
    def bad_sample_tracker(self) -> BadSampleTracker:
        """Failure counters of *this process* (see the tracker's doc)."""
        if self._tracker is None:
            self._tracker = BadSampleTracker(len(self), self.max_bad_fraction,
                                             name=type(self).__name__)
        return self._tracker

    def _split_pipeline(self):
        """(leading ``Load*`` transforms, the remaining transforms)."""
        transforms = self.pipeline.transforms
        n = 0
        while n < len(transforms) and type(transforms[n]).__name__.startswith('Load'):
            n += 1
        return transforms[:n], transforms[n:]

    def prepare_data(self, idx: int):
        """Load sample ``idx`` or, if its image is unreadable, the next one."""
        load_stage, augment_stage = self._split_pipeline()
        tracker = self.bad_sample_tracker
        for _ in range(len(self)):
            tracker.record_fetch()
            data = {}
            try:
                data = self.get_data_info(idx)
                for transform in load_stage:
                    data = transform(data)
                    if data is None:
                        raise OSError('the loader returned None')
            except Exception as error:  # a failure of this sample's image
                where = f'{data.get("img_path")} ({self.annotation_line(idx)})'
                if is_environmental_error(error):
                    raise DataEnvironmentError(
                        getattr(error, 'errno', None),
                        f'{type(self).__name__}: loading {where} failed '
                        f'because of the environment, not the image: '
                        f'{error}. Not counted as a bad sample; fix the '
                        'storage or limits and resume.') from error
                tracker.record_failure(idx, where, error)
                idx = (idx + 1) % len(self)
                continue
            try:
                for transform in augment_stage:
                    data = transform(data)
                    if data is None:
                        return None
            except UndecodableImageError as error:  # decoded late (LoadImageBytes)
                tracker.record_failure(idx, f'{data.get("img_path")} '
                                       f'({self.annotation_line(idx)})', error)
                idx = (idx + 1) % len(self)
                continue
            return data
        raise RuntimeError(f'{self.ann_file}: no sample could be loaded')

    def __getitem__(self, idx: int) -> dict:
        self.full_init()
        data = self.prepare_data(idx)
        if data is None:  # a random transform dropped the sample
            if self.test_mode:
                raise RuntimeError('The test-time pipeline returned None for '
                                   f'sample {idx}')
            return super().__getitem__(idx)
        return data

    def extra_repr(self) -> List[str]:
        body = super().extra_repr()
        body.append(f'Number of classes: \t{self.num_classes}')
        if self.binarize_threshold is not None:
            body.append(f'Binarize threshold: \t{self.binarize_threshold}')
        return body
