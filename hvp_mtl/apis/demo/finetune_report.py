"""Markdown and chart of a fine-tune study file (``finetune_seed<seed>.json``, key ``study``)."""

from .finetune_study import STUDY_ARMS

__all__ = ['render_finetune_study', 'plot_finetune_curves']


def _fmt(value, digits=2):
    return 'not run' if value is None else f'{value:.{digits}f}'


def render_finetune_study(results):
    """The schedule rule's line, one row per regime (val top-1 and chosen lr of each arm, the
    held-out grid), the difference HVP-MTL − random init."""
    study = results['study']
    schedule = study['schedule']
    held = ', '.join(f'{e} epochs {_fmt(v)}' for e, v in schedule['heldout'].items())
    why = schedule.get('why', "the rule's runs are not all there")
    lines = [f'#### Fine-tunes by the protocol (seed {study["seed"]})', '',
             f'Schedule rule (random init, lr {study["schedule_lr"]:g}, held-out top-1): {held}; '
             f'chosen: **{schedule.get("epochs", "not decided")}** epochs '
             f'({why}).', '',
             '| regime | ' + ' | '.join(f'{label}: val top-1 (lr)' for label in
                                       STUDY_ARMS.values())
             + ' | HVP-MTL − random | held-out top-1 per lr (random; HVP-MTL) |',
             '|' + '---|' * (len(STUDY_ARMS) + 3)]
    for rows in study['regimes'].values():
        cells, values = [], []
        for arm in STUDY_ARMS:
            row = rows[arm]
            values.append(row['val_top1'])
            cells.append(f'{_fmt(row["val_top1"])} ({row["lr"]:g})' if row['lr'] else 'not run')
        diff = (f'{values[1] - values[0]:+.2f}' if None not in values else '-')
        grids = '; '.join(', '.join(f'{lr}: {_fmt(v)}' for lr, v in rows[arm]['grid'].items())
                          for arm in STUDY_ARMS)
        lines.append(f'| {rows["label"]} | ' + ' | '.join(cells) + f' | {diff} | {grids} |')
    lines += ['', f'Command: `{results.get("command", "")}` (commit '
              f'{results.get("commit", "")[:10]}).']
    return '\n'.join(lines) + '\n'


def plot_finetune_curves(results, out_file, dpi=100):
    """Held-out top-1 against epoch of the schedule rule's runs, both arms (lr of the rule)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from hvp_mtl.apis.figures import save_figure_atomically

    study = results['study']
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for arm, label in STUDY_ARMS.items():
        for epochs, curve in study['curves'][arm].items():
            if curve:
                ax.plot(range(1, len(curve) + 1), curve, '-' if arm == 'hvp' else '--',
                        label=f'{label}, {epochs}-epoch schedule')
    ax.set(xlabel='fine-tune epoch', ylabel='held-out top-1 (%)',
           title=f'Schedule rule: held-out top-1, lr {study["schedule_lr"]:g} '
                 f'(seed {study["seed"]})')
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure_atomically(fig, out_file, dpi)
    return out_file
