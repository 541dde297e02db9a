"""Resident memory of this process: current, and the peak since a reset.

Linux only. The peak (``VmHWM``) is reset by writing ``5`` to
``/proc/self/clear_refs``, so a benchmark can measure the peak that one
phase adds on top of what the process already held (imports, data), which
``ru_maxrss`` (a peak over the whole life of the process) cannot. A measurement that must not
see what earlier ones left in the heap runs :func:`in_fresh_process`.
"""
import multiprocessing

__all__ = ['reset_peak_rss', 'rss_mb', 'peak_rss_mb', 'in_fresh_process']


def _status_kb(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> float:
    """Reset the peak to the current RSS; return the current RSS (MB)."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    return rss_mb()


def rss_mb() -> float:
    """Current resident set size (MB)."""
    return _status_kb('VmRSS') / 1024


def peak_rss_mb() -> float:
    """Peak resident set size since the last :func:`reset_peak_rss` (MB)."""
    return _status_kb('VmHWM') / 1024


def in_fresh_process(target, *args) -> dict:
    """Run ``target(*args, queue)`` in a spawned process; return what it put on ``queue``."""
    context = multiprocessing.get_context('spawn')
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result
