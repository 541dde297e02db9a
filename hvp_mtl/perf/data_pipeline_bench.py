"""Image sets, storage and timing of ``tools/perf/data_pipeline.py``.

Image sets (Tencent ML-Images list format, via the demo-world writer):

- ``photos``: the photographs shipped in scikit-image's ``skimage/data``
  (:data:`PHOTO_NAMES`), re-encoded as JPEG (quality 95) at native size,
  cycled over the list's images;
- ``generated-N``: demo-world scenes (textured shapes), N px square, JPEG 95.

Each set is stored twice as indexed tar shards: unchanged (the reference
storage) and pre-resized to a short side of at most
:data:`~hvp_mtl.datasets.tar_shard_packer.DEFAULT_MAX_SHORT_SIDE`. The
dataset reads them through the ``tar_shards`` file backend.
"""
import io
import os.path as osp
import time
from collections import defaultdict
from typing import Dict, List

import numpy as np
from PIL import Image

__all__ = ['PHOTO_NAMES', 'photo_paths', 'write_image_set', 'pack_image_set',
           'build_dataset', 'instrument', 'measure']

#: natural photographs (colour and grey) in ``skimage/data`` of the scikit-image wheel
PHOTO_NAMES = ('astronaut.png', 'brick.png', 'camera.png', 'chelsea.png', 'clock_motion.png',
               'coffee.png', 'coins.png', 'grass.png', 'gravel.png', 'hubble_deep_field.jpg',
               'ihc.png', 'moon.png', 'motorcycle_left.png', 'motorcycle_right.png',
               'page.png', 'retina.jpg', 'rocket.jpg', 'text.png')


def photo_paths() -> List[str]:
    """Paths of :data:`PHOTO_NAMES` inside the installed scikit-image."""
    try:
        import skimage
    except ImportError as error:
        raise ImportError('the real-photo set needs scikit-image (pip install '
                          'scikit-image; requirements/tests.txt)') from error
    folder = osp.join(osp.dirname(skimage.__file__), 'data')
    paths = [osp.join(folder, name) for name in PHOTO_NAMES]
    missing = [p for p in paths if not osp.exists(p)]
    if missing:
        raise FileNotFoundError(f'scikit-image {skimage.__version__} lacks {missing}')
    return paths


def write_image_set(root: str, kind: str, num_images: int, seed: int = 0) -> Dict:
    """Write one set (``'photos'`` or ``'generated-<px>'``) under ``root``.

    Returns:
        dict: ``images`` (train images written) and ``median_px`` (median
        short side).
    """
    from ..datasets.demo_world.writers import write_pretrain
    rng = np.random.default_rng(seed)
    total = next(t for t in range(num_images, 2 * num_images + 3)  # + the writer's val split
                 if max(2, t - max(2, t // 8)) >= num_images)
    if kind == 'photos':
        write_pretrain(root, rng, total, 32)
    elif kind.startswith('generated-'):
        write_pretrain(root, rng, total, int(kind.split('-', 1)[1]))
    else:
        raise ValueError(f"unknown image set {kind!r} (use 'photos' or 'generated-<px>')")
    with open(osp.join(root, 'train.txt')) as f:  # the file of a URL line is its basename
        names = [osp.join(root, 'images', line.split()[0].rsplit('/', 1)[-1]
                          if '://' in line else line.split()[0]) for line in f if line.strip()]
    if kind == 'photos':
        photos = [Image.open(p) for p in photo_paths()]
        photos = [p.convert('L' if p.mode in ('L', 'I;16', 'I') else 'RGB') for p in photos]
        for i, name in enumerate(names):
            photos[i % len(photos)].save(name, 'JPEG', quality=95)
    shorts = [min(Image.open(name).size) for name in names]
    return dict(images=len(names), median_px=int(np.median(shorts)))


def pack_image_set(root: str, max_short_side=None) -> dict:
    """Pack ``root/images`` into indexed tar shards; the loader's ``backend_args``."""
    from ..datasets.tar_shard_packer import pack_folder, read_manifests
    from ..datasets.tar_shards import build_tar_index
    tag = f'short{max_short_side}' if max_short_side else 'original'
    shards = pack_folder(osp.join(root, 'images'), osp.join(root, f'shards-{tag}'),
                         64 * 2**20, max_short_side)
    index = osp.join(root, f'index-{tag}')
    build_tar_index(shards, index, read_manifests(shards))
    return dict(backend='tar_shards', index=index, root=osp.join(root, 'images'))


def with_jitter_backend(step, backend: str):
    """``step`` (a pipeline config dict or list) with every ``ColorJitter`` set to
    ``backend`` (mmpretrain's default is ``'pillow'``)."""
    if isinstance(step, (list, tuple)):
        return [with_jitter_backend(s, backend) for s in step]
    if isinstance(step, dict):
        step = {k: with_jitter_backend(v, backend) for k, v in step.items()}
        return dict(step, backend=backend) if step.get('type') == 'ColorJitter' else step
    return step


def build_dataset(config: str, data_root: str, backend_args: dict, fast: bool,
                  jitter_backend: str = None):
    """``TencentMLImages`` of ``config``'s train dataloader on ``data_root``, its loader
    reading through ``backend_args``; ``fast``: the reduced-scale decoding pipeline;
    ``jitter_backend``: every ColorJitter on this backend (not the paper's pipeline)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS

    from ..datasets.transforms.reduced_scale_decode import reduced_scale_pipeline
    cfg = Config.fromfile(config)
    init_default_scope('mmpretrain')
    dataset_cfg = cfg.train_dataloader.dataset
    pipeline = [dict(t, backend_args=backend_args) if t['type'].startswith('Load') else t
                for t in dataset_cfg.pipeline]
    pipeline = reduced_scale_pipeline(pipeline) if fast else pipeline
    if jitter_backend:
        pipeline = with_jitter_backend(pipeline, jitter_backend)
    dataset_cfg.update(data_root=data_root, data_prefix='images/', ann_file='train.txt',
                       pipeline=pipeline)
    return DATASETS.build(dataset_cfg)


class Timed:
    """Callable wrapper that adds its transform's CPU time to ``totals``."""

    def __init__(self, name, transform, totals):
        self.name, self.transform, self.totals = name, transform, totals

    def __call__(self, results):
        start = time.process_time()
        out = self.transform(results)
        self.totals[self.name] += time.process_time() - start
        return out

    def __getattr__(self, name):  # the fast path reads the crop transform's settings
        return getattr(self.__dict__['transform'], name)


def instrument(pipeline, totals):
    """Wrap every transform (and every view transform of MultiViewWithMask)."""
    from ..datasets.transforms import MultiViewWithMask
    for i, transform in enumerate(pipeline.transforms):
        name = type(transform).__name__
        if isinstance(transform, MultiViewWithMask):
            for v, view in enumerate(transform.pipelines):
                view.transforms = [Timed(f'  view {v}: {type(t).__name__}', t, totals)
                                   for t in view.transforms]
            if transform.mask_generator is not None:
                transform.mask_generator = Timed(
                    f'  mask: {type(transform.mask_generator).__name__}',
                    transform.mask_generator, totals)
        pipeline.transforms[i] = Timed(name, transform, totals)


def measure(dataset, totals, num_samples: int, warmup: int, rng):
    """(cpu_seconds, wall_seconds, stage totals, samples) of ``num_samples``
    reads (``totals`` is filled by the instrumented pipeline)."""
    order = rng.integers(0, len(dataset), warmup + num_samples)
    for idx in order[:warmup]:
        dataset[int(idx)]
    totals.clear()
    cpu, wall = time.process_time(), time.perf_counter()
    samples = [dataset[int(idx)] for idx in order[warmup:]]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu, wall, dict(totals), samples


def collate_seconds_per_image(samples, batch_size: int = 16) -> float:
    """CPU seconds per image of ``default_collate`` over batches."""
    from mmengine.dataset import default_collate
    batches = [samples[i:i + batch_size]
               for i in range(0, len(samples) - batch_size + 1, batch_size)] or [samples]
    start = time.process_time()
    for batch in batches:
        default_collate(batch)
    return (time.process_time() - start) / sum(len(b) for b in batches)


def jpeg_bytes(image: Image.Image, quality: int = 95) -> bytes:
    """``image`` encoded as JPEG."""
    out = io.BytesIO()
    image.save(out, 'JPEG', quality=quality)
    return out.getvalue()


def new_totals():
    """A fresh stage-time accumulator."""
    return defaultdict(float)
