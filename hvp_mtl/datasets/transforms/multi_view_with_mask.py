"""Two augmented views of one image plus a SimMIM mask for view 0."""
import copy
from typing import List, Optional, Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform, Compose
from mmpretrain.registry import TRANSFORMS
from PIL import Image

from .reduced_scale_decode import decode_at_factor, decode_factor, plan_crops, resized_crop

__all__ = ['MultiViewWithMask']

Transform = Union[dict, callable]


@TRANSFORMS.register_module()
class MultiViewWithMask(BaseTransform):
    """Augment one decoded image into several views; mask the first.

    mmpretrain's ``MultiView`` keeps only ``img`` of each view, so a mask
    generator inside a view pipeline is lost. This wrapper runs one pipeline
    per view on a copy of the loaded image, collects the views into
    ``results['img']`` (a list, view order = pipeline order) and draws one
    mask for ``masked_view`` with ``mask_generator`` (default mmpretrain's
    ``SimMIMMaskGenerator``: random ``mask_patch_size`` blocks, repeated to
    the backbone's token grid). ``PackInputs`` then packs the list of views
    into ``inputs`` and ``mask``/``gt_score`` into the ``DataSample``:

    - ``inputs``: list of ``len(transforms)`` uint8 tensors [3, S, S];
    - ``data_sample.mask``: [S / model_patch_size, S / model_patch_size] 0/1,
      for ``inputs[masked_view]``;
    - ``data_sample.gt_score``: float32 [C], untouched.

    Example (Swin, 224 px)::

        view = [dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.0),
                     backend='pillow', interpolation='bicubic'),
                dict(type='RandomFlip', prob=0.5),
                dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.2),
                dict(type='RandAugment', policies='timm_increasing', num_policies=2,
                     total_level=10, magnitude_level=9, magnitude_std=0.5)]
        train_pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='MultiViewWithMask', transforms=[view, view],
                 mask_generator=dict(type='SimMIMMaskGenerator', input_size=224,
                                     mask_patch_size=32, model_patch_size=4,
                                     mask_ratio=0.6)),
            dict(type='PackInputs')]

    Args:
        transforms (list[list[dict | callable]]): One pipeline per view.
        mask_generator (dict | callable, optional): Transform that adds a
            ``mask`` key without looking at the image (``SimMIMMaskGenerator``
            or ``BEiTMaskGenerator``). None: no mask.
        masked_view (int): The view the mask applies to. Defaults to 0.
        reduced_scale_decode (bool): The fast path (``reduced_scale_decode``
            module): every view pipeline starts with a ``RandomResizedCrop``;
            all views' crops are drawn first, in original-image coordinates,
            then the image (``img_bytes`` of ``LoadImageBytes``, or an already
            decoded ``img``) is decoded once at the coarsest DCT scale that
            keeps every crop at least its output size, and each view resamples
            its crop from it. Adds ``crop_bboxes`` ((offset_h, offset_w, h, w)
            per view, original pixels) and ``decode_scale``. Defaults to False.
        decode_margin (float): The fast path decodes at 1/f only if every
            crop keeps at least ``decode_margin`` times its output size at
            that scale. 1.25 (default) keeps the views >= 44 dB PSNR from the
            full-scale ones on scikit-image's photographs (1: >= 33 dB) and
            still halves the decode of 58.5 % of 1,024-px images.
    """

    def __init__(self,
                 transforms: Sequence[Sequence[Transform]],
                 mask_generator: Optional[Transform] = dict(
                     type='SimMIMMaskGenerator', input_size=224,
                     mask_patch_size=32, model_patch_size=4, mask_ratio=0.6),
                 masked_view: int = 0,
                 reduced_scale_decode: bool = False,
                 decode_margin: float = 1.25):
        if len(transforms) < 1:
            raise ValueError('MultiViewWithMask needs at least one view pipeline')
        if not 0 <= masked_view < len(transforms):
            raise ValueError(f'masked_view={masked_view} but there are '
                             f'{len(transforms)} views')
        self.pipelines: List[Compose] = [
            Compose([TRANSFORMS.build(t) if isinstance(t, dict) else t
                     for t in view]) for view in transforms
        ]
        if isinstance(mask_generator, dict):
            mask_generator = TRANSFORMS.build(mask_generator)
        self.mask_generator = mask_generator
        self.masked_view = masked_view
        self.reduced_scale_decode = reduced_scale_decode
        if decode_margin < 1:
            raise ValueError(f'decode_margin must be >= 1 (crops keep their output '
                             f'resolution), got {decode_margin}')
        self.decode_margin = decode_margin
        if reduced_scale_decode:
            for index, pipeline in enumerate(self.pipelines):
                first = pipeline.transforms[0] if pipeline.transforms else None
                if type(first).__name__ != 'RandomResizedCrop':
                    raise ValueError(
                        f'MultiViewWithMask(reduced_scale_decode=True): view {index} '
                        f'must start with RandomResizedCrop, not {first!r}')

    def transform(self, results: dict) -> dict:
        """Make the views and the mask.

        Args:
            results (dict): Holds the decoded ``img`` (H, W, 3), or with
                ``reduced_scale_decode`` the ``img_bytes`` and ``ori_shape``
                of ``LoadImageBytes``, and the annotation (``gt_score`` ...).

        Returns:
            dict: ``img`` is a list of views (S, S, 3); ``mask`` (h, w) is
            added when a generator is set; ``img_shape`` is that of the
            masked view.
        """
        views, inputs = [], self._view_inputs(results)
        for index, pipeline in enumerate(self.pipelines):
            out = inputs[index]
            # the fast path has done each view's RandomResizedCrop already
            for transform in pipeline.transforms[int(self.reduced_scale_decode):]:
                out = transform(out)
                if out is None:
                    break
            if out is None:
                return None
            views.append(out['img'])
            if index == self.masked_view:
                masked_out = out
        results['img'] = views
        results.pop('img_bytes', None)
        results['img_shape'] = masked_out['img'].shape[:2]
        for key in ('flip', 'flip_direction', 'scale_factor'):
            if key in masked_out:
                results[key] = masked_out[key]
        if self.mask_generator is not None:
            mask = self.mask_generator({})['mask']
            self._check_mask(np.asarray(mask), views[self.masked_view])
            results['mask'] = mask
        return results

    def _view_inputs(self, results: dict) -> List:
        """The input dict of each view pipeline (the fast path: its cropped
        image, with the pipeline's remaining transforms to run on it)."""
        skip = {'gt_score', 'img_bytes'}
        shared = {k: v for k, v in results.items() if k not in skip}
        if not self.reduced_scale_decode:
            return [copy.deepcopy(shared) for _ in self.pipelines]
        crop_transforms = [p.transforms[0] for p in self.pipelines]
        out_sizes = [tuple(t.scale) for t in crop_transforms]
        decoded = shared.pop('img', None)
        if 'img_bytes' in results:  # LoadImageBytes: decode here, once, at reduced scale
            crops = plan_crops(crop_transforms, tuple(results['ori_shape'][:2]))
            image, scale = decode_at_factor(results['img_bytes'],
                                            decode_factor(crops, out_sizes, self.decode_margin),
                                            results.get('img_path', '<bytes>'))
        else:  # already decoded (BGR): same crops, at full scale
            if decoded is None:
                raise KeyError(f'MultiViewWithMask(reduced_scale_decode=True): '
                               f'{results.get("img_path")} has neither img_bytes '
                               '(LoadImageBytes) nor a decoded img')
            crops = plan_crops(crop_transforms, decoded.shape[:2])
            image, scale = Image.fromarray(np.ascontiguousarray(decoded)), 1.
        results['crop_bboxes'], results['decode_scale'] = crops, scale
        inputs = []
        for crop, size, transform in zip(crops, out_sizes, crop_transforms):
            view = copy.deepcopy(shared)
            view['img'] = resized_crop(image, scale, crop, size, transform.interpolation,
                                       to_bgr=decoded is None)
            view['img_shape'] = view['img'].shape[:2]
            inputs.append(view)
        return inputs

    def _check_mask(self, mask: np.ndarray, view: np.ndarray):
        """The mask grid must divide the masked view exactly."""
        height, width = view.shape[:2]
        rows, cols = mask.shape[-2:]
        if height % rows or width % cols or height // rows != width // cols:
            raise ValueError(
                f'MultiViewWithMask: mask of shape {tuple(mask.shape)} does '
                f'not tile view {self.masked_view} of size {height}x{width}; '
                f'set the mask generator input_size to the crop size')

    def __repr__(self) -> str:
        text = f'{type(self).__name__}(masked_view={self.masked_view}, '
        text += f'mask_generator={self.mask_generator}'
        for i, pipeline in enumerate(self.pipelines):
            text += f',\n  view {i}: {pipeline}'
        return text + ')'
