"""Every config under configs/ resolves to the snapshot in ``resolved_configs.json.gz``.

The snapshot is ``Config.fromfile(path).to_dict()`` of every config, taken before the configs
were reorganised around shared ``_base_`` files (the two-view pipeline, the downstream Swin-B
block), so a refactor of the configs cannot change a value unnoticed. A deliberate change of a
resolved value is recorded by rewriting the snapshot and committing it with the change::

    UPDATE_CONFIG_SNAPSHOT=1 python -m pytest tests/test_configs/test_config_snapshot.py

Tuples and lists are told apart (``{'__tuple__': [...]}``), as are ints and floats.
"""
import functools
import gzip
import json
import os
import pathlib

import pytest
from mmengine.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[2]
SNAPSHOT = pathlib.Path(__file__).with_name('resolved_configs.json.gz')
CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)
IDS = [str(p.relative_to(ROOT / 'configs')) for p in CONFIGS]

#: Top-level variables of the shared bases that are not in the snapshot. They hold the blocks
#: the downstream configs share (``configs/finetune/_base_``); no builder reads them.
SHARED_BLOCK_KEYS = {'hvp_swin_b_backbone', 'layer_decay_optim_wrapper'}


def canonical(value):
    """A JSON-able form of a resolved config value that keeps tuples apart from lists."""
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return {'__tuple__': [canonical(v) for v in value]}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return {'__repr__': repr(value)}


def resolve(path) -> dict:
    return canonical(Config.fromfile(str(path)).to_dict())


def differences(before, after, where=''):
    """Paths (``a.b[2].c``) at which two canonical values differ, with both values."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after)):
            sub = f'{where}.{key}' if where else key
            if key not in after:
                out.append(f'{sub}: removed (was {before[key]!r})')
            elif key not in before:
                out.append(f'{sub}: added ({after[key]!r})')
            else:
                out.extend(differences(before[key], after[key], sub))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [d for i, (b, a) in enumerate(zip(before, after))
                for d in differences(b, a, f'{where}[{i}]')]
    if before != after or type(before) is not type(after):
        return [f'{where}: {before!r} -> {after!r}']
    return []


@functools.lru_cache(maxsize=1)
def _load_snapshot() -> dict:
    with gzip.open(SNAPSHOT, 'rt', encoding='utf-8') as f:
        return json.load(f)


def test_snapshot_names_every_config():
    if os.environ.get('UPDATE_CONFIG_SNAPSHOT'):
        _load_snapshot.cache_clear()
        # the snapshot holds what is compared: the resolved keys less the shared blocks
        data = json.dumps({name: {k: v for k, v in resolve(p).items() if k not in SHARED_BLOCK_KEYS}
                           for name, p in zip(IDS, CONFIGS)},
                          sort_keys=True, separators=(',', ':'))
        with gzip.GzipFile(SNAPSHOT, 'wb', mtime=0) as f:
            f.write(data.encode('utf-8'))
    assert sorted(_load_snapshot()) == IDS, 'configs added or removed: update the snapshot'


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_config_resolves_to_snapshot(path):
    name = str(path.relative_to(ROOT / 'configs'))
    before = _load_snapshot()[name]
    after = resolve(path)
    extra = set(after) - set(before)
    assert extra <= SHARED_BLOCK_KEYS, \
        f'{name}: new top-level keys {sorted(extra - SHARED_BLOCK_KEYS)}'
    after = {k: v for k, v in after.items() if k not in SHARED_BLOCK_KEYS}
    diff = differences(before, after)
    assert not diff, f'{name} resolves differently:\n' + '\n'.join(diff[:40])


def test_differences_sees_tuples_types_and_nesting():
    """The comparison itself: a tuple is not a list, 1 is not 1.0, nested paths are named."""
    a = canonical(dict(x=(1, 2), y=[dict(z=1)]))
    assert differences(a, canonical(dict(x=[1, 2], y=[dict(z=1)]))) != []
    assert differences(a, canonical(dict(x=(1, 2), y=[dict(z=1.0)]))) == ['y[0].z: 1 -> 1.0']
    assert differences(a, a) == []
