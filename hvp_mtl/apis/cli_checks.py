"""Command-line checks of ``tools/train.py`` / ``tools/test.py`` that turn a typo into advice.

- :func:`find_config`: a config path that does not exist names the nearest configs under
  ``configs/`` (``difflib``) instead of ending in a traceback;
- :func:`check_cfg_option_keys`: a ``--cfg-options`` key whose top level the config does not
  have (``chekpoint=...``) is an error naming the closest existing keys, unless new keys are
  allowed explicitly (mmengine itself adds any key silently, so a fine-tune would run from the
  config's default checkpoint); the keys mmengine's ``Runner`` reads with a default
  (``randomness``, ``env_cfg``, ``load_from``, ...: :func:`runner_keys`) are always known;
- :func:`add_vis_backends`: ``--vis tensorboard|wandb|mlflow`` adds mmengine's backend to the
  config's visualizer, with a clear message when the optional package is not installed.
"""
import difflib
import importlib.util
import os
import os.path as osp

__all__ = ['CONFIG_ROOTS', 'find_config', 'runner_keys', 'check_cfg_option_keys',
           'VIS_BACKENDS', 'add_vis_backends']

#: where configs are looked for: the current directory's ``configs/`` and the project's own
CONFIG_ROOTS = ('configs', osp.join(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))), 'configs'))


def _config_files():
    """Every ``.py`` config under :data:`CONFIG_ROOTS`, as ``configs/...`` relative paths."""
    found = set()
    for root in CONFIG_ROOTS:
        if not osp.isdir(root):
            continue
        for dirpath, _, files in os.walk(root):
            for name in files:
                if name.endswith('.py') and '_base_' not in dirpath.split(os.sep):
                    rel = osp.relpath(osp.join(dirpath, name), osp.dirname(root))
                    found.add(rel.replace(os.sep, '/'))
    return sorted(found)


def find_config(path, n=3):
    """Return ``path`` if it is a file, else raise a ``FileNotFoundError`` with near names.

    Args:
        path (str): The config path given on the command line.
        n (int): How many suggestions at most.

    Returns:
        str: ``path``.

    Raises:
        FileNotFoundError: ``path`` is not a file; the message names the configs under
            ``configs/`` whose path (or file name) is closest to it.
    """
    if osp.isfile(path):
        return path
    candidates = _config_files()
    wanted = path.replace(os.sep, '/').lstrip('./')
    near = difflib.get_close_matches(wanted, candidates, n=n, cutoff=0.5)
    by_name = {osp.basename(c): c for c in candidates}
    for name in difflib.get_close_matches(osp.basename(path), list(by_name), n=n, cutoff=0.5):
        if by_name[name] not in near:
            near.append(by_name[name])
    hint = ('; near names under configs/: ' + ', '.join(near[:n])) if near else (
        f'; no config under configs/ is close ({len(candidates)} configs there)')
    raise FileNotFoundError(f'config file not found: {path}{hint}')


def runner_keys():
    """The top-level config keys mmengine's ``Runner`` reads, each with a default.

    A config need not set them (``randomness``, ``env_cfg``, ``load_from``, ``resume``,
    ``launcher``, ...), so ``--cfg-options randomness.seed=0`` on a config without a
    ``randomness`` dict is a knob of the runner, not a typo. Read from ``Runner.__init__``'s
    signature (plus ``compile``, which ``Runner.train`` reads from the config), so the list
    follows the installed mmengine.

    Returns:
        frozenset[str]: The key names.
    """
    import inspect

    from mmengine.runner import Runner
    params = set(inspect.signature(Runner.__init__).parameters) - {'self', 'cfg'}
    return frozenset(params | {'compile'})


def check_cfg_option_keys(cfg, options, allow_new=False, flag='--cfg-allow-new-keys'):
    """Refuse ``--cfg-options`` keys whose top level is not in ``cfg``.

    Args:
        cfg (mmengine.Config): The loaded config.
        options (dict | None): What ``DictAction`` parsed (``{'a.b': value}``).
        allow_new (bool): Accept new top-level keys (the explicit opt-in).
        flag (str): The opt-in flag, named in the message.

    Raises:
        ValueError: A top-level key the config does not have and the runner does not read
            (:func:`runner_keys`), with the closest ones.
    """
    if not options or allow_new:
        return
    known = runner_keys()
    existing = sorted(set(cfg.keys()) | known)
    problems = []
    for key in options:
        top = key.split('.', 1)[0]
        if top in cfg or top in known:
            continue
        near = difflib.get_close_matches(top, existing, n=3, cutoff=0.6)
        problems.append(f'{top!r}' + (f' (did you mean {", ".join(map(repr, near))}?)'
                                      if near else ' (no similar key)'))
    if problems:
        raise ValueError(f'--cfg-options: the config has no top-level key {"; ".join(problems)}. '
                       f'Fix the name, or pass {flag} to add a new key on purpose.')


#: ``--vis`` name -> (mmengine backend type, the module it needs, how to install it)
VIS_BACKENDS = {
    'tensorboard': ('TensorboardVisBackend', 'tensorboard', 'pip install tensorboard'),
    'wandb': ('WandbVisBackend', 'wandb', 'pip install wandb (or pip install -e .[wandb]), '
              'then `wandb login`'),
    'mlflow': ('MLflowVisBackend', 'mlflow', 'pip install mlflow (or pip install -e .[mlflow])'),
}


def add_vis_backends(cfg, names, run_name=None):
    """Add the visualizer backends ``names`` to ``cfg.visualizer`` (in place).

    A backend already in the config is kept as it is. The config's visualizer (or an
    mmengine ``Visualizer`` with a ``LocalVisBackend`` if it has none) keeps its other backends.

    Args:
        cfg (mmengine.Config): The config; changed in place.
        names (list[str]): Keys of :data:`VIS_BACKENDS`.
        run_name (str, optional): The W&B run / MLflow run name (default: none set).

    Raises:
        ImportError: A backend's package is not installed; the message says how to install it.
    """
    for name in names or ():
        backend, module, install = VIS_BACKENDS[name]
        if importlib.util.find_spec(module) is None:
            raise ImportError(f'--vis {name} needs the optional package {module!r}, which is '
                              f'not installed: {install}')
    vis = cfg.get('visualizer') or dict(type='Visualizer')
    backends = list(vis.get('vis_backends') or [dict(type='LocalVisBackend')])
    have = {b.get('type', '').split('.')[-1] for b in backends}
    for name in names or ():
        backend = VIS_BACKENDS[name][0]
        if backend in have:
            continue
        entry = dict(type=backend)
        if name == 'wandb':
            entry['init_kwargs'] = dict(project='hvp_mtl', **({'name': run_name} if run_name
                                                                else {}))
        elif name == 'mlflow':
            entry.update(exp_name='hvp_mtl', **({'run_name': run_name} if run_name else {}))
        backends.append(entry)
        have.add(backend)
    vis['vis_backends'] = backends
    cfg.visualizer = vis
