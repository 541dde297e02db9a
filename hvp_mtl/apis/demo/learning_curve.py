"""The learning curve that sets the evidence study's pre-training budget.

``demo/run_demo.py --learning-curve`` pre-trains the demo's HVP-MTL config at each point of
:data:`CURVE_POINTS` (distinct pre-training images x iterations, batch 32) on each world
(``colour``, the demo's, and ``gray``, its colour-free variant), then measures

* every objective on the held-out ``pretrain/val.txt`` against its trivial baseline (the run's
  ``objectives.json``; the curve plots the multi-label mAP over the label prior), and
* the frozen export on the classification split: the linear probe and kNN (against the same
  probes of a random init of the same seed, one per world),

and writes ``learning_curve.json`` and a chart. :func:`choose_budget` picks the smallest point
(by pre-training CPU time) at which the multi-label objective is learned on every world.
"""
import json
import os.path as osp

from hvp_mtl.utils.atomic_io import atomic_write

from .recipes import SIZES

__all__ = ['CURVE_POINTS', 'CURVE_WORLDS', 'run_learning_curve', 'read_learning_curve',
           'choose_budget', 'write_learning_curve', 'plot_learning_curve',
           'render_learning_curve']

#: (distinct pre-training images, iterations); the demo itself is (512, 300)
CURVE_POINTS = ((512, 300), (512, 1000), (4000, 1000), (4000, 3000))
CURVE_WORLDS = ('colour', 'gray')


def point_dir(work_dir, world, images, iters):
    return osp.join(work_dir, 'curve', world, f'img{images}_it{iters}')


def run_learning_curve(demo_cls, work_dir, data_dir, worlds=CURVE_WORLDS, points=CURVE_POINTS,
                       seed=0, **demo_kwargs):
    """Run every point (finished stages are skipped) and return :func:`read_learning_curve`."""
    base = SIZES['default']
    for world in worlds:
        probed_random = False
        for images, iters in points:
            data = osp.join(data_dir, f'curve_{world}_{images}')
            demo = demo_cls(work_dir, data, 'default', world=world, **demo_kwargs)
            demo.size = dict(base, pretrain=iters, world=dict(base['world'], num_pretrain=images))
            tag = f'curve {world} {images}img'
            demo.make_world(stage=f'{tag} data')
            where = point_dir(work_dir, world, images, iters)
            ckpt = demo.pretrain(f'{tag} {iters}it pretrain', osp.join(where, 'pretrain'), seed)
            backbone = osp.join(where, 'backbone.pth')
            demo.export(f'{tag} {iters}it export', ckpt, backbone)
            demo.probe(f'{tag} {iters}it probe', osp.join(where, 'probe.json'), backbone, seed)
            if not probed_random:  # the cls split is the same at every point of a world
                demo.probe(f'curve {world} probe random',
                           osp.join(work_dir, 'curve', world, 'probe_random.json'), None, seed)
                probed_random = True
    return read_learning_curve(work_dir, worlds, points)


def read_json(path):
    """The JSON object in ``path``, or ``None`` where the file does not exist (not run yet)."""
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def read_learning_curve(work_dir, worlds=CURVE_WORLDS, points=CURVE_POINTS):
    """``{world: {random_probe, points: [{images, iters, cpu_s, objectives, probe}]}}``."""
    stages = read_json(osp.join(work_dir, 'stages.json')) or {}
    out = {}
    for world in worlds:
        random_probe = read_json(osp.join(work_dir, 'curve', world, 'probe_random.json'))
        rows = []
        for images, iters in points:
            where = point_dir(work_dir, world, images, iters)
            history = read_json(osp.join(where, 'pretrain', 'objectives.json'))
            probe = read_json(osp.join(where, 'probe.json'))
            stage = stages.get(f'curve {world} {images}img {iters}it pretrain', {})
            rows.append(dict(images=images, iters=iters, cpu_s=stage.get('cpu'),
                             objectives=history[-1]['objectives'] if history else None,
                             probe=probe and dict(linear=probe['linear']['top1'],
                                                  knn=probe['knn']['top1'])))
        out[world] = dict(points=rows, random_probe=random_probe and dict(
            linear=random_probe['linear']['top1'], knn=random_probe['knn']['top1']))
    return out


def choose_budget(curve):
    """The cheapest point where the multi-label objective is learned on every world.

    Returns:
        dict: ``images``, ``iters``, ``cpu_s`` (the largest over worlds) and ``reason``; or
        ``None`` when no measured point of the grid reaches it.
    """
    worlds = list(curve)
    candidates = []
    for i, row in enumerate(curve[worlds[0]]['points']):
        rows = [curve[w]['points'][i] for w in worlds]
        if any(r['objectives'] is None or 'mlc' not in r['objectives'] for r in rows):
            continue
        if all(r['objectives']['mlc']['learned'] for r in rows):
            cpu = max(r['cpu_s'] or 0 for r in rows)
            candidates.append((cpu, row['images'], row['iters']))
    if not candidates:
        return None
    cpu, images, iters = min(candidates)
    return dict(images=images, iters=iters, cpu_s=cpu,
                reason='the cheapest grid point whose multi-label mAP closes the learned margin '
                       'over the label prior on every world')


def write_learning_curve(curve, out_file, meta):
    """``learning_curve.json``: the curve, the chosen budget and ``meta`` (command, commit)."""
    with atomic_write(out_file, encoding='utf-8') as f:
        json.dump(dict(meta, curve=curve, budget=choose_budget(curve)), f, indent=1)
    return out_file


def plot_learning_curve(curve, out_file, dpi=100):
    """Two panels against iterations: mAP gain over the prior, and the linear probe."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from hvp_mtl.apis.figures import save_figure_atomically

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 3.6))
    colours = dict(colour='tab:red', gray='tab:gray')
    for world, data in curve.items():
        for images, style in ((512, 'o--'), (4000, 's-')):
            rows = [r for r in data['points'] if r['images'] == images and r['objectives']]
            x = [r['iters'] for r in rows]
            gain = [r['objectives']['mlc']['value'] - r['objectives']['mlc']['baseline']
                    for r in rows if 'mlc' in r['objectives']]
            ax0.plot(x[:len(gain)], gain, style, color=colours.get(world),
                     label=f'{world}, {images} images')
            probe = [r['probe']['linear'] for r in rows if r['probe']]
            ax1.plot(x[:len(probe)], probe, style, color=colours.get(world),
                     label=f'{world}, {images} images')
        if data['random_probe']:
            ax1.axhline(data['random_probe']['linear'], color=colours.get(world), lw=0.8,
                        ls=':', label=f'{world}, random init')
    ax0.axhline(0, color='k', lw=0.5)
    ax0.set(xscale='log', xlabel='pre-training iterations (batch 32)',
            ylabel='val mAP - label-prior mAP (points)',
            title='multi-label objective on held-out images')
    ax1.set(xscale='log', xlabel='pre-training iterations (batch 32)',
            ylabel='linear probe top-1 (%)', title='frozen export, 6-shape classification')
    for ax in (ax0, ax1):
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure_atomically(fig, out_file, dpi)
    return out_file


def _fmt(value, digits=2):
    return 'not measured' if value is None else f'{value:.{digits}f}'


def render_learning_curve(results):
    """Markdown of a ``learning_curve.json``: one line per world and point, then the budget."""
    lines = ['#### Learning curve: what the pre-training learns against its budget', '',
             '| world | images | iterations | pre-training CPU min | mlc mAP / label prior | '
             'mlc learned | SwAV / ln K | MIM / zero | linear probe (random init) | kNN '
             '(random init) |', '|' + '---|' * 10]
    for world, data in results['curve'].items():
        rand = data['random_probe'] or {}
        for row in data['points']:
            obj, probe = row['objectives'] or {}, row['probe'] or {}
            mlc, swav, mim = obj.get('mlc'), obj.get('swav'), obj.get('mim')
            lines.append(' | '.join([
                f'| {world}', str(row['images']), str(row['iters']),
                _fmt(row['cpu_s'] and row['cpu_s'] / 60, 1),
                f'{_fmt(mlc and mlc["value"])} / {_fmt(mlc and mlc["baseline"])}',
                'not measured' if not mlc else ('yes' if mlc['learned'] else 'no'),
                f'{_fmt(swav and swav["value"], 3)} / {_fmt(swav and swav["baseline"], 3)}',
                f'{_fmt(mim and mim["value"], 3)} / {_fmt(mim and mim["baseline"], 3)}',
                f'{_fmt(probe.get("linear"))} ({_fmt(rand.get("linear"))})',
                f'{_fmt(probe.get("knn"))} ({_fmt(rand.get("knn"))}) |']))
    budget = results.get('budget')
    lines += ['', 'Chosen budget: ' + (
        f'{budget["images"]} images x {budget["iters"]} iterations '
        f'({budget["cpu_s"] / 60:.1f} CPU min per pre-training): {budget["reason"]}.'
        if budget else 'none of the measured points learns the multi-label objective on '
        'every world.'),
        '', f'Command: `{results.get("command", "")}` (commit {results.get("commit", "")[:10]}).']
    return '\n'.join(lines) + '\n'
