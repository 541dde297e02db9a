"""Atomic file writes: a temporary file beside the target, then a rename.

A reader (or a resumed run) sees either the previous file or the complete
new one, never a half-written one: the data goes to a temporary file in the
target's folder, is flushed and ``fsync``-ed, ``os.replace``-d onto the
target (atomic on POSIX within one file system) and the folder is
``fsync``-ed so the rename itself survives a power loss. If the writer
raises, the temporary file is removed and the old target is left untouched.

* :func:`atomic_write`: ``with atomic_write(path, 'w') as f: f.write(...)``;
* :func:`atomic_path`: for writers that want a file name (``np.tofile``,
  ``fig.savefig``);
* :func:`atomic_torch_save`: ``torch.save`` through :func:`atomic_path`;
* :func:`commit_file`: the last step alone, for a temporary file that
  someone else wrote (mmengine's ``Runner.save_checkpoint``).
"""
import contextlib
import os
import os.path as osp
import stat
import uuid
from typing import IO, Iterator

__all__ = ['atomic_write', 'atomic_path', 'atomic_torch_save', 'commit_file',
           'fsync_dir']


def fsync_dir(folder: str) -> None:
    """Flush a folder's entries (a rename in it) to disk, where supported."""
    try:
        fd = os.open(folder or '.', os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def commit_file(tmp: str, path: str) -> None:
    """``fsync`` ``tmp``, rename it onto ``path`` and ``fsync`` the folder.

    Args:
        tmp (str): A complete temporary file in ``path``'s folder.
        path (str): The target, replaced atomically if it exists.
    """
    with open(tmp, 'rb') as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(osp.dirname(osp.abspath(path)))


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary file name beside ``path``; commit it on success.

    The temporary name is unique (``.<name>.<random>.tmp`` in the same
    folder, which is created if missing), so concurrent writers never share
    one. The file gets the permissions ``open(path, 'w')`` would give: the
    target's if it exists, else the default (umask) ones. On an exception
    the temporary file is removed and ``path`` keeps its old content.
    """
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.{uuid.uuid4().hex[:12]}.tmp')
    # not mkstemp: its files are private (0600) whatever the umask
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    if osp.exists(path):
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
    try:
        yield tmp
        commit_file(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'w', **open_kwargs) -> Iterator[IO]:
    """``open(path, mode)`` that replaces ``path`` only once the block ends.

    Args:
        path (str): The target file.
        mode (str): ``'w'`` or ``'wb'`` (plus ``open`` modifiers such as
            ``'t'``); appending or reading makes no sense here.
        **open_kwargs: Passed to ``open`` (``encoding``, ``newline``).

    Yields:
        The open temporary file.
    """
    if not mode.startswith('w') or '+' in mode:
        raise ValueError(f'atomic_write needs a write mode, got {mode!r}')
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()


def atomic_torch_save(obj, path: str) -> None:
    """``torch.save(obj, path)`` through a temporary file and a rename."""
    import torch
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
