"""Interleaved step timing and its quantiles, shared by the step benchmarks of ``tools/perf/``.

Every round runs every case once, in a rotating order, so machine noise hits all cases alike;
ratios are taken per round (paired) and summarised as ``median [p10, p90]``.
"""
import sys
import time

import torch

__all__ = ['PAPER_IMAGES', 'PAPER_GPUS', 'quantiles', 'time_interleaved', 'paired', 'fmt']

PAPER_IMAGES = 30 * 17.6e6  # 30 epochs over 17.6M Tencent ML-Images images
PAPER_GPUS = 64


def quantiles(values):
    """(median, p10, p90) of a list (nearest rank)."""
    ordered = sorted(values)

    def at(q):
        return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + .5))]

    return at(.5), at(.1), at(.9)


def time_interleaved(steps, iters, warmup, device, clock):
    """Round-robin timing; returns {case: [seconds per round]}.

    ``clock='cpu'`` measures the process CPU time (all threads), which a
    shared machine's load barely changes when torch runs one thread.
    """
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    now = time.process_time if clock == 'cpu' else time.perf_counter
    names = list(steps)
    times = {name: [] for name in names}
    for round_index in range(warmup + iters):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            sync()
            start = now()
            steps[name]()
            sync()
            if round_index >= warmup:
                times[name].append(now() - start)
        print(f'  round {round_index + 1}/{warmup + iters}: ' + ', '.join(
            f'{n} {times[n][-1] * 1e3:.0f} ms' for n in names
            if round_index >= warmup), file=sys.stderr, flush=True)
    return times


def paired(times, numerator, denominator, scale=1.):
    """Per-round ratios ``scale * t_num / t_den`` -> (median, p10, p90)."""
    ratios = [scale * a / b for a, b in zip(times[numerator], times[denominator])]
    return quantiles(ratios)


def fmt(q, pct=False):
    """``median [p10, p90]`` of a quantile triple."""
    if pct:
        return f'{q[0]:6.1%} [{q[1]:.1%}, {q[2]:.1%}]'
    return f'{q[0]:5.3f} [{q[1]:.3f}, {q[2]:.3f}]'
