"""Building the ML-Images index (see :mod:`.ml_images_index` for its layout).

The list is cut into ~8 MB byte ranges that end at a newline; ``workers``
processes parse them with the vectorised
:func:`~.ml_images_chunk_parser.parse_list_chunk`. Each worker writes the
bulk arrays of its range to part files; the main process appends them, in
file order, to the index files (a kernel-side ``copy_file_range``) inside a
temporary directory that is renamed into place at the end.
"""
import json
import multiprocessing
import os
import os.path as osp
import shutil
import uuid
from typing import Dict, List, Optional, Tuple

import numpy as np

from .ml_images_chunk_parser import parse_list_chunk
from .ml_images_index import (
    ARRAY_NAMES,
    INDEX_FORMAT,
    INDEX_VERSION,
    MLImagesIndex,
    class_id_dtype,
    default_index_dir,
    list_fingerprint,
)

__all__ = ['build_index']


def _block_ranges(list_file: str, chunk_bytes: int) -> List[Tuple[int, int]]:
    """Byte ranges of about ``chunk_bytes`` that end just after a newline."""
    size, ranges, start = osp.getsize(list_file), [], 0
    with open(list_file, 'rb') as f:
        while start < size:
            end = min(start + chunk_bytes, size)
            while end < size:
                f.seek(end)
                probe = f.read(1 << 16)
                cut = probe.find(b'\n')
                if cut >= 0:
                    end += cut + 1
                    break
                end += len(probe)
            ranges.append((start, min(end, size)))
            start = end
    return ranges


_BULK = ('path_bytes', 'class_ids', 'confidences')  # written by workers


def _parse_range(task):
    """Worker: parse one byte range; line numbers are local (from 1).

    With a ``part_prefix`` the bulk arrays are written to part files and only
    their paths cross the process boundary (pickling ~100 bytes per line
    through a pipe costs more CPU than parsing them).
    """
    list_file, start, end, num_classes, part_prefix = task
    with open(list_file, 'rb') as f:
        f.seek(start)
        data = f.read(end - start)
    chunk = parse_list_chunk(data, 1, num_classes, list_file, skip_invalid=True)
    chunk = chunk._replace(
        class_ids=chunk.class_ids.astype(class_id_dtype(num_classes)),
        line_numbers=chunk.line_numbers.astype(np.uint32),
        path_lengths=chunk.path_lengths.astype(np.int32),
        label_counts=chunk.label_counts.astype(np.int32))
    if part_prefix is None:
        return chunk
    parts = {}
    for field in _BULK:
        parts[field] = f'{part_prefix}.{field}'
        getattr(chunk, field).tofile(parts[field])
    return chunk._replace(**parts)


def _iter_parsed(list_file, num_classes, chunk_bytes, workers, progress,
                 part_dir=None):
    """Yield parsed blocks in file order, parsed by ``workers`` processes."""
    ranges = _block_ranges(list_file, chunk_bytes)
    parallel = workers > 1 and len(ranges) > 1
    tasks = [(list_file, start, end, num_classes,
              osp.join(part_dir, f'part-{i:06d}') if parallel and part_dir else None)
             for i, (start, end) in enumerate(ranges)]
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=osp.getsize(list_file), unit='B', unit_scale=True,
                       desc=f'indexing {osp.basename(list_file)}')
        except ImportError:  # pragma: no cover - tqdm is a test requirement
            bar = None
    pool = None
    if parallel:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context(
            'fork' if 'fork' in methods else None)
        pool = context.Pool(min(workers, len(tasks)))
        results = pool.imap(_parse_range, tasks)
    else:
        results = map(_parse_range, tasks)
    try:
        for (start, end), chunk in zip(ranges, results):
            if bar is not None:
                bar.update(end - start)
            yield chunk
    finally:
        if pool is not None:
            pool.terminate()
        if bar is not None:
            bar.close()


class _ArraySink:
    """Appends parsed chunks to raw files (``out_dir``) or to memory."""

    def __init__(self, out_dir: Optional[str], cls_dtype: np.dtype):
        self.out_dir, self.cls_dtype = out_dir, cls_dtype
        self.parts = {name: [] for name in ARRAY_NAMES}
        self.files = {}
        if out_dir is not None:
            self.files = {name: open(osp.join(out_dir, f'{name}.bin'), 'wb',
                                     buffering=0) for name in ARRAY_NAMES}
        self.num_paths_bytes = self.num_labels = self.num_samples = 0
        self._append('path_offsets', np.zeros(1, np.int64))
        self._append('label_offsets', np.zeros(1, np.int64))

    def _append(self, name, array):
        if isinstance(array, str):  # a worker's part file: kernel-side copy
            with open(array, 'rb') as part:
                remaining = os.fstat(part.fileno()).st_size
                while remaining > 0:
                    remaining -= os.copy_file_range(part.fileno(),
                                                    self.files[name].fileno(),
                                                    remaining)
            os.remove(array)
        elif self.files:
            self.files[name].write(np.ascontiguousarray(array).data)
        else:
            self.parts[name].append(array)

    def add(self, chunk):
        self._append('paths', chunk.path_bytes)
        self._append('path_offsets',
                     self.num_paths_bytes + np.cumsum(chunk.path_lengths))
        self._append('label_offsets',
                     self.num_labels + np.cumsum(chunk.label_counts))
        self._append('class_ids', chunk.class_ids if isinstance(chunk.class_ids, str)
                     else chunk.class_ids.astype(self.cls_dtype, copy=False))
        self._append('confidences', chunk.confidences)
        self._append('line_numbers', chunk.line_numbers.astype(np.uint32, copy=False))
        self.num_paths_bytes += int(np.sum(chunk.path_lengths, dtype=np.int64))
        self.num_labels += int(np.sum(chunk.label_counts, dtype=np.int64))
        self.num_samples += len(chunk.path_lengths)

    def close(self) -> Optional[Dict[str, np.ndarray]]:
        for f in self.files.values():
            f.close()
        if self.files:
            return None
        return {name: np.concatenate(parts) for name, parts in self.parts.items()}


def build_index(list_file: str,
                out_dir: Optional[str] = None,
                num_classes: Optional[int] = 11166,
                skip_invalid: bool = False,
                in_memory: bool = False,
                chunk_bytes: int = 8 << 20,
                workers: int = 1,
                progress: bool = False):
    """Parse an ML-Images list into the compact index.

    Args:
        list_file (str): The list (local file).
        out_dir (str, optional): Index directory. Defaults to
            :func:`default_index_dir`. Written to a temporary sibling and
            renamed into place, so readers never see half an index.
        num_classes (int, optional): Class ids must be in ``[0, C)``.
        skip_invalid (bool): Record rejected lines (``rejected.txt`` and
            ``meta['num_rejected']``) instead of raising on the first.
        in_memory (bool): Return the index without writing files.
        chunk_bytes (int): Bytes parsed per vectorised block.
        workers (int): Processes that parse blocks in parallel.
        progress (bool): Show a progress bar over the bytes read.

    Returns:
        MLImagesIndex: The index (memory-mapped unless ``in_memory``).

    Raises:
        MLImagesFormatError: on the first invalid line unless
            ``skip_invalid``; it names the file, the line number and the line.
    """
    list_file = str(list_file)
    out_dir = out_dir or default_index_dir(list_file)
    work_dir = None
    if not in_memory:
        work_dir = f'{out_dir.rstrip(os.sep)}.tmp-{uuid.uuid4().hex[:8]}'
        os.makedirs(work_dir)
    cls_dtype = class_id_dtype(num_classes)
    try:
        sink = _ArraySink(work_dir, cls_dtype)
        rejected, num_lines, num_blank = [], 0, 0
        max_class_id = -1
        for chunk in _iter_parsed(list_file, num_classes, chunk_bytes, workers,
                                  progress, part_dir=work_dir):
            errors = [err.moved(num_lines) for err in chunk.rejected]
            if errors and not skip_invalid:
                raise errors[0]
            rejected.extend(errors)
            sink.add(chunk._replace(
                line_numbers=chunk.line_numbers.astype(np.int64) + num_lines))
            num_lines += chunk.num_lines
            num_blank += chunk.num_blank
            max_class_id = max(max_class_id, chunk.max_class_id)
        arrays = sink.close()
        meta = dict(
            format=INDEX_FORMAT, version=INDEX_VERSION,
            source=dict(file=osp.abspath(list_file), **list_fingerprint(list_file)),
            num_samples=sink.num_samples, num_labels=sink.num_labels,
            num_path_bytes=sink.num_paths_bytes, num_classes=num_classes,
            max_class_id=max_class_id, num_lines=num_lines,
            num_blank_lines=num_blank, num_rejected=len(rejected),
            dtypes=dict(path_offsets='int64', paths='uint8',
                        label_offsets='int64', class_ids=cls_dtype.name,
                        confidences='float32', line_numbers='uint32'))
        if in_memory:
            return MLImagesIndex(arrays, meta, rejected=rejected)
        with open(osp.join(work_dir, 'rejected.txt'), 'w', encoding='utf-8') as f:
            f.writelines(f'{err}\n' for err in rejected)
        with open(osp.join(work_dir, 'meta.json'), 'w') as f:
            json.dump(meta, f, indent=1)
        _replace_dir(work_dir, out_dir)
        work_dir = None
    finally:
        if work_dir is not None and osp.isdir(work_dir):
            shutil.rmtree(work_dir, ignore_errors=True)
    index = MLImagesIndex.open(out_dir)
    index.rejected = rejected
    return index


def _replace_dir(src: str, dst: str):
    """Atomically move directory ``src`` to ``dst`` (replacing ``dst``)."""
    old = None
    if osp.exists(dst):
        old = f'{dst.rstrip(os.sep)}.old-{uuid.uuid4().hex[:8]}'
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


