"""Writers of the four demo-world task formats (same scene generator)."""
import json
import os
import os.path as osp

import numpy as np
from PIL import Image

from .scenes import SHAPES, render_scene, sample_scene
from .taxonomy import DICTIONARY, class_index, scene_tags, write_dictionary

__all__ = ['write_pretrain', 'write_classification', 'write_coco', 'write_ade',
           'SEG_CLASSES', 'SEG_PALETTE', 'JPEG_QUALITY']

JPEG_QUALITY = 95
#: mmseg classes after ``reduce_zero_label=True`` (label PNG value - 1).
SEG_CLASSES = ('background', ) + SHAPES
SEG_PALETTE = [[120, 120, 120], [220, 40, 40], [40, 180, 60], [40, 80, 220],
               [235, 210, 40], [200, 50, 200], [40, 200, 210]]


def _save_jpeg(image: np.ndarray, path: str):
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(image).save(path, format='JPEG', quality=JPEG_QUALITY)


def _split_sizes(total: int):
    """75 % / 25 % train / val, at least one of each."""
    num_val = max(1, total // 4)
    return max(1, total - num_val), num_val


def _format_conf(conf: float, machine_tagged: bool) -> str:
    if conf == 1.0:
        return '1.0' if machine_tagged else '1'
    return f'{conf:g}'


def write_pretrain(root: str, rng: np.random.Generator, num_images: int,
                   size: int, palette: str = 'colour'):
    """Tencent ML-Images format: ``train.txt``/``val.txt``, dictionary, images.

    Half of the lines are "ImageNet-like" (``dw000031/dw000031_17.JPEG``,
    space separated, confidence 1 with all ancestors), half "Open-Images-like"
    (a URL whose basename is the file under ``images/``, tab separated,
    confidences 0.8 / 0.9). See :mod:`.taxonomy`.
    """
    os.makedirs(root, exist_ok=True)
    write_dictionary(osp.join(root, 'dictionary_and_semantic_hierarchy.txt'), palette)
    num_val = max(2, num_images // 8)
    for split, count in (('train', max(2, num_images - num_val)), ('val', num_val)):
        lines = []
        for i in range(count):
            scene = sample_scene(rng, size, int(rng.integers(1, 5)))
            image, _ = render_scene(scene, rng, palette)
            machine_tagged = bool(i % 2)
            tags = scene_tags(scene, machine_tagged)
            pairs = [f'{c}:{_format_conf(v, machine_tagged)}' for c, v in tags.items()]
            if machine_tagged:
                name = (f'{int(rng.integers(10**9, 10**10)) + i}_'
                        f'{int(rng.integers(0, 16**10)):010x}_o.jpg')
                raw = (f'https://farm{int(rng.integers(1, 9))}.demo-images.org/'
                       f'{int(rng.integers(1000, 9999))}/{name}')
                relative, line = name, raw + '\t' + '\t'.join(pairs)
            else:
                first = scene.objects[0]
                wnid = DICTIONARY[class_index(f'{first.colour} {first.shape}')][0]
                relative = f'{wnid}/{wnid}_{split}{i}.JPEG'
                line = relative + '   ' + '  '.join(pairs)
            _save_jpeg(image, osp.join(root, 'images', relative))
            lines.append(line)
        with open(osp.join(root, f'{split}.txt'), 'w', newline='\n') as f:
            f.write('\n'.join(lines) + '\n')


def write_classification(root: str, rng: np.random.Generator, num_images: int,
                         size: int, palette: str = 'colour'):
    """ImageNet layout: ``{train,val}/<shape>/*.jpg``, ``meta/{train,val}.txt``.

    Each image has one dominant object (radius 30-42 % of the side) and up to
    two small distractors; the label is the dominant shape, balanced over
    :data:`~.scenes.SHAPES`. ``classes.txt`` lists the class names.
    """
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    with open(osp.join(root, 'classes.txt'), 'w', newline='\n') as f:
        f.write('\n'.join(SHAPES) + '\n')
    for split, count in zip(('train', 'val'), _split_sizes(num_images)):
        lines = []
        for i in range(count):
            label = i % len(SHAPES)
            scene = sample_scene(rng, size, 1 + int(rng.integers(0, 3)),
                                 radius_range=(0.08, 0.14),
                                 dominant_radius=(0.30, 0.42),
                                 first_shape=SHAPES[label])
            image, _ = render_scene(scene, rng, palette)
            relative = f'{SHAPES[label]}/{SHAPES[label]}_{split}_{i:05d}.jpg'
            _save_jpeg(image, osp.join(root, split, relative))
            lines.append(f'{relative} {label}')
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w', newline='\n') as f:
            f.write('\n'.join(lines) + '\n')


def write_coco(root: str, rng: np.random.Generator, num_images: int,
               size: int, palette: str = 'colour'):
    """COCO instances: ``{train,val}/*.jpg``, ``annotations/instances_*.json``.

    Categories are the shapes (ids from 1); every object has a tight box, the
    pixel area of its visible mask and its outline as one polygon.
    """
    categories = [dict(id=i + 1, name=s, supercategory='shape')
                  for i, s in enumerate(SHAPES)]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    annotation_id = 1
    for split, count in zip(('train', 'val'), _split_sizes(num_images)):
        images, annotations = [], []
        for i in range(count):
            scene = sample_scene(rng, size, int(rng.integers(1, 5)),
                                 radius_range=(0.12, 0.26))
            image, masks = render_scene(scene, rng, palette)
            file_name = f'{split}_{i:06d}.jpg'
            _save_jpeg(image, osp.join(root, split, file_name))
            images.append(dict(id=i + 1, file_name=file_name, width=size,
                               height=size))
            for obj, mask in zip(scene.objects, masks):
                if mask.sum() < 4:
                    continue
                ys, xs = np.nonzero(mask)
                polygon = [round(min(max(v, 0.0), float(size)), 2)
                           for point in obj.polygon for v in point]
                annotations.append(dict(
                    id=annotation_id, image_id=i + 1, iscrowd=0,
                    category_id=SHAPES.index(obj.shape) + 1,
                    bbox=[int(xs.min()), int(ys.min()),
                          int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
                    area=int(mask.sum()), segmentation=[polygon]))
                annotation_id += 1
        with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=categories), f)


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (the outline)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2]
             & padded[1:-1, 2:])
    return mask & ~inner


def write_ade(root: str, rng: np.random.Generator, num_images: int,
              size: int, palette: str = 'colour'):
    """ADE20K layout: ``images/{training,validation}/*.jpg`` and label PNGs.

    Label values: 0 = unlabelled (object outlines; ignored by
    ``reduce_zero_label=True``), 1 = background, 2..7 = the shapes, i.e.
    :data:`SEG_CLASSES` after the reduction.
    """
    for split, count in zip(('training', 'validation'), _split_sizes(num_images)):
        for i in range(count):
            scene = sample_scene(rng, size, int(rng.integers(1, 5)),
                                 radius_range=(0.12, 0.28))
            image, masks = render_scene(scene, rng, palette)
            label = np.ones((size, size), dtype=np.uint8)
            for obj, mask in zip(scene.objects, masks):
                label[mask] = SHAPES.index(obj.shape) + 2
                label[_boundary(mask)] = 0
            stem = f'ADE_{"train" if split == "training" else "val"}_{i + 1:08d}'
            _save_jpeg(image, osp.join(root, 'images', split, stem + '.jpg'))
            os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
            Image.fromarray(label).save(
                osp.join(root, 'annotations', split, stem + '.png'), format='PNG')


def write_images(out_dir, num, size=80, seed=0):
    """Write ``num`` PNGs of random coloured shapes (unlabelled images for SimMIM smoke runs)."""
    from PIL import ImageDraw
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    for i in range(num):
        img = Image.new('RGB', (size, size), tuple(int(c) for c in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
            x1, y1 = x0 + int(rng.integers(8, size // 2)), y0 + int(rng.integers(8, size // 2))
            fill = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
        img.save(osp.join(out_dir, f'{i:05d}.png'))
