"""hvp_mtl.utils.atomic_io: a write either completes or leaves the old file
as it was, and never leaves a temporary file behind."""
import os
import stat

import pytest
import torch

from hvp_mtl.utils.atomic_io import atomic_path, atomic_torch_save, atomic_write, commit_file


class WriterFailed(Exception):
    pass


def _listing(folder):
    return sorted(os.listdir(folder))


def test_atomic_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    path = tmp_path / 'sub' / 'out.json'  # the folder is created
    with atomic_write(path) as f:
        f.write('{"a": 1}')
        # not visible under its name before the block ends
        assert not path.exists()
    assert path.read_text() == '{"a": 1}'
    with atomic_write(path, 'wb') as f:
        f.write(b'second')
    assert path.read_bytes() == b'second'
    assert _listing(path.parent) == ['out.json']


@pytest.mark.parametrize('mode', ['w', 'wb'])
def test_a_write_that_raises_keeps_the_old_file_and_no_temp_file(tmp_path, mode):
    path = tmp_path / 'results.txt'
    path.write_text('old content')
    with pytest.raises(WriterFailed):
        with atomic_write(path, mode) as f:
            f.write('half of the new' if mode == 'w' else b'half of the new')
            f.flush()
            raise WriterFailed('disk full halfway')
    assert path.read_text() == 'old content'
    assert _listing(tmp_path) == ['results.txt']


def test_atomic_torch_save_round_trip_and_failure(tmp_path):
    path = tmp_path / 'model.pth'
    atomic_torch_save({'w': torch.arange(4.)}, path)
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded['w'], torch.arange(4.))
    # an object torch.save cannot pickle fails inside the write
    with pytest.raises(Exception):
        atomic_torch_save({'w': torch.zeros(2), 'f': lambda: 0}, path)
    assert torch.equal(torch.load(path, weights_only=True)['w'],
                       torch.arange(4.))
    assert _listing(tmp_path) == ['model.pth']


def test_atomic_path_names_are_unique_and_beside_the_target(tmp_path):
    path = tmp_path / 'a.bin'
    with atomic_path(path) as first, atomic_path(path) as second:
        assert first != second
        assert os.path.dirname(first) == str(tmp_path)
        with open(first, 'wb') as f:
            f.write(b'1')
        with open(second, 'wb') as f:
            f.write(b'2')
    assert path.read_bytes() == b'1'  # the outer block commits last and wins, whole
    assert _listing(tmp_path) == ['a.bin']


def test_commit_file_syncs_file_and_folder(tmp_path, monkeypatch):
    """The data and the rename reach the disk: ``fsync`` runs on the
    temporary file and on the folder (counted through the real call)."""
    synced = []
    real_fsync = os.fsync

    def counting_fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real_fsync(fd)

    monkeypatch.setattr(os, 'fsync', counting_fsync)
    tmp = tmp_path / 'x.tmp'
    tmp.write_text('data')
    commit_file(str(tmp), str(tmp_path / 'x'))
    assert (tmp_path / 'x').read_text() == 'data' and not tmp.exists()
    assert synced == [False, True]


def test_atomic_write_refuses_append_and_read_modes(tmp_path):
    for mode in ('a', 'r', 'w+'):
        with pytest.raises(ValueError, match='write mode'):
            with atomic_write(tmp_path / 'f', mode):
                pass
    assert _listing(tmp_path) == []


def test_permissions_are_those_of_a_plain_open(tmp_path):
    """A new file gets the umask's permissions (not a private temp file's),
    a replaced file keeps its own."""
    plain = tmp_path / 'plain.txt'
    with open(plain, 'w') as f:
        f.write('x')
    with atomic_write(tmp_path / 'new.txt') as f:
        f.write('x')
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(tmp_path / 'new.txt') == mode(plain)
    os.chmod(plain, 0o640)
    atomic_torch_save({'a': 1}, plain)
    assert mode(plain) == 0o640
