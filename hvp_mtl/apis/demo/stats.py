"""Seed statistics of the demo and the rule that turns them into a verdict.

Every demo number is measured once per seed. A row of the table shows, per
initialisation, the mean, the sample standard deviation and N; the difference
of two initialisations is judged against the standard error of that
difference (Welch, unequal variances):

    SE = sqrt(s_a^2 / n_a + s_b^2 / n_b)

**The rule** (:data:`VERDICT_RULE`): pre-training *helped* when the mean
difference exceeds ``2 x SE``, *hurt* when it is below ``-2 x SE``, and the
difference is *within the seed spread* otherwise. With fewer than two seeds on
either side there is no spread to judge against: *one seed: no verdict*.
Two standard errors is roughly a two-sided 95 % interval for large N; with
2-3 seeds it is a lenient screen, not a significance test (a t quantile at
2-4 degrees of freedom would be 2.8-4.3), which the docs say with the numbers.
"""
import math
from typing import Dict, Optional, Sequence

__all__ = ['summarise', 'compare', 'compare_gains', 'VERDICT_RULE', 'Z_THRESHOLD']

#: multiples of the standard error of the difference that count as an effect
Z_THRESHOLD = 2.0
VERDICT_RULE = ('"helped" / "hurt" only when the mean difference is more than 2 x its standard '
                'error (Welch: SE = sqrt(s_a^2/n_a + s_b^2/n_b), s the standard deviation over '
                'seeds); otherwise "within seed spread"; with one seed "one seed: no verdict".')


def summarise(values: Sequence[Optional[float]]) -> Dict[str, Optional[float]]:
    """Mean, sample standard deviation (n - 1) and count of the measured values.

    Args:
        values (Sequence[float | None]): One value per seed; ``None`` = not measured.

    Returns:
        dict: ``mean`` and ``std`` (``None`` when not computable: no values, or one for
        ``std``) and ``n``.
    """
    measured = [float(v) for v in values if v is not None]
    n = len(measured)
    if n == 0:
        return dict(mean=None, std=None, n=0)
    mean = sum(measured) / n
    std = math.sqrt(sum((v - mean)**2 for v in measured) / (n - 1)) if n > 1 else None
    return dict(mean=mean, std=std, n=n)


def compare(a: Sequence[Optional[float]], b: Sequence[Optional[float]]) -> Dict:
    """Mean difference ``a - b``, its Welch standard error and the verdict.

    Args:
        a (Sequence[float | None]): Per-seed values of the pre-trained initialisation.
        b (Sequence[float | None]): Per-seed values of the baseline (e.g. random init).

    Returns:
        dict: ``diff`` (``None`` if either side is unmeasured), ``se`` (``None`` with
        fewer than two seeds on a side) and ``verdict``: ``'helped'``, ``'hurt'``,
        ``'within seed spread'``, ``'one seed: no verdict'`` or ``'not measured'``.
    """
    sa, sb = summarise(a), summarise(b)
    if sa['mean'] is None or sb['mean'] is None:
        return dict(diff=None, se=None, verdict='not measured')
    diff = sa['mean'] - sb['mean']
    if sa['n'] < 2 or sb['n'] < 2:
        return dict(diff=diff, se=None, verdict='one seed: no verdict')
    se = math.sqrt(sa['std']**2 / sa['n'] + sb['std']**2 / sb['n'])
    return dict(diff=diff, se=se, verdict=_verdict(diff, se, 'helped', 'hurt'))


def _verdict(diff, se, above, below):
    """``above`` / ``below`` when ``diff`` is more than ``Z_THRESHOLD`` x ``se`` away from 0."""
    if diff > Z_THRESHOLD * se:
        return above
    if diff < -Z_THRESHOLD * se:
        return below
    return 'within seed spread'


def compare_gains(a: Sequence[Optional[float]], a0: Sequence[Optional[float]],
                  b: Sequence[Optional[float]], b0: Sequence[Optional[float]]) -> Dict:
    """Difference of two gains, ``(a - a0) - (b - b0)``, e.g. a wide Swin's gain over its random
    init minus the demo Swin's gain over its own (the paper's "larger gains for larger models").

    The four arms are independent runs, so the standard error is the Welch one of the two
    differences combined, ``SE = sqrt(SE_a^2 + SE_b^2)``, and the verdict follows the same
    2 x SE rule: ``'larger'`` / ``'smaller'`` gain, or ``'within seed spread'``.

    Args:
        a, a0 (Sequence[float | None]): Per-seed values of the first pre-trained arm and its
            baseline.
        b, b0 (Sequence[float | None]): The same for the second pair.

    Returns:
        dict: ``diff``, ``se`` and ``verdict`` as :func:`compare` returns them.
    """
    ga, gb = compare(a, a0), compare(b, b0)
    if ga['diff'] is None or gb['diff'] is None:
        return dict(diff=None, se=None, verdict='not measured')
    diff = ga['diff'] - gb['diff']
    if ga['se'] is None or gb['se'] is None:
        return dict(diff=diff, se=None, verdict='one seed: no verdict')
    se = math.sqrt(ga['se']**2 + gb['se']**2)
    return dict(diff=diff, se=se, verdict=_verdict(diff, se, 'larger', 'smaller'))
