"""Vectorised parsing of a block of ML-Images list lines.

Python-level parsing costs about 2 µs per label; the full list has 17.6M lines
and 153M labels. :func:`parse_list_chunk` instead parses a block of whole lines
with a fixed number of numpy passes over its bytes: tokens are found from the
separator mask, class ids and confidences are decoded digit position by digit
position (at most ~10 passes over the label arrays), and the path bytes are
gathered with one boolean mask. Lines it rejects are re-parsed by the
reference parser :func:`~.ml_images_format.parse_list_line` to produce the
error message, so both parsers always agree on what is valid.

Confidences are decoded exactly: ``mantissa / 10**fraction_digits`` with an
integer mantissa is a correctly rounded division, i.e. the same double as
``float(text)``.
"""
from typing import List, NamedTuple, Optional

import numpy as np

from .ml_images_format import MLImagesFormatError, parse_list_line

__all__ = ['ParsedChunk', 'parse_list_chunk']

_NEWLINE, _COLON, _DOT, _ZERO = 10, 58, 46, 48


class ParsedChunk(NamedTuple):
    """Arrays of the accepted lines of one block (all in file order).

    Attributes:
        path_bytes (np.ndarray): uint8 [P], the paths concatenated.
        path_lengths (np.ndarray): int64 [N], bytes per path.
        label_counts (np.ndarray): int64 [N], labels per line.
        class_ids (np.ndarray): int32 [M].
        confidences (np.ndarray): float32 [M].
        line_numbers (np.ndarray): int64 [N], 1-based line in the file.
        num_lines (int): Lines in the block, blank and rejected included.
        num_blank (int): Blank lines (ignored, not samples).
        max_class_id (int): Largest accepted class id (-1 if none).
        rejected (list[MLImagesFormatError]): Rejected lines (only when
            ``skip_invalid=True``; otherwise the first one is raised).
    """
    path_bytes: np.ndarray
    path_lengths: np.ndarray
    label_counts: np.ndarray
    class_ids: np.ndarray
    confidences: np.ndarray
    line_numbers: np.ndarray
    num_lines: int
    num_blank: int
    max_class_id: int
    rejected: List[MLImagesFormatError]


_PAD = 32  # bytes of newline padding so that look-ahead never leaves ``buf``


def _decode_class_ids(buf, label_start, ok):
    """Decode the leading digits of each label and check the colon after them.

    Args:
        buf (np.ndarray): uint8 bytes of the block, newline-padded.
        label_start (np.ndarray): int64 [M] first byte of each label.
        ok (np.ndarray): bool [M], cleared in place for malformed labels.

    Returns:
        tuple: ``(class_ids int32 [M], colon int64 [M])``.
    """
    class_ids = np.zeros(len(label_start), dtype=np.int32)
    num_digits = np.zeros(len(label_start), dtype=np.int64)
    in_digits = np.ones(len(label_start), dtype=bool)
    for k in range(10):  # at most 9 digits (a 10th leaves in_digits set)
        digit = buf[label_start + k] - np.uint8(_ZERO)  # wraps for non-digits
        in_digits &= digit < 10
        if not in_digits.any():
            break
        class_ids = np.where(in_digits, class_ids * 10 + digit, class_ids)
        num_digits += in_digits
    colon = label_start + num_digits
    ok &= (num_digits >= 1) & ~in_digits & (buf[colon] == _COLON)
    return class_ids, colon


def _decode_confidences(buf, colon, label_end, ok):
    """Decode the decimals in ``(colon, label_end)``; update ``ok``."""
    length = np.where(ok, label_end - colon - 1, 0)
    ok &= (length >= 1) & (length <= 15)
    first = colon + 1
    mantissa = np.zeros(len(colon), dtype=np.int64)
    fraction_digits = np.zeros(len(colon), dtype=np.int64)
    num_dots = np.zeros(len(colon), dtype=np.int64)
    bad_byte = np.zeros(len(colon), dtype=bool)
    for k in range(int(min(length.max(initial=0), 15))):
        active = k < length
        byte = buf[first + k]
        digit = byte - np.uint8(_ZERO)
        is_digit = (digit < 10) & active
        is_dot = (byte == _DOT) & active
        bad_byte |= active & ~(is_digit | is_dot)
        mantissa = np.where(is_digit, mantissa * 10 + digit, mantissa)
        fraction_digits += is_digit & (num_dots > 0)
        num_dots += is_dot
    # one dot at most, and at least one digit ('.' alone is not a number)
    ok &= ~bad_byte & (num_dots <= 1) & (length > num_dots)
    return mantissa / np.power(10.0, fraction_digits)


def parse_list_chunk(data: bytes,
                     first_lineno: int = 1,
                     num_classes: Optional[int] = None,
                     file: str = '<list>',
                     skip_invalid: bool = False) -> ParsedChunk:
    """Parse a block of whole lines of an ML-Images list.

    Args:
        data (bytes): Whole lines; a missing final newline is tolerated.
        first_lineno (int): 1-based line number of the first line of ``data``.
        num_classes (int, optional): Upper bound for class ids. Defaults to
            None (no bound).
        file (str): File name used in error messages.
        skip_invalid (bool): Collect rejected lines in ``rejected`` instead
            of raising on the first one. Defaults to False.

    Returns:
        ParsedChunk: The accepted lines.

    Raises:
        MLImagesFormatError: on the first invalid line unless
            ``skip_invalid``.
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    if len(raw) and raw[-1] != _NEWLINE:
        raw = np.append(raw, np.uint8(_NEWLINE))
    newlines = np.flatnonzero(raw == _NEWLINE)
    num_lines = len(newlines)
    buf = np.concatenate((raw, np.full(_PAD, _NEWLINE, dtype=np.uint8)))
    is_sep = buf <= 32  # space, tab, CR, LF and other control bytes
    token_start = np.flatnonzero(~is_sep[1:] & is_sep[:-1]) + 1
    if len(raw) and not is_sep[0]:
        token_start = np.concatenate(([0], token_start))
    token_end = np.flatnonzero(is_sep[1:] & ~is_sep[:-1]) + 1
    del is_sep
    token_line = np.searchsorted(newlines, token_start)
    tokens_per_line = np.bincount(token_line, minlength=num_lines)
    is_path = np.ones(len(token_start), dtype=bool)
    is_path[1:] = token_line[1:] != token_line[:-1]

    # labels: digits, one colon, a decimal number
    label_index = np.flatnonzero(~is_path)
    label_start, label_end = token_start[label_index], token_end[label_index]
    label_line = token_line[label_index]
    ok = np.ones(len(label_start), dtype=bool)
    class_ids, colon = _decode_class_ids(buf, label_start, ok)
    confidences = _decode_confidences(buf, colon, label_end, ok)
    ok &= (confidences >= 0.0) & (confidences <= 1.0)
    if num_classes is not None:
        ok &= class_ids < num_classes

    bad_line = tokens_per_line == 1
    bad_line[label_line[~ok]] = True
    line_starts = np.concatenate(([0], newlines[:-1] + 1))
    rejected = []
    for line_index in np.flatnonzero(bad_line):
        text = bytes(buf[line_starts[line_index]:newlines[line_index]]).decode(
            'utf-8', errors='replace')
        lineno = first_lineno + int(line_index)
        try:
            parse_list_line(text, num_classes, file, lineno)
            error = MLImagesFormatError(file, lineno, text,
                                        'rejected by the vectorised parser')
        except MLImagesFormatError as err:
            error = err
        if not skip_invalid:
            raise error
        rejected.append(error)

    keep_line = (tokens_per_line >= 2) & ~bad_line
    keep_label = keep_line[label_line]
    path_index = np.flatnonzero(is_path)
    path_index = path_index[keep_line[token_line[path_index]]]
    starts, ends = token_start[path_index], token_end[path_index]
    # run-length mask: [gap, token, gap, token, ..., gap], True on kept paths
    edges = np.empty(2 * len(token_start) + 2, dtype=np.int64)
    edges[0], edges[-1] = 0, len(buf)
    edges[1:-1:2], edges[2:-1:2] = token_start, token_end
    keep_path = np.zeros(len(token_start), dtype=bool)
    keep_path[path_index] = True
    run_values = np.zeros(2 * len(token_start) + 1, dtype=bool)
    run_values[1::2] = keep_path
    path_bytes = buf[np.repeat(run_values, np.diff(edges))]
    kept_class_ids = class_ids[keep_label]
    return ParsedChunk(
        path_bytes=path_bytes,
        path_lengths=(ends - starts).astype(np.int64),
        label_counts=(tokens_per_line[keep_line] - 1).astype(np.int64),
        class_ids=kept_class_ids,
        confidences=confidences[keep_label].astype(np.float32),
        line_numbers=first_lineno + np.flatnonzero(keep_line),
        num_lines=num_lines,
        num_blank=int((tokens_per_line == 0).sum()),
        max_class_id=int(kept_class_ids.max(initial=-1)),
        rejected=rejected)
