"""Bar charts with error bars of a demo results table (mean ± standard deviation over seeds)."""
import textwrap

from .stats import summarise

__all__ = ['plot_table']


def plot_table(table, out_file, dpi=100):
    """One panel per metric row, one bar per arm, error bar = std over seeds, dots = seeds.

    Args:
        table (dict): A table of a results file (see :mod:`.report`).
        out_file (str): PNG to write (atomically).
        dpi (int): Resolution.

    Returns:
        str: ``out_file``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from hvp_mtl.apis.figures import save_figure_atomically

    rows, arms = table['rows'], table['arms']
    fig, axes = plt.subplots(1, len(rows), figsize=(2.2 + 1.9 * len(rows), 3.6), squeeze=False)
    colours = plt.get_cmap('tab10').colors
    for ax, row in zip(axes[0], rows):
        for i, arm in enumerate(arms):
            values = [v for v in row['values'][arm] if v is not None]
            s = summarise(values)
            if s['mean'] is None:
                continue
            ax.bar(i, s['mean'], yerr=s['std'] or 0.0, capsize=3, color=colours[i % 10],
                   alpha=0.8)
            ax.plot([i] * len(values), values, 'k.', markersize=3)
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels(list(arms.values()), rotation=60, ha='right', fontsize=7)
        ax.set_title(textwrap.fill(f'{row["model"]}, {row["metric"]}', 24), fontsize=8)
        ax.tick_params(axis='y', labelsize=7)
    fig.suptitle(textwrap.fill(table['title'], 40 + 22 * len(rows)), fontsize=9)
    fig.tight_layout()
    save_figure_atomically(fig, out_file, dpi)
    return out_file
