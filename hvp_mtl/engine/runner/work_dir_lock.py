"""One job per work dir: a lock held for the job's whole life.

Two jobs that write one work dir rotate and rename each other's checkpoints and
``last_checkpoint``: a requeued job whose old copy still runs on a stuck node, a ``--resume``
started beside workers whose launcher was killed, two people launching one config.
:func:`acquire_work_dir_lock` takes a POSIX record lock (``fcntl.lockf``) on
``<work_dir>/.work_dir.lock`` before anything is written and keeps its file open until the
process exits. The kernel drops the lock when the process dies, however it dies, so a crashed
job never leaves a stale lock; the file's text (host, pid, start time, command) only names the
holder in the refusal.

Shared filesystems: POSIX locks work across nodes on NFS v4, NFS v3 with ``lockd``, Lustre
(mounted with ``flock`` or ``localflock``: then per node only) and GPFS. Where the filesystem
refuses locks (``ENOLCK``, ``EOPNOTSUPP``: NFS v3 without ``lockd``, some FUSE mounts) the job
warns and runs unlocked; ``HVP_WORK_DIR_LOCK=0`` switches the lock off on purpose.
"""
import datetime
import errno
import fcntl
import os
import os.path as osp
import socket
import sys
import warnings

__all__ = ['acquire_work_dir_lock', 'WorkDirLocked', 'LOCK_NAME']

LOCK_NAME = '.work_dir.lock'
_HELD = {}  # work dir -> open lock file, kept for the life of the process


class WorkDirLocked(RuntimeError):
    """Another live job holds the work dir (the message is one line: who, and what to do)."""


def _holder(path):
    try:
        with open(path, encoding='utf-8') as f:
            return f.read().strip() or 'an unknown process'
    except OSError:
        return 'an unknown process'


def acquire_work_dir_lock(work_dir):
    """Lock ``work_dir`` for this process, or raise :class:`WorkDirLocked`.

    Args:
        work_dir (str): The job's work dir (created if missing).

    Returns:
        str | None: The lock file's path, ``None`` when locking is off or unsupported.
    """
    work_dir = osp.abspath(work_dir)
    if work_dir in _HELD:
        return _HELD[work_dir].name
    if os.environ.get('HVP_WORK_DIR_LOCK', '1') == '0':
        return None
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_NAME)
    handle = open(path, 'a+', encoding='utf-8')
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        handle.close()
        if err.errno in (errno.EACCES, errno.EAGAIN):
            raise WorkDirLocked(
                f'work dir {work_dir} is in use by {_holder(path)}: stop that job (or wait '
                'for it) before starting another one here, or pass another --work-dir') \
                from None
        warnings.warn(f'{path}: the filesystem refuses file locks ({os.strerror(err.errno)}); '
                      'running without the one-job-per-work-dir lock')
        return None
    handle.seek(0)
    handle.truncate()
    started = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
    handle.write(f'host {socket.gethostname()}, pid {os.getpid()}, started {started} '
                 f'({" ".join(sys.argv)[:300]})\n')
    handle.flush()
    _HELD[work_dir] = handle
    return path
