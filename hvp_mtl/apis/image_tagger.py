"""Tag images with a pre-trained HVP-MTL model (11,166 ML-Images classes).

Follows mmpretrain's ``ImageClassificationInferencer``: built from a config
and a checkpoint, callable on a path, an array (BGR, as ``mmcv.imread``
returns it), a folder or a list of them, with the same preprocess / forward /
postprocess steps. The scores are the sigmoid outputs of the multi-label
decoder (``HVPMTL.predict``), one independent probability per class.
"""
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch
from mmcv.image import imread
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate
from mmpretrain.apis import BaseInferencer
from mmpretrain.datasets import remove_transform
from mmpretrain.registry import TRANSFORMS
from mmpretrain.structures import DataSample

from hvp_mtl.datasets.ml_images_format import read_dictionary
from hvp_mtl.models.protocols import TeacherPredictor

__all__ = ['ImageTagger', 'default_test_pipeline']

ImageType = Union[str, np.ndarray]


def default_test_pipeline(img_size: int = 224) -> List[dict]:
    """Single-view test pipeline: short edge to ``img_size * 256 / 224``,
    centre crop ``img_size``, pack."""
    return [
        dict(type='LoadImageFromFile'),
        dict(type='ResizeEdge', scale=img_size * 256 // 224, edge='short',
             backend='pillow', interpolation='bicubic'),
        dict(type='CenterCrop', crop_size=img_size),
        dict(type='PackInputs'),
    ]


class ImageTagger(BaseInferencer):
    """Top-k class names and scores of images, from a pre-training checkpoint.

    Args:
        config (str | Config): The pre-training config.
        checkpoint (str): A checkpoint of that config (``iter_*.pth``).
        device (str): ``'cpu'``, ``'cuda'``, ``'cuda:1'``, ...
        dictionary_file (str, optional): ``dictionary_and_semantic_hierarchy
            .txt`` naming the classes. Defaults to the class names saved in
            the checkpoint's ``meta['dataset_meta']``.
        use_teacher (bool): Score with the EMA teacher. Defaults to False.

    Example:
        >>> tagger = ImageTagger('configs/pretrain/hvp_swin-b.py',
        ...                      'work_dirs/hvp_swin-b/iter_500000.pth',
        ...                      device='cuda')
        >>> tagger.tag('demo.jpg', topk=5)[0]['pred_class']
        ['dog', 'domestic animal', 'animal', 'organism', 'living thing']
    """

    postprocess_kwargs: set = {'topk', 'threshold'}

    def __init__(self,
                 config: Union[str, Config],
                 checkpoint: str,
                 device: str = 'cpu',
                 dictionary_file: Optional[str] = None,
                 use_teacher: bool = False) -> None:
        super().__init__(model=config, pretrained=checkpoint, device=device)
        if use_teacher:
            if not isinstance(self.model, TeacherPredictor):
                raise AttributeError(f'{type(self.model).__name__} cannot '
                                     'predict with an EMA teacher')
            self.model.predict_with_teacher = True
        if dictionary_file is not None:
            self.classes = [e.name for e in read_dictionary(dictionary_file)]
        else:
            self.classes = list(
                getattr(self.model, '_dataset_meta', {}).get('classes') or [])
        if not self.classes:
            raise ValueError(
                f'{checkpoint} holds no class names (meta.dataset_meta.'
                'classes); pass dictionary_file=".../dictionary_and_'
                'semantic_hierarchy.txt"')

    def _init_pipeline(self, cfg: Config) -> Callable:
        """The config's test pipeline without image loading (a default
        resize + centre crop one if the config has no test dataloader, or sets it to ``None``
        as the demo pre-training config does)."""
        if cfg.get('test_dataloader'):
            pipeline_cfg = cfg.test_dataloader.dataset.pipeline
        else:
            img_size = cfg.model.get('backbone', {}).get('img_size', 224)
            pipeline_cfg = default_test_pipeline(img_size)
        pipeline_cfg = remove_transform(pipeline_cfg, 'LoadImageFromFile')
        return Compose([TRANSFORMS.build(t) for t in pipeline_cfg])

    def preprocess(self, inputs: List[ImageType], batch_size: int = 1):
        """Load (paths) and transform the images; yield collated batches."""

        def load_image(input_):
            img = imread(input_)
            if img is None:
                raise ValueError(f'Failed to read image {input_}')
            return dict(img=img, img_shape=img.shape[:2],
                        ori_shape=img.shape[:2])

        pipeline = Compose([load_image, self.pipeline])
        chunks = self._get_chunk_data(map(pipeline, inputs), batch_size)
        yield from map(default_collate, chunks)

    def postprocess(self,
                    preds: List[DataSample],
                    visualization,
                    return_datasamples: bool = False,
                    topk: Optional[int] = 10,
                    threshold: Optional[float] = None) -> list:
        """Per image: ``pred_label``, ``pred_score``, ``pred_class`` lists,
        sorted by score, at most ``topk`` and only scores ``>= threshold``."""
        if return_datasamples:
            return preds
        results = []
        for sample in preds:
            scores = sample.pred_score.detach().float().cpu()
            k = scores.numel() if topk is None else min(topk, scores.numel())
            top_scores, top_labels = scores.topk(k)
            if threshold is not None:
                keep = top_scores >= threshold
                top_scores, top_labels = top_scores[keep], top_labels[keep]
            labels = top_labels.tolist()
            results.append(
                dict(pred_label=labels,
                     pred_score=[round(float(s), 6) for s in top_scores],
                     pred_class=[self._name(i) for i in labels]))
        return results

    def _name(self, index: int) -> str:
        if index >= len(self.classes):
            raise ValueError(f'the model scores class {index} but the class '
                             f'list has {len(self.classes)} names')
        return self.classes[index]

    def tag(self,
            images: Union[ImageType, Sequence[ImageType]],
            topk: Optional[int] = 10,
            threshold: Optional[float] = None,
            batch_size: int = 1) -> list:
        """Tag one image, a folder or a list of images.

        Args:
            images (str | np.ndarray | list): Path(s), BGR array(s) or a
                folder.
            topk (int, optional): At most this many tags per image (None: no
                limit). Defaults to 10.
            threshold (float, optional): Only tags scoring at least this.
            batch_size (int): Images per forward pass. Defaults to 1.

        Returns:
            list[dict]: One dict per image with ``pred_label`` (class
            indices), ``pred_score`` (sigmoid scores) and ``pred_class``
            (names), best first.
        """
        with torch.no_grad():
            return self(images, batch_size=batch_size, topk=topk,
                        threshold=threshold)
