"""The demo world's multi-label class dictionary and its tagging rule.

The dictionary mirrors ``dictionary_and_semantic_hierarchy.txt``: four roots
(shape, colour, texture, count), their children, the 36 "colour shape"
leaves (parent: the shape) and four background textures (parent: texture)::

    0 shape | 1 colour | 2 texture | 3 count
    4-9   circle ... triangle         (parent 0)
    10-15 red ... cyan                (parent 1)
    16-19 plain ... checkered         (parent 2, object fill)
    20-23 one ... four objects        (parent 3)
    24-59 'red circle' ...            (parent: the shape)
    60-63 'plain background' ...      (parent 2)

Tagging mimics how ML-Images was made. "ImageNet-like" images carry their
leaf labels and every ancestor at confidence 1. "Open-Images-like" images
were machine-tagged: leaves and ancestors at 0.9, co-occurring attributes
(fill texture, background, count) at 0.8.
"""
from typing import Dict, List, Tuple

from .scenes import COLOURS, GRAY_LEVELS, SHAPES, TEXTURES, Scene

__all__ = ['DICTIONARY', 'class_index', 'scene_tags', 'write_dictionary',
           'COUNT_NAMES', 'class_names']

COUNT_NAMES = ('one object', 'two objects', 'three objects', 'four objects')


def _build_dictionary() -> List[Tuple[str, int, str]]:
    """Rows ``(wnid, parent_index, name)`` in index order."""
    rows = [('dw000000', -1, 'shape'), ('dw000001', -1, 'colour'),
            ('dw000002', -1, 'texture'), ('dw000003', -1, 'count')]
    rows += [(None, 0, s) for s in SHAPES]
    rows += [(None, 1, c) for c in COLOURS]
    rows += [(None, 2, t) for t in TEXTURES]
    rows += [(None, 3, n) for n in COUNT_NAMES]
    rows += [(None, 4 + SHAPES.index(s), f'{c} {s}') for c in COLOURS for s in SHAPES]
    rows += [(None, 2, f'{t} background') for t in TEXTURES]
    return [(wnid or f'dw{i:06d}', parent, name)
            for i, (wnid, parent, name) in enumerate(rows)]


DICTIONARY = _build_dictionary()
_INDEX: Dict[str, int] = {name: i for i, (_, _, name) in enumerate(DICTIONARY)}


def class_index(name: str) -> int:
    """Index of a class name of :data:`DICTIONARY`."""
    return _INDEX[name]


def _with_ancestors(index: int) -> List[int]:
    chain = [index]
    while DICTIONARY[chain[-1]][1] >= 0:
        chain.append(DICTIONARY[chain[-1]][1])
    return chain


def scene_tags(scene: Scene, machine_tagged: bool) -> Dict[int, float]:
    """Class index -> confidence for one scene (see the module doc)."""
    leaf_conf, cooccur_conf = (0.9, 0.8) if machine_tagged else (1.0, 1.0)
    tags: Dict[int, float] = {}

    def add(index, conf):
        for i in _with_ancestors(index):
            tags[i] = max(tags.get(i, 0.0), conf)

    for obj in scene.objects:
        add(class_index(f'{obj.colour} {obj.shape}'), leaf_conf)
        add(class_index(obj.colour), leaf_conf)
        add(class_index(obj.texture), cooccur_conf)
    add(class_index(f'{scene.background_texture} background'), cooccur_conf)
    if scene.objects:
        add(class_index(COUNT_NAMES[min(len(scene.objects), 4) - 1]), cooccur_conf)
    return tags


def class_names(palette: str = 'colour') -> List[str]:
    """The class names of :data:`DICTIONARY` as a world of ``palette`` writes them.

    The colour-free world (``'gray'``) keeps every index, id and parent: the ``colour`` root
    is named ``intensity``, each colour its gray level (``scenes.GRAY_LEVELS``), and each
    ``'<colour> <shape>'`` leaf ``'<level> <shape>'``.
    """
    names = [name for _, _, name in DICTIONARY]
    if palette == 'colour':
        return names
    levels = {colour: level for colour, (level, _) in GRAY_LEVELS.items()}
    out = []
    for name in names:
        head, _, rest = name.partition(' ')
        if name == 'colour':
            out.append('intensity')
        elif head in levels:
            out.append(' '.join(filter(None, [levels[head], rest])))
        else:
            out.append(name)
    return out


def write_dictionary(path: str, palette: str = 'colour'):
    """Write :data:`DICTIONARY` (names of ``palette``) in the official tab-separated layout."""
    names = class_names(palette)
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write('category_index\tcategory_id\tindex_of_parent_category\t'
                'category name\n')
        for i, (wnid, parent, _) in enumerate(DICTIONARY):
            f.write(f'{i}\t{wnid}\t{parent}\t{names[i]}\n')
