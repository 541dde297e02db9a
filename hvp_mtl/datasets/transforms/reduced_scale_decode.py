"""Decode a JPEG once, at the coarsest DCT scale that every view's crop allows.

The reference pipeline decodes the whole image (``LoadImageFromFile``) and
each view's ``RandomResizedCrop`` then resamples a crop of it to 224 px. At
1,024 px most of that work is thrown away: a crop of at least 448 px per side
loses nothing when it is read from the image decoded at 1/2 scale, which
libjpeg does in the inverse DCT itself (``PIL.Image.draft``). The fast path:

1. :class:`LoadImageBytes` reads the file's bytes (any mmengine backend, the
   tar shards included) and its size from the header, without decoding;
2. ``MultiViewWithMask(reduced_scale_decode=True)`` draws every view's crop
   with that view's own ``RandomResizedCrop`` on the original size (the same
   function, so the same distribution), :func:`decode_factor` picks the
   largest factor f in {1, 2, 4, 8} that keeps every crop at least its
   output size in both directions after division by f, and
   :func:`decode_at_factor` decodes once at 1/f;
3. :func:`resized_crop` maps each crop box to the reduced image (exact
   sub-pixel box, PIL ``resize(box=...)``) and resamples it to the output
   size with the ``RandomResizedCrop``'s interpolation, always on Pillow (the
   shipped configs' ``backend='pillow'``).

Images come out in BGR channel order, as ``LoadImageFromFile``'s do, and
upright (EXIF orientation applied, as OpenCV's decoder does). A file that is
not a readable image raises :class:`UndecodableImageError`, which the dataset
counts as a bad sample.
"""
import io
import math
from typing import List, Sequence, Tuple

import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS
from PIL import Image, ImageOps

from ..bad_sample_tracker import UndecodableImageError

__all__ = ['LoadImageBytes', 'UndecodableImageError', 'decode_factor', 'reduced_scale_pipeline',
           'decode_at_factor', 'resized_crop', 'oriented_size', 'plan_crops']

#: EXIF orientations that swap width and height
_TRANSPOSING = (5, 6, 7, 8)
_FACTORS = (8, 4, 2, 1)
_PIL_INTERPOLATION = dict(nearest=Image.NEAREST, bilinear=Image.BILINEAR,
                          bicubic=Image.BICUBIC, area=Image.BOX,
                          lanczos=Image.LANCZOS)


def _open(data: bytes, path: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except Exception as error:
        raise UndecodableImageError(f'{path}: not a readable image ({error})') from error


def oriented_size(image: Image.Image) -> Tuple[int, int]:
    """(height, width) of ``image`` once its EXIF orientation is applied."""
    width, height = image.size
    if image.getexif().get(0x0112, 1) in _TRANSPOSING:
        width, height = height, width
    return height, width


def decode_factor(crops: Sequence[Tuple[int, int, int, int]],
                  out_sizes: Sequence[Tuple[int, int]], margin: float = 1.) -> int:
    """Largest f in {8, 4, 2, 1} with every crop at least ``margin`` times its
    output size (both sides) at 1/f scale.

    Args:
        crops: ``(offset_h, offset_w, height, width)`` of each view, in
            original-image pixels.
        out_sizes: ``(height, width)`` each view's crop is resized to.
        margin (float): 1: the crop may be read at exactly its output size.
            Above 1 the final resample still filters, so the view stays
            closer to the full-scale one (:class:`MultiViewWithMask` uses 1.25).
    """
    for factor in _FACTORS:
        if all(h >= factor * oh * margin and w >= factor * ow * margin
               for (_, _, h, w), (oh, ow) in zip(crops, out_sizes)):
            return factor
    return 1


def decode_at_factor(data: bytes, factor: int, path: str = '<bytes>'
                     ) -> Tuple[Image.Image, float]:
    """Decode ``data`` at 1/``factor`` scale where the format allows it.

    Returns:
        tuple: The upright RGB (or L) image and the scale actually used
        (decoded pixels per original pixel: 1/f for a JPEG, 1 otherwise).
    """
    image = _open(data, path)
    width = image.size[0]
    if factor > 1 and image.format == 'JPEG':
        image.draft(image.mode if image.mode in ('L', 'RGB') else None,
                    (max(1, width // factor), max(1, image.size[1] // factor)))
    try:
        image.load()
        # libjpeg's output is ceil(size / f) pixels per side
        actual = next(f for f in (1, 2, 4, 8) if -(-width // f) == image.size[0])
        ImageOps.exif_transpose(image, in_place=True)
    except Exception as error:
        raise UndecodableImageError(f'{path}: cannot decode ({error})') from error
    if image.mode not in ('RGB', 'L'):
        image = image.convert('RGB')
    return image, 1.0 / actual


def resized_crop(image: Image.Image, scale: float, crop: Tuple[int, int, int, int],
                 out_size: Tuple[int, int], interpolation: str, to_bgr: bool = True
                 ) -> np.ndarray:
    """The crop ``(offset_h, offset_w, h, w)`` (original pixels) of ``image``
    (decoded at ``scale``) resampled to ``out_size`` (h, w), as uint8 (h, w, 3):
    channels reversed (RGB to BGR) if ``to_bgr``."""
    top, left, height, width = crop
    box = (left * scale, top * scale, (left + width) * scale, (top + height) * scale)
    # cut the covering pixels first: the filter sees no pixel outside the crop, as in
    # RandomResizedCrop (crop, then resize); at scale 1 this is exactly its result
    cut = (math.floor(box[0]), math.floor(box[1]),
           min(image.size[0], math.ceil(box[2])), min(image.size[1], math.ceil(box[3])))
    view = image.crop(cut).resize(
        (out_size[1], out_size[0]), _PIL_INTERPOLATION[interpolation],
        box=(box[0] - cut[0], box[1] - cut[1], box[2] - cut[0], box[3] - cut[1]))
    array = np.asarray(view.convert('RGB') if view.mode != 'RGB' else view)
    return np.ascontiguousarray(array[..., ::-1] if to_bgr else array)


def plan_crops(crop_transforms: List, shape: Tuple[int, int]
               ) -> List[Tuple[int, int, int, int]]:
    """Each ``RandomResizedCrop``'s crop on an image of ``shape`` (h, w),
    drawn with its own ``rand_crop_params`` (no pixels needed)."""
    stub = np.empty((shape[0], shape[1], 0), np.uint8)
    return [tuple(int(v) for v in t.rand_crop_params(stub)) for t in crop_transforms]


@TRANSFORMS.register_module()
class LoadImageBytes(BaseTransform):
    """Read an image file's bytes and its size, without decoding it.

    Adds ``img_bytes``, ``ori_shape`` and ``img_shape`` ((h, w) of the
    upright image). For ``MultiViewWithMask(reduced_scale_decode=True)``,
    which decodes each sample once at the scale its views' crops allow.

    Args:
        backend_args (dict, optional): mmengine file backend arguments, as
            for ``LoadImageFromFile`` (e.g. ``dict(backend='tar_shards',
            index=..., root=...)``).
    """

    def __init__(self, backend_args: dict = None):
        self.backend_args = None if backend_args is None else dict(backend_args)

    def transform(self, results: dict) -> dict:
        """Read ``results['img_path']``; raise an OSError naming it if the
        bytes are not an image."""
        path = results['img_path']
        data = fileio.get(path, backend_args=self.backend_args)
        results['img_bytes'] = data
        results['ori_shape'] = results['img_shape'] = oriented_size(_open(data, path))
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(backend_args={self.backend_args})'


def reduced_scale_pipeline(pipeline: Sequence[dict]) -> List[dict]:
    """The fast path of a two-view pipeline config.

    ``LoadImageFromFile`` becomes ``LoadImageBytes`` (same ``backend_args``)
    and ``MultiViewWithMask`` gets ``reduced_scale_decode=True``; every other
    step is kept. ``configs/pretrain/hvp_swin-b_fast-decode.py`` is this of
    the Swin-B pipeline.
    """
    out = []
    for step in pipeline:
        if step['type'] == 'LoadImageFromFile':
            step = dict(type='LoadImageBytes', backend_args=step.get('backend_args'))
        elif step['type'] == 'MultiViewWithMask':
            step = dict(step, reduced_scale_decode=True)
        out.append(step)
    return out
