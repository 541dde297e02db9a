"""Workers that end with their launcher.

A worker whose launcher (``torchrun``, ``torch.distributed.launch``) was killed keeps running,
and holding its GPU, until its next collective fails, or for ever on a single node.
:func:`die_with_launcher` asks Linux to send the worker ``SIGTERM`` when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), then checks that the parent is still the one that started it:
a launcher that died between the fork and the ``prctl`` call would otherwise go unnoticed.
Elsewhere (macOS, no ``prctl``) it does nothing and says so.
"""
import ctypes
import ctypes.util
import os
import signal
import sys

__all__ = ['die_with_launcher', 'started_by_launcher']

PR_SET_PDEATHSIG = 1


def started_by_launcher(environ=None) -> bool:
    """Whether a launcher started this process (torchrun / torch.distributed.launch set
    ``LOCAL_RANK`` and ``WORLD_SIZE``; torchrun also ``TORCHELASTIC_RUN_ID``)."""
    environ = os.environ if environ is None else environ
    return 'TORCHELASTIC_RUN_ID' in environ or (
        'LOCAL_RANK' in environ and 'WORLD_SIZE' in environ)


def die_with_launcher(launcher_pid=None, sig=signal.SIGTERM) -> bool:
    """Have the kernel send ``sig`` to this process when its parent exits.

    Args:
        launcher_pid (int, optional): The parent expected (default: the current parent).
        sig (int): The signal. Defaults to ``SIGTERM`` (mmengine's and Python's default
            handlers end the process).

    Returns:
        bool: True when armed (Linux), False where ``prctl`` is unavailable.
    """
    expected = os.getppid() if launcher_pid is None else launcher_pid
    if not sys.platform.startswith('linux'):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if os.getppid() != expected:  # the launcher died before the prctl call
        os.kill(os.getpid(), sig)
    return True
