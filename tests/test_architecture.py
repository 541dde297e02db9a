"""The layer order that docs/ARCHITECTURE.md states is the order the imports keep.

The tree at the top of ARCHITECTURE.md lists ``hvp_mtl``'s packages and modules in layer
order, and, indented under a package, the order of its sub-packages: each layer imports only
the layers above it. This test reads that tree and every ``import`` of the package (``ast``,
function-level imports included; ``hvp_mtl/__init__.py``, the plugin's entry that imports
everything, excepted) and names each arrow that runs up. Run it alone with
``python -m pytest tests/test_architecture.py``.
"""
import ast
import pathlib
import re
from typing import Dict, Iterable, Iterator, List, Tuple

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'hvp_mtl'
DOC = ROOT / 'docs' / 'ARCHITECTURE.md'


def stated_order() -> Dict[str, List[str]]:
    """``{'': top-level layers, 'models': its sub-layers, ...}`` from the doc's tree."""
    text = DOC.read_text(encoding='utf-8')
    tree = text[text.index('```\nhvp_mtl/\n') + 4:]
    tree = tree[:tree.index('```')]
    order: Dict[str, List[str]] = {'': []}
    parent = None
    for line in tree.splitlines()[1:]:
        match = re.match(r'^( +)([A-Za-z_]\w*)(/|\.py)\s', line + ' ')
        if not line.startswith(' '):
            break
        if not match:
            continue
        indent, name = len(match.group(1)), match.group(2)
        if indent == 2:
            parent = name
            order[''].append(name)
        elif indent == 4 and parent is not None:
            order.setdefault(parent, []).append(name)
    return order


def _modules() -> Dict[str, pathlib.Path]:
    out = {}
    for path in PACKAGE.rglob('*.py'):
        parts = list(path.relative_to(ROOT).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts = parts[:-1]
        out['.'.join(parts)] = path
    return out


def imports() -> Iterator[Tuple[str, str, int]]:
    """``(importing module, imported hvp_mtl module, line)`` for every import."""
    modules = _modules()
    for name, path in sorted(modules.items()):
        if name == 'hvp_mtl':
            continue
        package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split('.')[:len(package.split('.')) - node.level + 1]
                    module = '.'.join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ''
                targets = [f'{module}.{a.name}' if f'{module}.{a.name}' in modules else module
                           for a in node.names]
            else:
                continue
            for target in targets:
                if target.split('.')[0] == 'hvp_mtl':
                    yield name, target, node.lineno


def upward_arrows(edges: Iterable[Tuple[str, str, int]]) -> List[str]:
    """Every import of ``edges`` from a layer to a layer below it (the doc's order)."""
    order = stated_order()
    arrows = []
    for source, target, line in edges:
        a, b = source.split('.')[1:], target.split('.')[1:]
        for depth, scope in ((0, ''), (1, a[0] if a else '')):
            if depth and (not a or not b or a[0] != b[0]):
                break
            if len(a) <= depth or len(b) <= depth or a[depth] == b[depth]:
                continue
            layers = order.get(scope, [])
            if a[depth] in layers and b[depth] in layers and (
                    layers.index(b[depth]) > layers.index(a[depth])):
                arrows.append(f'{source}:{line} imports {target}')
            break
    return arrows


def test_the_doc_names_every_top_level_part_of_the_package():
    top = stated_order()['']
    parts = {p.stem for p in PACKAGE.iterdir()
             if p.name != '__init__.py' and (p.suffix == '.py' or (p / '__init__.py').exists())}
    assert parts == set(top), (sorted(parts - set(top)), sorted(set(top) - parts))
    for package, layers in stated_order().items():
        if package:  # a listed sub-layer exists
            for layer in layers:
                assert (PACKAGE / package / layer).exists() or (
                    PACKAGE / package / f'{layer}.py').exists(), f'{package}/{layer}'


def test_no_import_runs_up_the_stated_layer_order():
    assert len(list(imports())) > 100  # the parser sees the package's imports
    assert upward_arrows(imports()) == []


def test_an_upward_arrow_is_seen():
    """The check itself: the two arrows the layering once had are reported."""
    edges = [('hvp_mtl.evaluation.val_loop', 'hvp_mtl.engine.runner.resume_state', 3),
             ('hvp_mtl.models.heads.montage', 'hvp_mtl.models.algorithms.mcl', 5),
             ('hvp_mtl.engine.hooks.knn', 'hvp_mtl.evaluation', 7)]
    assert upward_arrows(edges) == [
        'hvp_mtl.evaluation.val_loop:3 imports hvp_mtl.engine.runner.resume_state',
        'hvp_mtl.models.heads.montage:5 imports hvp_mtl.models.algorithms.mcl']
