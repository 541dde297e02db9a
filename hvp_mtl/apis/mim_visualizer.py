"""What the MIM branch of an HVP-MTL checkpoint sees and reconstructs: input, mask, reconstruction.

The core of ``tools/analysis_tools/visualize_mim.py``::

    python tools/analysis_tools/visualize_mim.py CONFIG CHECKPOINT IMAGE [IMAGE ...]
        [--out mim.png] [--img-size 224] [--seed 0] [--cfg-options k=v ...]

One row per image: the input (resized and centre-cropped to the pre-training crop size), the input
with the masked patches greyed out, the raw reconstruction of the MIM decoder (eq. 4 is computed on
the masked pixels only, so the visible part is not trained), and the reconstruction pasted into the
masked patches of the input. The mask is drawn by the mask generator of the config's pre-training
pipeline (``SimMIMMaskGenerator``: 32-px blocks, ratio 0.6). The L1 of eq. (4) on the masked pixels,
in normalised units, is printed per image.
"""
import os.path as osp

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402
from PIL import Image  # noqa: E402

from .figures import save_figure_atomically  # noqa: E402

__all__ = ['find_mask_generator', 'load_model', 'read_image', 'reconstruct', 'draw', 'visualize']


def find_mask_generator(node):
    """The mask generator: the first dict with a ``mask_ratio`` in a (nested) pipeline."""
    if isinstance(node, dict):
        if 'mask_ratio' in node and 'type' in node:
            return node
        children = list(node.values())
    elif isinstance(node, (list, tuple)):
        children = list(node)
    else:
        return None
    for child in children:
        found = find_mask_generator(child)
        if found is not None:
            return found
    return None


def load_model(config, checkpoint, cfg_options=None):
    """Build the config's model, load the checkpoint (weights-only safe load) and return both.

    Args:
        config (str): HVP-MTL pre-training config.
        checkpoint (str): Its checkpoint (the whole model, not an exported backbone).
        cfg_options (dict, optional): Overrides, as ``--cfg-options``.

    Returns:
        tuple[nn.Module, Config]: The model in eval mode, and the config.
    """
    cfg = Config.fromfile(config)  # imports hvp_mtl through custom_imports
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmpretrain.registry import MODELS
    model = MODELS.build(cfg.model)
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True, revise_keys=[])
    if getattr(model, 'mim_head', None) is None:
        raise ValueError(f'{config}: the model has no MIM decoder (loss_weights.mim is 0?)')
    return model.eval(), cfg


def read_image(path, size):
    """RGB uint8 ``[size, size, 3]``: shorter side resized to ``size``, then centre-cropped."""
    img = Image.open(path).convert('RGB')
    scale = size / min(img.size)
    img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))),
                     Image.BICUBIC)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))


@torch.no_grad()
def reconstruct(model, rgb, token_mask):
    """Run the masked backbone and the MIM decoder on one image.

    Args:
        model (HVPMTL): The pre-trained model.
        rgb (np.ndarray): ``[S, S, 3]`` uint8 RGB.
        token_mask (np.ndarray): ``[S/p, S/p]`` 0/1 at the backbone's patch resolution.

    Returns:
        tuple[np.ndarray, np.ndarray, float]: Reconstruction ``[S, S, 3]`` (RGB, 0..255 floats),
        pixel mask ``[S, S]`` and the L1 on masked pixels in normalised units (eq. 4).
    """
    pre = model.data_preprocessor
    mean, std = pre.mean.view(1, 3, 1, 1), pre.std.view(1, 3, 1, 1)
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float()
    bgr_model = not getattr(pre, '_channel_conversion', True)  # to_rgb=False: trained on BGR
    if bgr_model:
        x = x[:, [2, 1, 0]]
    x = (x - mean) / std
    mask = torch.from_numpy(np.asarray(token_mask)).float()[None]
    feats = model.backbone(x, mask)[-1]
    rec = model.mim_head(feats)
    patch = x.shape[-1] // mask.shape[-1]
    pixel_mask = mask.repeat_interleave(patch, 1).repeat_interleave(patch, 2)
    l1 = ((rec - x).abs() * pixel_mask[:, None]).sum() / (pixel_mask.sum() * 3).clamp(min=1)
    rec_img = (rec * std + mean).clamp(0, 255)
    rec_rgb = (rec_img[:, [2, 1, 0]] if bgr_model else rec_img)[0].permute(1, 2, 0).numpy()
    return rec_rgb, pixel_mask[0].numpy(), float(l1)


def draw(rows, out_file):
    """Write the figure: one row per image, four panels each (atomically)."""
    titles = ['input', 'mask (grey = masked)', 'reconstruction', 'visible + reconstructed']
    fig, axes = plt.subplots(len(rows), 4, figsize=(10, 2.6 * len(rows)), squeeze=False)
    for ax_row, (name, rgb, rec, pix, l1) in zip(axes, rows):
        masked = rgb.astype(np.float32) * (1 - pix[..., None]) + 127.0 * pix[..., None]
        pasted = rgb.astype(np.float32) * (1 - pix[..., None]) + rec * pix[..., None]
        for ax, img, title in zip(ax_row, [rgb, masked, rec, pasted], titles):
            ax.imshow(np.asarray(img, dtype=np.float32) / 255.0)
            ax.set_title(title, fontsize=9)
            ax.axis('off')
        ax_row[0].set_title(f'{name}\nL1 on masked {l1:.3f}', fontsize=8)
    fig.tight_layout()
    save_figure_atomically(fig, out_file)


def visualize(config, checkpoint, images, out_file, img_size=None, seed=0, cfg_options=None):
    """Make the MIM figure; returns ``[(image, l1)]``."""
    model, cfg = load_model(config, checkpoint, cfg_options)
    gen_cfg = find_mask_generator(cfg.get('train_dataloader', {}).get('dataset', {}))
    if gen_cfg is None:
        gen_cfg = dict(type='SimMIMMaskGenerator',
                       input_size=224,
                       mask_patch_size=32,
                       model_patch_size=4,
                       mask_ratio=0.6)
    gen_cfg = dict(gen_cfg)
    if img_size is not None:
        gen_cfg['input_size'] = img_size
    from mmpretrain.registry import TRANSFORMS
    generator = TRANSFORMS.build(gen_cfg)
    np.random.seed(seed)  # SimMIMMaskGenerator draws from numpy's global generator
    rows = []
    for path in images:
        rgb = read_image(path, gen_cfg['input_size'])
        token_mask = generator({})['mask']
        rec, pix, l1 = reconstruct(model, rgb, token_mask)
        rows.append((osp.basename(path), rgb, rec, pix, l1))
    draw(rows, out_file)
    return [(name, l1) for name, _, _, _, l1 in rows]

