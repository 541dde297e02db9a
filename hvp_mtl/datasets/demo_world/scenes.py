"""Procedural scenes: coloured, textured shapes on textured backgrounds.

Everything is drawn with numpy and PIL from an explicit
``numpy.random.Generator``, so the same seed gives the same pixels. A scene
is a background plus a few non-overlapping objects; each object has a shape,
a colour, a fill texture, a centre, a radius and a rotation, and its exact
outline as a polygon (used for COCO masks and for rasterisation).
"""
import math
from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = ['SHAPES', 'COLOURS', 'TEXTURES', 'GRAY_LEVELS', 'PALETTES', 'SceneObject', 'Scene',
           'sample_scene', 'render_scene']

# sorted, so that folder scanning (mmpretrain CustomDataset) and list files
# give the same class indices
SHAPES = ('circle', 'cross', 'hexagon', 'square', 'star', 'triangle')
COLOURS = {  # saturated object colours (RGB)
    'red': (220, 40, 40), 'green': (40, 180, 60), 'blue': (40, 80, 220),
    'yellow': (235, 210, 40), 'magenta': (200, 50, 200), 'cyan': (40, 200, 210)
}
TEXTURES = ('plain', 'striped', 'dotted', 'checkered')
#: The colour-free world (``palette='gray'``): each colour slot becomes a gray level, named
#: after it. Every level is outside the background's range (74-185 after its texture shade),
#: three below it and three above, 20-30 apart, so that the level (the tag) stays visible and
#: distinct against any background; the +-8 jitter per object keeps neighbours apart.
GRAY_LEVELS = {'red': ('black', 14), 'green': ('charcoal', 38), 'blue': ('dim', 62),
               'yellow': ('light', 200), 'magenta': ('pale', 226), 'cyan': ('white', 250)}
PALETTES = ('colour', 'gray')


@dataclass
class SceneObject:
    shape: str
    colour: str
    texture: str
    centre: Tuple[float, float]  # (x, y) in pixels
    radius: float
    angle: float  # radians
    polygon: List[Tuple[float, float]] = field(default_factory=list)

    @property
    def bbox(self) -> Tuple[float, float, float, float]:
        """``(x, y, w, h)`` of the polygon."""
        xs, ys = zip(*self.polygon)
        return min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)


@dataclass
class Scene:
    size: int
    background_texture: str
    background_colour: Tuple[int, int, int]
    texture_period: float
    objects: List[SceneObject]


def shape_polygon(shape: str, centre, radius: float, angle: float):
    """Outline of a shape as a list of ``(x, y)`` vertices."""
    if shape == 'circle':
        points = [(1.0, 2 * math.pi * k / 40) for k in range(40)]
    elif shape == 'square':
        points = [(1.0, math.pi / 4 + math.pi / 2 * k) for k in range(4)]
    elif shape == 'triangle':
        points = [(1.0, -math.pi / 2 + 2 * math.pi / 3 * k) for k in range(3)]
    elif shape == 'hexagon':
        points = [(1.0, math.pi / 3 * k) for k in range(6)]
    elif shape == 'star':
        points = [(1.0 if k % 2 == 0 else 0.45, -math.pi / 2 + math.pi / 5 * k)
                  for k in range(10)]
    elif shape == 'cross':
        a = 0.33  # half width of an arm, relative to the radius
        corners = [(a, 1), (a, a), (1, a), (1, -a), (a, -a), (a, -1),
                   (-a, -1), (-a, -a), (-1, -a), (-1, a), (-a, a), (-a, 1)]
        points = [(math.hypot(x, y), math.atan2(y, x)) for x, y in corners]
    else:
        raise ValueError(f'unknown shape {shape!r}')
    cx, cy = centre
    return [(cx + radius * r * math.cos(t + angle),
             cy + radius * r * math.sin(t + angle)) for r, t in points]


def texture_pattern(texture: str, size: int, period: float, phase: float,
                    slope: float) -> np.ndarray:
    """Boolean [size, size] pattern: True = foreground shade."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    half = period / 2
    if texture == 'plain':
        return np.ones((size, size), dtype=bool)
    if texture == 'striped':
        return ((xx + slope * yy + phase) // half) % 2 == 0
    if texture == 'dotted':
        dx = (xx + phase) % period - half
        dy = (yy + phase) % period - half
        return dx * dx + dy * dy > (period / 3.2)**2
    if texture == 'checkered':
        return (((xx + phase) // half) + ((yy + phase) // half)) % 2 == 0
    raise ValueError(f'unknown texture {texture!r}')


def sample_scene(rng: np.random.Generator, size: int, num_objects: int,
                 radius_range=(0.12, 0.24), dominant_radius=None,
                 shapes=SHAPES, first_shape=None) -> Scene:
    """Draw a scene with up to ``num_objects`` non-overlapping objects.

    Args:
        rng (np.random.Generator): The only source of randomness.
        size (int): Image side in pixels.
        num_objects (int): Objects to place (fewer if they do not fit).
        radius_range (tuple): Object radius range, as a fraction of ``size``.
        dominant_radius (tuple, optional): If set, the first object is drawn
            with this radius range (fraction of ``size``): the dominant
            object of a classification image.
        shapes (Sequence[str]): Shapes to draw from.
        first_shape (str, optional): Force the shape of the first object.

    Returns:
        Scene: The scene; objects in drawing order.
    """
    objects: List[SceneObject] = []
    for index in range(num_objects):
        low, high = (dominant_radius if index == 0 and dominant_radius
                     else radius_range)
        for _ in range(30):  # rejection sampling of a free spot
            radius = float(rng.uniform(low, high)) * size
            margin = radius + 1
            centre = (float(rng.uniform(margin, size - margin)),
                      float(rng.uniform(margin, size - margin)))
            if all(math.dist(centre, o.centre) > radius + o.radius + 2
                   for o in objects):
                break
        else:
            continue
        shape = str(rng.choice(shapes))
        if index == 0 and first_shape is not None:
            shape = first_shape
        angle = float(rng.uniform(-math.pi / 12, math.pi / 12))
        obj = SceneObject(shape, str(rng.choice(list(COLOURS))),
                          str(rng.choice(TEXTURES)), centre, radius, angle)
        obj.polygon = shape_polygon(shape, centre, radius, angle)
        objects.append(obj)
    grey = rng.uniform(95, 185)
    tint = rng.uniform(-18, 18, size=3)
    return Scene(size=size,
                 background_texture=str(rng.choice(TEXTURES)),
                 background_colour=tuple(int(v) for v in np.clip(grey + tint, 0, 255)),
                 texture_period=float(rng.uniform(4, 9)),
                 objects=objects)


def render_scene(scene: Scene, rng: np.random.Generator, palette: str = 'colour'):
    """Rasterise a scene.

    Args:
        scene (Scene): The scene.
        rng (np.random.Generator): Source of texture phases and pixel noise.
        palette (str): ``'colour'``, or ``'gray'``: every pixel has R = G = B; the
            background is the gray of its colour (no tint), each object the gray level of its
            colour slot (:data:`GRAY_LEVELS`), one noise value per pixel. The generator draws
            the same numbers in both palettes, so one seed gives the same scenes.

    Returns:
        tuple: ``image`` uint8 [S, S, 3] (RGB), ``instance_masks`` list of
        bool [S, S] (visible pixels of each object, drawing order).
    """
    if palette not in PALETTES:
        raise ValueError(f'palette must be one of {PALETTES}, got {palette!r}')
    gray = palette == 'gray'
    size = scene.size
    base = np.array(scene.background_colour, dtype=np.float32)
    if gray:
        base = np.full(3, base.mean(), dtype=np.float32)
    pattern = texture_pattern(scene.background_texture, size,
                              scene.texture_period * 1.5,
                              float(rng.uniform(0, 8)), float(rng.uniform(-1, 1)))
    image = np.where(pattern[..., None], base, base * 0.78)
    masks = []
    for obj in scene.objects:
        canvas = Image.new('L', (size, size), 0)
        ImageDraw.Draw(canvas).polygon(obj.polygon, fill=1)
        mask = np.asarray(canvas, dtype=bool)
        jitter = rng.uniform(-20, 20, size=3)
        if gray:
            level = GRAY_LEVELS[obj.colour][1] + 0.4 * jitter.mean()
            colour = np.full(3, np.clip(level, 0, 255), dtype=np.float32)
        else:
            colour = np.array(COLOURS[obj.colour], dtype=np.float32)
            colour = np.clip(colour + jitter, 0, 255)
        fill = texture_pattern(obj.texture, size, scene.texture_period,
                               float(rng.uniform(0, 8)), float(rng.uniform(-1, 1)))
        shaded = np.where(fill[..., None], colour, colour * 0.45)
        image = np.where(mask[..., None], shaded, image)
        for previous in masks:  # later objects occlude earlier ones
            previous &= ~mask
        masks.append(mask.copy())
    noise = rng.normal(0, 5, size=image.shape)
    image = image + (noise[..., :1] if gray else noise)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), masks
