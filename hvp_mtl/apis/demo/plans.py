"""What the demo runs for each table, and the results file built from those runs.

A table is a set of *arms* (``{arm: (group, init)}``: where its runs are), the tasks measured for
each arm, and the comparisons the verdicts are about. :func:`table_specs` gives the tables a
command asks for; :func:`run_tables` runs every arm they need once per seed (an arm shared by two
tables runs once); :func:`build_results` reads the runs back into the results-file dict.
"""
import os.path as osp
import shlex
import subprocess
import sys

from .objectives import collect_objectives
from .recipes import ablation_weights
from .runner import ROOT
from .table import ABLATIONS, INITS, collect_table, read_stages

__all__ = ['table_specs', 'run_tables', 'build_results', 'git_commit']

ALL_TASKS = ('cls', 'probe', 'det', 'seg')
TRANSFER_TASKS = ('probe', 'det', 'seg')  # Tables 5 and 6: frozen cls, det and seg
SHORT_LABELS = dict(hvp='HVP-MTL', mcl='MCL', random='random')


def table_specs(methods=('hvp', ), ablations=False, sizes=False, tasks=None):
    """The tables of one demo command.

    Args:
        methods (Sequence[str]): Pre-trainings of the main table: ``hvp`` and/or ``mcl``.
        ablations (bool): Add Table 5 (HVP-MTL without each task).
        sizes (bool): Add Table 6 (the demo Swin and a wider, deeper one).
        tasks (Sequence[str], optional): Measure only these of ``cls``, ``probe``, ``det``,
            ``seg`` (default: all in the main table, all but the ``cls`` fine-tune in 5 and 6).

    Returns:
        dict: ``{name: {title, layout, arms, comparisons, tasks, runs}}``; ``runs`` maps each arm
        to ``(group, init, method, loss_weights, arch)``.
    """
    labels = dict(INITS)
    main = dict(title='Demo: pre-trained vs random initialisation', layout='by_metric',
                tasks=ALL_TASKS, arms={}, runs={}, comparisons=[])
    for init in [m for m in ('hvp', 'mcl') if m in methods] + ['random']:
        main['arms'][init] = labels[init]
        main['runs'][init] = ('main', init, None if init == 'random' else init, None, 'demo')
        if init != 'random':
            main['comparisons'].append([init, 'random'])
    tables = dict(main=main)
    if ablations:
        names = dict(ABLATIONS)
        abl = dict(title='Table 5 at demo scale: HVP-MTL without one task', layout='by_arm',
                   tasks=TRANSFER_TASKS, arms={}, runs={}, comparisons=[])
        for variant in names:
            abl['arms'][variant] = names[variant]
            abl['runs'][variant] = ('main', 'hvp', 'hvp', None, 'demo') if variant == 'full' else (
                f'ablation_{variant}', 'hvp', 'hvp', ablation_weights(variant), 'demo')
            if variant != 'full':
                abl['comparisons'].append([variant, 'full'])
        if 'mcl' in methods:
            abl['arms']['mcl'] = labels['mcl']
            abl['runs']['mcl'] = main['runs']['mcl']
            abl['comparisons'].append(['mcl', 'full'])
        abl['arms']['random'] = labels['random']
        abl['runs']['random'] = main['runs']['random']
        abl['comparisons'].append(['full', 'random'])
        tables['ablations'] = abl
    if sizes:
        inits = [m for m in ('hvp', 'mcl') if m in methods] + ['random']
        size = dict(title='Table 6 at demo scale: gain over random init per backbone size (demo '
                    'Swin: C = 32, depths 2-2-2-2; wide Swin: C = 48, depths 2-2-4-2)',
                    layout='by_arm', tasks=TRANSFER_TASKS, arms={}, runs={}, comparisons=[],
                    gain_comparisons=[])
        for arch in ('demo', 'wide'):
            group = 'main' if arch == 'demo' else f'size_{arch}'
            for init in inits:
                arm = f'{arch}_{init}'
                size['arms'][arm] = f'{arch} Swin, {SHORT_LABELS[init]}'
                size['runs'][arm] = (group, init, None if init == 'random' else init, None, arch)
                if init != 'random':
                    size['comparisons'].append([arm, f'{arch}_random'])
        # the paper's claim "larger gains for larger models": wide gain minus demo gain
        size['gain_comparisons'] = [[[f'wide_{init}', 'wide_random'],
                                     [f'demo_{init}', 'demo_random']]
                                    for init in inits if init != 'random']
        tables['sizes'] = size
    if tasks:
        for table in tables.values():
            table['tasks'] = tuple(t for t in table['tasks'] if t in tasks)
    # run order (seed by seed): the main arms, the other size, then the ablations
    return {name: tables[name] for name in ('main', 'sizes', 'ablations') if name in tables}


def run_tables(demo, tables, seeds):
    """Run every arm of ``tables`` for every seed (main arms first, then by seed)."""
    jobs = {}
    for table in tables.values():
        for arm, (group, init, method, weights, arch) in table['runs'].items():
            job = jobs.setdefault((group, init), dict(method=method, weights=weights, arch=arch,
                                                      tasks=[]))
            job['tasks'] += [t for t in table['tasks'] if t not in job['tasks']]
    for seed in seeds:
        for (group, init), job in jobs.items():
            demo.arm(seed, group, init, [t for t in ALL_TASKS if t in job['tasks']],
                     job['method'], job['weights'], job['arch'])


def _git(*args):
    try:
        return subprocess.run(['git', *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ''


def git_commit():
    """The checkout's commit (``'unknown'`` outside git)."""
    return _git('rev-parse', 'HEAD') or 'unknown'


def build_results(work_dir, tables, seeds, size, argv, world='colour'):
    """The results-file dict (see :mod:`.report`) of a demo work dir."""
    out_tables = {}
    for name, spec in tables.items():
        arms = {arm: spec['runs'][arm][:2] for arm in spec['arms']}
        out_tables[name] = dict(title=spec['title'], layout=spec['layout'], arms=spec['arms'],
                                comparisons=spec['comparisons'],
                                rows=collect_table(work_dir, seeds, arms, set(spec['tasks'])))
        if spec.get('gain_comparisons'):
            out_tables[name]['gain_comparisons'] = spec['gain_comparisons']
    runs = {}  # the HVP-MTL pre-trainings, each once, under the first arm that uses it
    for spec in tables.values():
        for arm, (group, init, method, _, _) in spec['runs'].items():
            if method == 'hvp':
                runs.setdefault(f'{group}/{init}', (spec['arms'][arm], group, init))
    objectives = collect_objectives(work_dir, seeds, runs)
    stages = read_stages(work_dir)
    dirty = bool(_git('status', '--porcelain', '--untracked-files=no'))
    command = ' '.join(shlex.quote(a) for a in [osp.relpath(sys.argv[0], ROOT)] + list(argv))
    extra = {} if world == 'colour' else dict(world=world)  # colour files stay as they were
    return dict(commit=git_commit(), dirty_tree=dirty, **extra,
                command=f'python {command}', size=size, seeds=list(seeds), tables=out_tables,
                objectives=objectives,
                stages=stages, wall_s=round(sum(s['wall'] for s in stages.values()), 1),
                cpu_s=round(sum(s['cpu'] for s in stages.values()), 1))
