"""Two augmented views of one image plus a SimMIM mask for view 0."""
import copy
from typing import List, Optional, Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform, Compose
from mmpretrain.registry import TRANSFORMS

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
    """

    def __init__(self,
                 transforms: Sequence[Sequence[Transform]],
                 mask_generator: Optional[Transform] = dict(
                     type='SimMIMMaskGenerator', input_size=224,
                     mask_patch_size=32, model_patch_size=4, mask_ratio=0.6),
                 masked_view: int = 0):
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

    def transform(self, results: dict) -> dict:
        """Make the views and the mask.

        Args:
            results (dict): Holds the decoded ``img`` (H, W, 3) and the
                annotation (``gt_score`` ...).

        Returns:
            dict: ``img`` is a list of views (S, S, 3); ``mask`` (h, w) is
            added when a generator is set; ``img_shape`` is that of the
            masked view.
        """
        shared = {k: v for k, v in results.items() if k != 'gt_score'}
        views = []
        for index, pipeline in enumerate(self.pipelines):
            out = pipeline(copy.deepcopy(shared))
            if out is None:
                return None
            views.append(out['img'])
            if index == self.masked_view:
                masked_out = out
        results['img'] = views
        results['img_shape'] = masked_out['img'].shape[:2]
        for key in ('flip', 'flip_direction', 'scale_factor'):
            if key in masked_out:
                results[key] = masked_out[key]
        if self.mask_generator is not None:
            mask = self.mask_generator({})['mask']
            self._check_mask(np.asarray(mask), views[self.masked_view])
            results['mask'] = mask
        return results

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
