"""Per-task loss curves of a training run as one PNG: a panel per loss, the total, and the lr.

The core of ``tools/analysis_tools/plot_loss_curves.py``. Reads the ``vis_data/scalars.json``
files mmengine writes into a work dir (every launch, so a resumed run is one curve)::

    python tools/analysis_tools/plot_loss_curves.py WORK_DIR [--out curves.png] [--smooth 10]
        [--keys loss_mlc loss_swav ...] [--x iter|epoch]

Panels: every logged ``loss_*`` key (HVP-MTL logs one per task, already weighted by its alpha), then
``loss`` (their sum, the optimised total), then ``lr`` (of the base parameter group).
"""
import os.path as osp

import matplotlib

matplotlib.use('Agg')  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .figures import save_figure_atomically  # noqa: E402
from .work_dir_logs import training_records  # noqa: E402

__all__ = ['curve_keys', 'smooth', 'x_axis', 'plot_curves']


def curve_keys(records, keys=None):
    """Panels to draw, in order: the task losses, the total ``loss``, then ``lr``.

    Args:
        records (list[dict]): Training records from :func:`work_dir_logs.training_records`.
        keys (list[str], optional): These logged scalars instead, in this order.

    Returns:
        list[str]: Keys present in the records.
    """
    present = {k for r in records for k, v in r.items() if isinstance(v, (int, float))}
    if keys is not None:  # any logged scalar, e.g. mlc_unweighted, in the order asked
        return [k for k in keys if k in present]
    tasks = sorted(k for k in present if k.startswith('loss_'))
    return tasks + [k for k in ('loss', 'lr') if k in present]


def smooth(values, window):
    """Trailing moving average over ``window`` points (the first points average what exists)."""
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(values) < 2:
        return values
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    out = np.empty_like(values)
    for i in range(len(values)):
        lo = max(0, i + 1 - window)
        out[i] = (cumsum[i + 1] - cumsum[lo]) / (i + 1 - lo)
    return out


def x_axis(records, unit):
    """The x value of each record: the global iteration (``step``) or a fractional epoch."""
    steps = np.array([r.get('step', i + 1) for i, r in enumerate(records)], dtype=np.float64)
    if unit == 'epoch' and all('epoch' in r for r in records) and steps.max() > 0:
        # the runs' iterations per epoch are constant: scale the iteration to fractional epochs
        return steps * max(r['epoch'] for r in records) / steps.max()
    return steps


def plot_curves(work_dir, out_file, keys=None, window=1, unit='iter'):
    """Draw the curves of a work dir into ``out_file``.

    Args:
        work_dir (str): A training run's work dir.
        out_file (str): PNG to write (atomically).
        keys (list[str], optional): Restrict the panels to these keys.
        window (int): Moving-average window; the raw curve is drawn faintly behind.
        unit (str): ``'iter'`` or ``'epoch'`` for the x axis.

    Returns:
        list[str]: The keys drawn, one panel each.

    Raises:
        FileNotFoundError: The work dir holds no training scalars.
    """
    records = training_records(work_dir)
    if not records:
        raise FileNotFoundError(
            f'{work_dir}: no <timestamp>/vis_data/scalars.json with training losses')
    panels = curve_keys(records, keys)
    if not panels:
        raise ValueError(f'{work_dir}: none of the keys {keys} were logged')
    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, key in zip(axes.flat, panels):
        sel = [r for r in records if isinstance(r.get(key), (int, float))]
        xs, ys = x_axis(sel, unit), np.array([r[key] for r in sel], dtype=np.float64)
        if window > 1 and key != 'lr':  # the schedule is exact: never smoothed
            ax.plot(xs, ys, color='tab:blue', alpha=0.25, linewidth=0.8)
        ax.plot(xs,
                ys if key == 'lr' else smooth(ys, window),
                color='tab:orange' if key == 'lr' else 'tab:blue',
                linewidth=1.4)
        ax.set_title(key if key not in ('loss', 'lr') else {
            'loss': 'loss (total)',
            'lr': 'learning rate'
        }[key])
        ax.set_xlabel(unit)
        ax.grid(alpha=0.3)
        if key == 'lr':
            ax.ticklabel_format(axis='y', style='sci', scilimits=(-3, 3))
    for ax in list(axes.flat)[len(panels):]:
        ax.axis('off')
    fig.suptitle(osp.basename(osp.normpath(work_dir)))
    fig.tight_layout()
    save_figure_atomically(fig, out_file)
    return panels

