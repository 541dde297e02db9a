"""Every tensor of a few seeded training steps of the tiny HVP-MTL and MCL, to pin a refactor.

:func:`record` builds a tiny model from the shipped configs (``tiny_pretrain_cfg`` with all
five tasks and an active SwAV queue, ``tiny_mcl_cfg``'s ResNet), feeds it ``STEPS`` batches of
seeded synthetic inputs (no data pipeline: the reference pins the model code only) and runs
what a ``Runner`` iteration runs: ``loss``, ``parse_losses``, the optimizer wrapper's step,
the post-step ``after_train_step``. It returns every loss and log of every step and, after the
last step, the whole state dict (weights, the EMA teacher, the SwAV queue and counters) and
the optimizer's moments (their sums), as ``{key: tensor}``.

``tests/test_models/test_step_reference.py`` compares a fresh :func:`record` with the file
written before a refactor, ``torch.equal`` for every entry. To pin the current code (only
for a deliberate change of the numbers, named in the commit)::

    python -m tests.helpers.step_reference
"""
import pathlib
import time
from typing import Dict, List, Tuple

import torch
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import set_random_seed
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from tests.helpers.mcl_tiny import tiny_mcl_cfg
from tests.helpers.tiny_configs import tiny_pretrain_cfg

REFERENCE = pathlib.Path(__file__).resolve().parents[1] / 'test_models' / 'step_reference.pt'
MODELS_RECORDED = ('hvpmtl', 'mcl')
STEPS = 3
BATCH, SIZE, CLASSES = 4, 64, 12


def platform() -> Dict[str, str]:
    """What bit-identical CPU results depend on besides the code."""
    return dict(torch=torch.__version__.split('+')[0],
                cpu=torch.backends.cpu.get_cpu_capability())


def _hvpmtl_cfg():
    """``tiny_pretrain_cfg`` with all five tasks, a Swin of widths 8..64 and one block per
    stage (a small reference file), the SwAV queue used from the second step."""
    cfg = tiny_pretrain_cfg('swin', num_classes=CLASSES, batch_size=BATCH, img_size=SIZE,
                            montage=0.1)
    model = cfg.model
    model.backbone.arch = dict(embed_dims=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2])
    for head in (model.tasks.mlc, model.tasks.swav, model.tasks.mim):
        head.in_channels = 64
    model.tasks.montage.neck.in_channels = [8, 16, 32, 64]
    model.tasks.swav.update(queue_length=8, queue_start_iter=1, freeze_prototypes_iters=1)
    return cfg


def _mcl_cfg():
    """``tiny_mcl_cfg``'s ResNet-18 at base width 4 (a small reference file)."""
    cfg = tiny_mcl_cfg('r50', work_dir='.', data_root='.')
    cfg.model.backbone.update(stem_channels=4, base_channels=4)
    cfg.model.neck.in_channels = [4, 8, 16, 32]
    return cfg


def _hvpmtl_batch(gen: torch.Generator) -> Tuple[List[torch.Tensor], List[DataSample]]:
    """Two views, view 0's mask (4-px patches, 60 %) and sparse soft targets."""
    views = [torch.randn(BATCH, 3, SIZE, SIZE, generator=gen) for _ in range(2)]
    grid = SIZE // 4
    masks = (torch.rand(BATCH, grid, grid, generator=gen) < 0.6).long()
    scores = torch.rand(BATCH, CLASSES, generator=gen)
    scores = scores * (torch.rand(BATCH, CLASSES, generator=gen) < 0.3)
    samples = []
    for mask, score in zip(masks, scores):
        sample = DataSample()
        sample.set_field(mask, 'mask')
        sample.set_field(score, 'gt_score')
        samples.append(sample)
    return views, samples


def _mcl_batch(gen: torch.Generator) -> Tuple[List[torch.Tensor], None]:
    """``2 x 4`` views (query and key branch, one per montage level)."""
    return [torch.randn(BATCH, 3, SIZE, SIZE, generator=gen) for _ in range(8)], None


def record(name: str) -> Dict[str, torch.Tensor]:
    """``STEPS`` seeded steps of one tiny model (``'hvpmtl'`` or ``'mcl'``), every tensor.

    Returns:
        dict[str, Tensor]: ``step{i}/{loss key}`` and ``step{i}/log/{key}`` per step,
        ``state/{key}`` (the model's state dict) and ``optim/{param}/{key}_sum`` after the
        last.
    """
    if name == 'hvpmtl':
        cfg, batch = _hvpmtl_cfg(), _hvpmtl_batch
    elif name == 'mcl':
        cfg, batch = _mcl_cfg(), _mcl_batch
    else:
        raise ValueError(f'expected one of {MODELS_RECORDED}, got {name!r}')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    # a fresh message hub: no Runner's ``iter``/``max_iters`` left by an earlier test (MCL's
    # momentum schedule reads them; with none it uses its base momentum, as recorded)
    MessageHub.get_instance(f'step_reference_{name}_{time.time_ns()}')
    try:
        init_default_scope('mmpretrain')
        set_random_seed(0)
        model = MODELS.build(cfg.model)
        model.init_weights()
        model.after_train_step(before_training=True)  # TeacherAndPrototypesHook's
        model.train()
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        gen = torch.Generator().manual_seed(1)
        out = {}
        for i in range(STEPS):
            inputs, samples = batch(gen)
            torch.manual_seed(100 + i)  # the montage tiles are drawn from the global RNG
            losses = model.loss(inputs, samples)
            parsed, log_vars = model.parse_losses(losses)
            optim_wrapper.update_params(parsed)
            model.after_train_step()
            out.update({f'step{i}/{k}': v.detach().clone() for k, v in losses.items()})
            out.update({f'step{i}/log/{k}': torch.as_tensor(v).detach().clone()
                        for k, v in log_vars.items()})
        out.update({f'state/{k}': v.detach().clone() for k, v in model.state_dict().items()})
        for index, state in optim_wrapper.state_dict()['state'].items():
            # the moments by their float64 sums (the weights they moved are recorded whole)
            out.update({f'optim/{index}/{k}_sum': torch.as_tensor(v).double().sum()
                        for k, v in state.items()})
        return out
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    """Write :data:`REFERENCE` from the code checked out."""
    data = {name: record(name) for name in MODELS_RECORDED}
    data['platform'] = platform()
    torch.save(data, REFERENCE)
    sizes = {name: len(data[name]) for name in MODELS_RECORDED}
    print(f'{REFERENCE.name}: {sizes} tensors, {REFERENCE.stat().st_size} bytes, {platform()}')


if __name__ == '__main__':
    main()
