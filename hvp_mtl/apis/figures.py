"""Shared by the analysis tools: write a matplotlib figure atomically."""
import os
import os.path as osp

import matplotlib.pyplot as plt

__all__ = ['save_figure_atomically']


def save_figure_atomically(fig, out_file: str, dpi: int = 110) -> None:
    """Save ``fig`` as PNG to ``out_file`` (temporary file + rename), close it.

    A reader never sees a half-written picture, and an interrupted run
    leaves the previous one in place.
    """
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    tmp = out_file + '.tmp.png'
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    os.replace(tmp, out_file)
