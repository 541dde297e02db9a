"""Counting images that fail to load, with a ceiling that stops the run.

One unreadable file must not kill a 64-GPU run, but a dataset whose images
are largely missing must not train quietly either. :class:`BadSampleTracker`
lives in each process that loads images (every data loader worker and the
main process); it counts the fetches and failures *of that process* and
raises once either rule is broken:

1. **absolute**: more distinct samples failed in this process than
   ``max_bad_fraction * len(dataset)``;
2. **rate**: at least ``min_fetches_for_rate`` fetches were made in this
   process and more than ``max_bad_fraction`` of them failed. Each worker
   sees a disjoint ~1/(ranks*workers) share of the data, so this rule is the
   one that trips on a large run: with 512 workers, 1 % of bad images never
   reaches an absolute 0.1 % of 17.6M in one worker, but its rate does.

Counts are per process (workers do not share memory); the first failures and
the totals are in the ``RuntimeError`` message and in :attr:`stats`.

Only a sample's *own* failure counts (a missing or undecodable image). A
failure of the environment -- no file descriptor left (``EMFILE``), a full
disk (``ENOSPC``), an I/O error (``EIO``), a stale network mount, a missing
or truncated tar shard -- says nothing about the sample and would hit every
following one: :func:`is_environmental_error` recognises it and the dataset
re-raises it as :class:`DataEnvironmentError` instead of counting it.
"""
import errno
import logging
import math
from typing import Dict, List, Optional

from mmengine.logging import print_log

__all__ = [
    'BadSampleTracker', 'TooManyBadSamplesError', 'DataEnvironmentError',
    'is_environmental_error', 'UndecodableImageError'
]

# errno values that describe the machine or the storage, not one file
ENVIRONMENTAL_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        'EMFILE', 'ENFILE', 'ENOSPC', 'EDQUOT', 'EIO', 'ENOMEM', 'ESTALE',
        'ETIMEDOUT', 'EROFS', 'ENXIO', 'ENODEV', 'EHOSTDOWN', 'ENOTCONN',
        'ECONNRESET', 'ENOLINK', 'EREMOTEIO') if hasattr(errno, name))


class TooManyBadSamplesError(RuntimeError):
    """Raised when the share of unreadable images passes the ceiling."""


class UndecodableImageError(OSError):
    """A sample's bytes are not a decodable image (a bad sample, counted).

    Raised where decoding happens after the loading stage (the fast path of
    ``LoadImageBytes`` + ``MultiViewWithMask(reduced_scale_decode=True)``).
    """


class DataEnvironmentError(OSError):
    """Reading data failed because of the environment, not of a sample.

    Raised for an exhausted file-descriptor limit, a full disk, an I/O
    error, a missing or truncated tar shard; never counted as a bad sample.
    """


def is_environmental_error(error: BaseException) -> bool:
    """Whether ``error`` (or the exception it was raised ``from``) is a
    failure of the environment rather than of the sample being loaded."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DataEnvironmentError):
            return True
        if isinstance(error, OSError) and error.errno in ENVIRONMENTAL_ERRNOS:
            return True
        error = error.__cause__
    return False


class BadSampleTracker:
    """Per-process failure counter for image loading.

    Args:
        dataset_size (int): ``len(dataset)``.
        max_bad_fraction (float): Allowed share of unreadable samples, e.g.
            0.001 for 0.1 %. Use 0 to stop at the first failure.
        min_fetches_for_rate (int, optional): Fetches before the rate rule
            applies. Defaults to ``ceil(20 / max_bad_fraction)`` (20k at
            0.1 %), so that a few early failures do not stop a run.
        name (str): Dataset name for messages.
    """

    def __init__(self,
                 dataset_size: int,
                 max_bad_fraction: float = 0.001,
                 min_fetches_for_rate: Optional[int] = None,
                 name: str = 'dataset'):
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f'max_bad_fraction must be in [0, 1], got '
                             f'{max_bad_fraction}')
        self.dataset_size = dataset_size
        self.max_bad_fraction = max_bad_fraction
        self.max_bad_samples = int(math.floor(max_bad_fraction * dataset_size))
        if min_fetches_for_rate is None:
            min_fetches_for_rate = (math.ceil(20 / max_bad_fraction)
                                    if max_bad_fraction > 0 else 1)
        self.min_fetches_for_rate = min_fetches_for_rate
        self.name = name
        self.num_fetches = 0
        self.num_failures = 0
        self.bad_indices: Dict[int, str] = {}
        self.first_failures: List[str] = []

    def record_fetch(self):
        """Count one attempt to load a sample."""
        self.num_fetches += 1

    def record_failure(self, index: int, where: str, error: BaseException):
        """Log and count a failed load; raise past the ceiling.

        Args:
            index (int): Dataset index of the sample.
            where (str): Image path and annotation line, for the message.
            error (BaseException): What the loader raised.

        Raises:
            TooManyBadSamplesError: when a rule of the module doc is broken.
        """
        self.num_failures += 1
        reason = f'{type(error).__name__}: {error}'.strip()
        self.bad_indices[index] = reason
        if len(self.first_failures) < 5:
            self.first_failures.append(f'{where} ({reason})')
        print_log(
            f'{self.name}: skipped unreadable sample {index} {where}: '
            f'{reason} [{len(self.bad_indices)} bad of {self.num_fetches} '
            f'fetched in this process; ceiling {self.max_bad_fraction:.4%}]',
            logger='current', level=logging.WARNING)
        over_absolute = len(self.bad_indices) > self.max_bad_samples
        over_rate = (self.num_fetches >= self.min_fetches_for_rate
                     and self.num_failures > self.max_bad_fraction * self.num_fetches)
        if over_absolute or over_rate:
            rule = (f'{len(self.bad_indices)} distinct samples > '
                    f'{self.max_bad_fraction} x {self.dataset_size} = '
                    f'{self.max_bad_samples}' if over_absolute else
                    f'{self.num_failures} failures in {self.num_fetches} '
                    f'fetches > {self.max_bad_fraction:.4%}')
            raise TooManyBadSamplesError(
                f'{self.name}: too many images could not be loaded ({rule}; '
                f'counted in this data loader process). Check data_root / '
                f'data_prefix / path_mapping and the files, or raise '
                f'max_bad_fraction. First failures:\n  ' +
                '\n  '.join(self.first_failures))

    @property
    def stats(self) -> dict:
        """Counters of this process."""
        return dict(num_fetches=self.num_fetches,
                    num_failures=self.num_failures,
                    num_bad_samples=len(self.bad_indices),
                    max_bad_samples=self.max_bad_samples)
