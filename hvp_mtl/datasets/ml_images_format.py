"""The Tencent ML-Images text formats: image lists and the class dictionary.

An image list has one image per line: an ImageNet-id path
(``n04310904/n04310904_8388.JPEG``) or a URL, then whitespace- or
tab-separated ``class:confidence`` pairs (class index from 0, confidence in
[0, 1])::

    n04310904/n04310904_8388.JPEG   2367:1  2172:1  1831:1  865:1   2:1
    https://c2.staticflickr.com/4/3035/3033882900_a9a4263c55_o.jpg\t1053:0.8\t1193:0.8

The dictionary ``dictionary_and_semantic_hierarchy.txt`` is tab-separated: a
header line, then ``index  wordnet_id  parent_index(es)  name`` (parent ``-1``
for a root; several parents may be comma-separated; the name may contain
commas and spaces). A variant without the index column is also accepted.

This module holds the *reference* line parser, used for small lists, for
error messages and as the ground truth the vectorised index builder
(:mod:`.ml_images_index`) is tested against.
"""
import os.path as osp
import re
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

__all__ = [
    'MLImagesFormatError', 'ClassEntry', 'parse_list_line', 'read_dictionary',
    'map_image_path', 'escapes_root', 'PATH_MAPPING_RULES'
]

# Fields are separated by runs of spaces, tabs or other ASCII control bytes
# (the same rule as the vectorised parser, which tests ``byte <= 0x20``).
_SEPARATORS_RE = re.compile(r'[\x00-\x20]+')
_CLASS_RE = re.compile(r'^[0-9]+$')
_CONF_RE = re.compile(r'^(?:[0-9]+\.?[0-9]*|\.[0-9]+)$')
PATH_MAPPING_RULES = ('auto', 'relative', 'basename')


class MLImagesFormatError(ValueError):
    """A line of an ML-Images list or dictionary that cannot be accepted.

    The message always names the file, the 1-based line number and the line.
    """

    def __init__(self, file: str, lineno: int, line: str, reason: str):
        self.file, self.lineno, self.line, self.reason = (file, lineno, line,
                                                          reason)
        shown = line if len(line) <= 300 else line[:300] + '...'
        super().__init__(f'{file}:{lineno}: {reason}\n    line: {shown!r}')

    def __reduce__(self):  # picklable across index-builder processes
        return type(self), (self.file, self.lineno, self.line, self.reason)

    def moved(self, line_offset: int) -> 'MLImagesFormatError':
        """The same error with its line number shifted by ``line_offset``."""
        return type(self)(self.file, self.lineno + line_offset, self.line,
                          self.reason)


class ClassEntry(NamedTuple):
    """One class of the dictionary: index, WordNet id, parents and name."""
    index: int
    wnid: str
    parents: Tuple[int, ...]
    name: str


def _check_label(token: str, num_classes: Optional[int]) -> Tuple[int, float]:
    """Parse ``'cls:conf'``; return ``(cls, conf)`` or raise ``ValueError``."""
    parts = token.split(':')
    if len(parts) != 2:
        raise ValueError(f'label {token!r} is not of the form class:confidence')
    cls_text, conf_text = parts
    if not _CLASS_RE.match(cls_text):
        raise ValueError(f'class id {cls_text!r} in {token!r} is not a '
                         'non-negative integer')
    cls = int(cls_text)
    if len(cls_text) > 9 or (num_classes is not None and cls >= num_classes):
        raise ValueError(f'class id {cls} in {token!r} is outside '
                         f'[0, {num_classes})')
    if not _CONF_RE.match(conf_text) or len(conf_text) > 15:
        raise ValueError(f'confidence {conf_text!r} in {token!r} is not a '
                         'decimal number')
    conf = float(conf_text)
    if not 0.0 <= conf <= 1.0:
        raise ValueError(f'confidence {conf_text} in {token!r} is outside '
                         '[0, 1]')
    return cls, conf


def parse_list_line(line: str,
                    num_classes: Optional[int] = None,
                    file: str = '<list>',
                    lineno: int = 0):
    """Parse one line of an ML-Images list.

    Args:
        line (str): The text of the line, with or without its newline.
        num_classes (int, optional): Class ids must lie in
            ``[0, num_classes)``. Defaults to None (no upper bound).
        file (str): File name used in error messages.
        lineno (int): 1-based line number used in error messages.

    Returns:
        tuple | None: ``None`` for a blank line, else ``(path, class_ids,
        confidences)`` with ``class_ids`` int64 [L] and ``confidences``
        float32 [L] in file order.

    Raises:
        MLImagesFormatError: for a line without labels, a malformed label, a
            class id outside ``[0, num_classes)`` or a confidence outside
            ``[0, 1]``.
    """
    tokens = [token for token in _SEPARATORS_RE.split(line) if token]
    if not tokens:
        return None
    if len(tokens) == 1:
        raise MLImagesFormatError(
            file, lineno, line.rstrip('\r\n'),
            'no class:confidence labels after the image path (fields must '
            'be separated by spaces or tabs)')
    class_ids, confidences = [], []
    for token in tokens[1:]:
        try:
            cls, conf = _check_label(token, num_classes)
        except ValueError as err:
            raise MLImagesFormatError(file, lineno, line.rstrip('\r\n'),
                                      str(err)) from None
        class_ids.append(cls)
        confidences.append(conf)
    return (tokens[0], np.asarray(class_ids, dtype=np.int64),
            np.asarray(confidences, dtype=np.float32))


def read_dictionary(path: str) -> List[ClassEntry]:
    """Read ``dictionary_and_semantic_hierarchy.txt``.

    Args:
        path (str): A local file path.

    Returns:
        list[ClassEntry]: Classes in index order; ``entries[i].index == i``.

    Raises:
        MLImagesFormatError: for a malformed row, a non-consecutive index or a
            parent index that does not name a class.
    """
    entries: List[ClassEntry] = []
    entry_lines: List[Tuple[int, str]] = []
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split('\t')
        if len(fields) >= 4 and fields[0].strip().lstrip('-').isdigit():
            index_text, wnid, parent_text = fields[0], fields[1], fields[2]
            name = '\t'.join(fields[3:])
        elif len(fields) == 3 and fields[1].strip().lstrip('-').isdigit():
            index_text, (wnid, parent_text, name) = str(len(entries)), fields
        elif not entries and lineno == 1:
            continue  # the header row
        else:
            raise MLImagesFormatError(
                path, lineno, line, 'expected tab-separated "index  wnid  '
                'parent_index  name" (or "wnid  parent_index  name")')
        try:
            index = int(index_text)
            parents = tuple(
                int(p) for p in parent_text.replace(' ', '').split(',')
                if p != '-1')
        except ValueError:
            raise MLImagesFormatError(path, lineno, line,
                                      'index or parent index is not an '
                                      'integer') from None
        if index != len(entries):
            raise MLImagesFormatError(
                path, lineno, line, f'class index {index} is not consecutive '
                f'(expected {len(entries)})')
        entries.append(ClassEntry(index, wnid.strip(), parents, name.strip()))
        entry_lines.append((lineno, line))
    for entry, (lineno, line) in zip(entries, entry_lines):
        for parent in entry.parents:
            if not 0 <= parent < len(entries):
                raise MLImagesFormatError(
                    path, lineno, line,
                    f'parent index {parent} of class {entry.index} does not '
                    f'name a class in [0, {len(entries)})')
    if not entries:
        raise MLImagesFormatError(path, 1, '', 'the dictionary has no classes')
    return entries


def escapes_root(relative: str) -> bool:
    """Whether a mapped list path is absolute or climbs out with ``..``."""
    if osp.isabs(relative) or relative.startswith(('/', '\\')):
        return True
    parts = osp.normpath(relative.replace('\\', '/')).split('/')
    return parts[0] == '..'


def map_image_path(raw_path: str, rule: str = 'auto') -> str:
    """Map a list entry (ImageNet-id path or URL) to a path below the prefix.

    Rules:

    - ``'relative'``: keep the entry as it is
      (``n01440764/n01440764_10026.JPEG``); an absolute path stays absolute.
    - ``'basename'``: keep only the file name, which is what the official
      download scripts save URL images as (``3033882900_a9a4263c55_o.jpg``).
    - ``'auto'`` (default): ``'basename'`` for entries with a URL scheme
      (``http://``, ``https://``, ...), ``'relative'`` otherwise.

    Args:
        raw_path (str): The first field of a list line.
        rule (str): One of :data:`PATH_MAPPING_RULES`.

    Returns:
        str: The mapped relative path.
    """
    if rule == 'auto':
        rule = 'basename' if '://' in raw_path else 'relative'
    if rule == 'basename':
        return osp.basename(raw_path.split('?', 1)[0].rstrip('/'))
    if rule == 'relative':
        return raw_path
    raise ValueError(f'path_mapping must be one of {PATH_MAPPING_RULES}, '
                     f'got {rule!r}')
