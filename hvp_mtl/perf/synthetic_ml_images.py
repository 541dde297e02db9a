"""A realistic synthetic Tencent ML-Images list, written at ~1M lines/s.

Lines look like the real ones: 61 % ImageNet-id paths with space-separated
labels (``n04310904/n04310904_8388.JPEG  2367:1  2172:1``), 39 % Flickr URLs
with tab-separated labels (``https://c2.staticflickr.com/4/3035/
3033882900_a9a4263c55_o.jpg\\t1053:0.8``); 1 + Poisson(7.72) labels per line
(8.72 on average, as in the paper's table), class ids uniform in
[0, 11166), confidences '1' / '1.0' / '0.9' / '0.8'. The text is assembled
with numpy scatter writes, not per-line Python.
"""
import numpy as np

__all__ = ['write_synthetic_list']

_CONF_TEXT = (b'1', b'1.0', b'0.9', b'0.8')
_CONF_P = (0.45, 0.15, 0.2, 0.2)


def _digit_matrix(values: np.ndarray, width: int = None):
    """Decimal digits of non-negative ints: (uint8 [n, W] left-aligned, n_digits)."""
    values = np.asarray(values, dtype=np.int64)
    num_digits = np.ones(len(values), dtype=np.int64)
    for power in range(1, 19):
        num_digits += values >= 10**power
    if width is not None:  # zero-padded to a fixed width
        num_digits = np.maximum(num_digits, width)
    matrix = np.zeros((len(values), int(num_digits.max(initial=1))), np.uint8)
    for k in range(matrix.shape[1]):
        exponent = np.clip(num_digits - 1 - k, 0, 18)
        matrix[:, k] = (values // np.power(10, exponent)) % 10 + 48
    return matrix, num_digits


def _hex_matrix(values: np.ndarray, width: int):
    digits = np.frombuffer(b'0123456789abcdef', np.uint8)
    matrix = np.zeros((len(values), width), np.uint8)
    for k in range(width):
        matrix[:, k] = digits[(values >> (4 * (width - 1 - k))) & 15]
    return matrix, np.full(len(values), width, np.int64)


def _const(text: bytes, n: int):
    return (np.tile(np.frombuffer(text, np.uint8), (n, 1)),
            np.full(n, len(text), np.int64))


def _write(out: np.ndarray, position: np.ndarray, piece):
    """Scatter a piece (matrix, lengths) at ``position``; advance it."""
    matrix, lengths = piece
    for k in range(matrix.shape[1]):
        active = k < lengths
        out[position[active] + k] = matrix[active, k]
    position += lengths


def _batch(rng: np.random.Generator, first_id: int, n: int,
           num_classes: int) -> bytes:
    is_url = rng.random(n) < 0.39
    num_labels = 1 + rng.poisson(7.72, n)
    class_ids = rng.integers(0, num_classes, num_labels.sum())
    conf_code = rng.choice(4, num_labels.sum(), p=_CONF_P)
    ids = first_id + np.arange(n)  # makes ImageNet-style paths unique-ish
    # path pieces (URL and ImageNet styles share the piece list, lengths 0
    # switch a piece off)
    wnid, _ = _digit_matrix(rng.integers(1440764, 15102894, n), width=8)
    wnid_piece = (wnid, np.where(is_url, 0, 8))
    pieces = [
        (_const(b'https://c', n)[0], np.where(is_url, 9, 0)),
        (_digit_matrix(rng.integers(1, 9, n))[0], np.where(is_url, 1, 0)),
        (_const(b'.staticflickr.com/', n)[0], np.where(is_url, 18, 0)),
        (_digit_matrix(rng.integers(1, 9, n))[0], np.where(is_url, 1, 0)),
        (_const(b'/', n)[0], np.where(is_url, 1, 0)),
        (_digit_matrix(rng.integers(1000, 9999, n))[0], np.where(is_url, 4, 0)),
        (_const(b'/', n)[0], np.where(is_url, 1, 0)),
        (_const(b'n', n)[0], np.where(is_url, 0, 1)), wnid_piece,
        (_const(b'/n', n)[0], np.where(is_url, 0, 2)), wnid_piece,
        (_const(b'_', n)[0], np.where(is_url, 0, 1)),
    ]
    number, number_len = _digit_matrix(np.where(
        is_url, rng.integers(10**9, 3 * 10**10, n), ids % 20000 + 1))
    pieces.append((number, number_len))
    pieces.append((_const(b'_', n)[0], np.where(is_url, 1, 0)))
    pieces.append((_hex_matrix(rng.integers(0, 2**40, n), 10)[0],
                   np.where(is_url, 10, 0)))
    pieces.append((_const(b'_o.jpg', n)[0], np.where(is_url, 6, 0)))
    pieces.append((_const(b'.JPEG', n)[0], np.where(is_url, 0, 5)))
    path_len = sum(lengths for _, lengths in pieces)
    # labels: separator + class digits + ':' + confidence
    label_line = np.repeat(np.arange(n), num_labels)
    sep_len = np.where(is_url, 1, 2)[label_line]
    cls_matrix, cls_len = _digit_matrix(class_ids)
    conf_len = np.array([len(t) for t in _CONF_TEXT])[conf_code]
    label_len = sep_len + cls_len + 1 + conf_len
    line_len = path_len + np.bincount(label_line, label_len, n).astype(np.int64) + 1
    out = np.zeros(int(line_len.sum()), np.uint8)
    line_start = np.concatenate(([0], np.cumsum(line_len)[:-1]))
    position = line_start.copy()
    for piece in pieces:
        _write(out, position, piece)
    label_pos = np.repeat(position, num_labels) + (
        np.cumsum(label_len) - label_len
        - np.repeat(np.cumsum(np.bincount(label_line, label_len, n).astype(np.int64))
                    - np.bincount(label_line, label_len, n).astype(np.int64), num_labels))
    sep = np.where(is_url[label_line], 9, 32).astype(np.uint8)
    sep_matrix = np.stack([sep, np.full_like(sep, 32)], axis=1)
    _write(out, label_pos, (sep_matrix, sep_len))
    _write(out, label_pos, (cls_matrix, cls_len))
    _write(out, label_pos, _const(b':', len(class_ids)))
    conf_matrix = np.zeros((4, 3), np.uint8)
    for i, text in enumerate(_CONF_TEXT):
        conf_matrix[i, :len(text)] = np.frombuffer(text, np.uint8)
    _write(out, label_pos, (conf_matrix[conf_code], conf_len))
    out[line_start + line_len - 1] = 10
    return out.tobytes()


def write_synthetic_list(path: str, num_lines: int, num_classes: int = 11166,
                         seed: int = 0, batch_lines: int = 500_000) -> int:
    """Write ``num_lines`` synthetic lines to ``path``; return its byte size."""
    rng = np.random.default_rng(seed)
    size = 0
    with open(path, 'wb') as f:
        for first in range(0, num_lines, batch_lines):
            block = _batch(rng, first, min(batch_lines, num_lines - first),
                           num_classes)
            f.write(block)
            size += len(block)
    return size
