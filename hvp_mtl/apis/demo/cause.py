"""The cause study: which task, and which phase of pre-training, moves the features onto colour.

``demo/run_demo.py --cause`` pre-trains the demo's HVP-MTL config once per arm of
:data:`CAUSE_ARMS` (all four tasks; each task alone; each left out as in Table 5) for the largest
of :data:`CAUSE_ITERS` iterations, keeps the checkpoints at every point of :data:`CAUSE_ITERS` (one
cosine schedule: the earlier points are the *phase* of that run, not shorter runs), exports the
student's backbone at each point (and the EMA teacher's, the default export, where distillation is
on), and probes each export on the classification split (``demo/probe_backbone.py``): RankMe, the
top-5 principal components' variance share, the colour share (R² of the top two components and of
all features from each image's per-channel mean and std), the linear probe and the kNN on raw and
whitened features, beside the same probes of a random initialisation of the seed. It writes
``cause.json`` and a chart. The protocol is docs/RESULTS.md's ("The cause").
"""
import glob
import json
import os
import os.path as osp

from hvp_mtl.utils.atomic_io import atomic_write

from .learning_curve import read_json
from .recipes import SIZES, ablation_weights

__all__ = ['CAUSE_ITERS', 'CAUSE_ARMS', 'cause_weights', 'run_cause', 'read_cause',
           'write_cause', 'plot_cause', 'render_cause']

#: the points of the one pre-training schedule per arm (iterations at batch 32)
CAUSE_ITERS = (100, 300, 1000)
TASKS = ('mim', 'swav', 'mlc', 'distill')
#: arm -> label; weights from :func:`cause_weights`
CAUSE_ARMS = dict(full='all four tasks', mim_only='MIM only', swav_only='SwAV only',
                  mlc_only='multi-label only', wo_multilabel='w/o multi-label (and distillation)',
                  wo_contrastive='w/o SwAV', wo_mim='w/o MIM', wo_distillation='w/o distillation')
PROBE_ROWS = ('rankme', 'top5_share', 'colour_top2_r2', 'colour_total_r2')


def cause_weights(arm):
    """The ``model.loss_weights`` overrides of an arm (``{}`` for all four tasks).

    Single-task arms switch the other three off (distillation alone is not an arm: its target is
    the student's own EMA, with no task to carry information into either); leave-one-out arms are
    the Table 5 configs' own weights (:func:`ablation_weights`).
    """
    if arm == 'full':
        return {}
    if arm.endswith('_only'):
        keep = arm[:-len('_only')]
        return {t: 0.0 for t in TASKS if t != keep}
    return ablation_weights(arm)


def arm_dir(work_dir, seed, arm):
    return osp.join(work_dir, 'cause', f'seed_{seed}', arm)


def exports_of(weights):
    """``student`` always; ``teacher`` (the default export) where distillation is on."""
    return ('student', 'teacher') if weights.get('distill', 1.0) > 0 else ('student', )


def run_cause(demo, seed=0, arms=None, iters=CAUSE_ITERS):
    """Run every arm (finished stages are skipped); returns :func:`read_cause`."""
    demo.size = dict(SIZES[demo.size_name], pretrain=max(iters))
    demo.make_world()
    demo.probe(f'cause s{seed} probe random', osp.join(demo.work_dir, 'cause', f'seed_{seed}',
                                                        'probe_random.json'), None, seed)
    for arm in arms or CAUSE_ARMS:
        weights = cause_weights(arm)
        where = arm_dir(demo.work_dir, seed, arm)
        last = demo.pretrain(f'cause s{seed} {arm} pretrain', osp.join(where, 'pretrain'), seed,
                             'hvp', weights, checkpoint_interval=min(iters))
        for it in iters:
            ckpt = osp.join(osp.dirname(last), f'iter_{it}.pth')
            for weights_of in exports_of(weights):
                backbone = osp.join(where, f'backbone_{weights_of}_iter{it}.pth')
                demo.export(f'cause s{seed} {arm} {it}it export {weights_of}', ckpt, backbone,
                            weights_of)
                demo.probe(f'cause s{seed} {arm} {it}it probe {weights_of}',
                           osp.join(where, f'probe_{weights_of}_iter{it}.json'), backbone, seed)
        for path in glob.glob(osp.join(osp.dirname(last), 'iter_*.pth')):  # the others: disk
            if int(osp.basename(path)[5:-4]) not in iters:
                os.remove(path)
    return read_cause(demo.work_dir, [seed], arms, iters)


def probe_row(probe):
    """The cause study's numbers of one probe file's dict (``None`` stays ``None``)."""
    if probe is None:
        return None
    row = {k: probe['representation'][k] for k in PROBE_ROWS}
    row.update(linear=probe['linear']['top1'], knn_raw=probe['knn_spaces']['raw'],
               knn_whitened=probe['knn_spaces']['whitened'])
    return row


def read_cause(work_dir, seeds=(0, ), arms=None, iters=CAUSE_ITERS):
    """The probe rows of a cause work dir.

    Returns:
        dict: ``{seed: {random, arms: {arm: {label, loss_weights, points}}}}``, each point
        ``{iters, student[, teacher]}`` (``None`` where not measured).
    """
    out = {}
    for seed in seeds:
        base = osp.join(work_dir, 'cause', f'seed_{seed}')
        arms_out = {}
        for arm in arms or CAUSE_ARMS:
            weights = cause_weights(arm)
            where = arm_dir(work_dir, seed, arm)
            points = [dict(iters=it, **{
                w: probe_row(read_json(osp.join(where, f'probe_{w}_iter{it}.json')))
                for w in exports_of(weights)}) for it in iters]
            arms_out[arm] = dict(label=CAUSE_ARMS[arm], loss_weights=weights, points=points)
        out[str(seed)] = dict(random=probe_row(read_json(osp.join(base, 'probe_random.json'))),
                              arms=arms_out)
    return out


def write_cause(cause, out_file, meta):
    """``cause.json``: the rows and ``meta`` (command, commit)."""
    with atomic_write(out_file, encoding='utf-8') as f:
        json.dump(dict(meta, cause=cause), f, indent=1)
    return out_file


def plot_cause(cause, out_file, seed=None, dpi=100):
    """Three panels against iterations (students): colour R² of the top two PCs, RankMe, kNN."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from hvp_mtl.apis.figures import save_figure_atomically

    data = cause[next(iter(cause)) if seed is None else seed]
    keys = (('colour_top2_r2', 'colour R² of the top-2 PCs'), ('rankme', 'RankMe'),
            ('knn_whitened', 'kNN top-1, whitened (%)'))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (key, title) in zip(axes, keys):
        for arm, spec in data['arms'].items():
            rows = [(p['iters'], p['student'][key]) for p in spec['points'] if p['student']]
            if rows:
                ax.plot(*zip(*rows), 'o-' if arm == 'full' else 'o--', label=spec['label'],
                        lw=2.2 if arm == 'full' else 1)
        if data['random']:
            ax.axhline(data['random'][key], color='k', lw=0.8, ls=':', label='random init')
        ax.set(xscale='log', xlabel='pre-training iteration (batch 32)', title=title)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    save_figure_atomically(fig, out_file, dpi)
    return out_file


def _fmt(row, key, digits):
    return 'not measured' if not row else f'{row[key]:.{digits}f}'


def render_cause(results, seed=None):
    """Markdown of a ``cause.json``: one line per arm, iteration and export (of ``seed``,
    default: the file's first seed)."""
    seed = next(iter(results['cause'])) if seed is None else seed
    cols = (('rankme', 1), ('top5_share', 3), ('colour_top2_r2', 3), ('colour_total_r2', 3),
            ('linear', 2), ('knn_raw', 2), ('knn_whitened', 2))
    lines = [f'#### The cause: colour and rank along pre-training (seed {seed})', '',
             '| arm | iteration | export | RankMe | top-5 share | colour R² top-2 PCs | colour '
             'R² all | linear probe | kNN raw | kNN whitened |', '|' + '---|' * 10]
    data = results['cause'][seed]
    lines.append(' | '.join(['| random init', '0', '-'] + [_fmt(data['random'], k, d)
                                                           for k, d in cols]) + ' |')
    for spec in data['arms'].values():
        for point in spec['points']:
            for export in ('student', 'teacher'):
                if export in point:
                    lines.append(' | '.join([f'| {spec["label"]}', str(point['iters']), export]
                                            + [_fmt(point[export], k, d) for k, d in cols]) + ' |')
    lines += ['', f'Command: `{results.get("command", "")}` (commit '
              f'{results.get("commit", "")[:10]}).']
    return '\n'.join(lines) + '\n'
