"""Markdown and chart of a fine-tune study file (``finetune_seed<seed>.json``, key ``study``)."""

__all__ = ['render_finetune_study', 'plot_finetune_curves']

PROBE_COLUMNS = (('rankme', 1), ('top5_share', 3), ('colour_top2_r2', 3), ('colour_total_r2', 3),
                 ('linear', 2), ('knn_raw', 2), ('knn_whitened', 2))


def _fmt(value, digits=2):
    return 'not run' if value is None else f'{value:.{digits}f}'


def render_finetune_study(results):
    """The schedule rule's line; one row per regime and arm (val top-1, its difference from
    random init, the chosen lr, the held-out grid); the arms' frozen-feature probes."""
    study = results['study']
    schedule, arms = study['schedule'], study['arms']
    held = ', '.join(f'{e} epochs {_fmt(v)}' for e, v in schedule['heldout'].items())
    why = schedule.get('why', "the rule's runs are not all there")
    lines = [f'#### Fine-tunes by the protocol (seed {study["seed"]})', '',
             f'Schedule rule (random init, lr {study["schedule_lr"]:g}, held-out top-1): {held}; '
             f'chosen: **{schedule.get("epochs", "not decided")}** epochs ({why}).', '',
             '| regime | arm | val top-1 | − random init | lr | held-out top-1 per lr |',
             '|---|---|---|---|---|---|']
    for rows in study['regimes'].values():
        base = rows['random']['val_top1']
        for arm, label in arms.items():
            row = rows[arm]
            diff = ('-' if arm == 'random' or None in (base, row['val_top1'])
                    else f'{row["val_top1"] - base:+.2f}')
            grid = ', '.join(f'{lr}: {_fmt(v)}' for lr, v in row['grid'].items())
            lr = f'{row["lr"]:g}' if row['lr'] else '-'
            lines.append(f'| {rows["label"]} | {label} | {_fmt(row["val_top1"])} | {diff} | '
                         f'{lr} | {grid} |')
    lines += ['', '| arm (frozen backbone) | RankMe | top-5 share | colour R² top-2 PCs | colour '
              'R² all | linear probe | kNN raw | kNN whitened |', '|' + '---|' * 8]
    for arm, label in arms.items():
        probe = study['probes'].get(arm)
        cells = [_fmt(probe and probe[k], d) for k, d in PROBE_COLUMNS]
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    lines += ['', f'Command: `{results.get("command", "")}` (commit '
              f'{results.get("commit", "")[:10]}).']
    reused = study.get('reused')
    if reused:
        lines.append(f'Values of the runs of {", ".join(arms[a] for a in reused["arms"])} read '
                     f'from `{reused["file"]}` (commit {reused["commit"][:10]}), not run again.')
    return '\n'.join(lines) + '\n'


def plot_finetune_curves(results, out_file, dpi=100):
    """Held-out top-1 against epoch of the schedule rule's runs, both arms (lr of the rule)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from hvp_mtl.apis.figures import save_figure_atomically

    study = results['study']
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for arm, label in study['arms'].items():
        for epochs, curve in study['curves'].get(arm, {}).items():
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
