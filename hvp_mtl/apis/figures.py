"""Shared by the analysis tools: write a matplotlib figure atomically."""
import matplotlib.pyplot as plt

from hvp_mtl.utils.atomic_io import atomic_path

__all__ = ['save_figure_atomically']


def save_figure_atomically(fig, out_file: str, dpi: int = 110) -> None:
    """Save ``fig`` as PNG to ``out_file`` (temporary file + rename), close it.

    A reader never sees a half-written picture, and an interrupted run
    leaves the previous one in place.
    """
    with atomic_path(out_file) as tmp:
        fig.savefig(tmp, dpi=dpi, format='png')
    plt.close(fig)
