"""The cases timed by ``tools/perf/step.py``: configs, batch, models.

Every case is built from the shipped pre-training config of the chosen
backbone, with its real optim wrapper (``build_optim_wrapper``), and one step
is ``model.train_step(batch, optim_wrapper)`` followed by the log update the
mmengine Runner does after every iteration (``RuntimeInfoHook``).
"""
import copy
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.logging import MessageHub, MMLogger
from mmengine.model import BaseModel
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS, TRANSFORMS
from mmpretrain.structures import DataSample

import hvp_mtl  # noqa: F401  (registers the HVP-MTL modules)
from hvp_mtl.engine.hooks.collapse_monitor_hook import CollapseMonitorHook
from hvp_mtl.engine.hooks.task_gradient_share_hook import TaskGradientShareHook
from hvp_mtl.models.algorithms.momentum_teacher import MomentumTeacher

ROOT = Path(__file__).resolve().parents[2]
PRETRAIN = ROOT / 'configs' / 'pretrain'
SIMMIM_SWIN = 'mmpretrain::simmim/simmim_swin-base-w6_8xb256-amp-coslr-100e_in1k-192px.py'
CASES = ('full', 'no-mlc', 'no-swav', 'no-mim', 'no-distill', 'floor', 'simmim', 'montage',
         'grad-share', 'collapse-monitor')
TASK_WEIGHTS = {'full': {}, 'no-mlc': dict(mlc=0., distill=0.), 'no-swav': dict(swav=0.),
                'no-mim': dict(mim=0.), 'no-distill': dict(distill=0.)}
# ``tiny``: CPU smoke size (tiny Swin and heads); the others are the shipped configs.
TINY = dict(
    backbone=dict(arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4]),
                  window_size=2, drop_path_rate=0.),
    tasks=dict(mim=dict(in_channels=128),
               swav=dict(in_channels=128, hidden_channels=64, out_channels=16,
                         num_prototypes=16),
               mlc=dict(in_channels=128, embed_dims=32, num_groups=4, num_heads=2,
                        feedforward_channels=64)))
# the montage task's FPN and heads at the tiny size (``montage`` case)
TINY_MONTAGE = dict(neck=dict(out_channels=16),
                    cell_head=dict(in_channels=16, hidden_channels=32, out_channels=16),
                    predictors=dict(in_channels=16, hidden_channels=32, out_channels=16))
MONTAGE_CONFIG = 'hvp_swin-b_montage.py'
PRESETS = {'tiny': dict(config='hvp_swin-t.py', size=64, override=TINY,
                        montage_override=TINY_MONTAGE),
           'swin-t': dict(config='hvp_swin-t.py', size=224),
           'swin-b': dict(config='hvp_swin-b.py', size=224),
           'vit-b': dict(config='hvp_vit-b.py', size=224)}


class Case(NamedTuple):
    step: Callable[[], None]
    persistent_bytes: int


def load_config(backbone: str, options: Optional[dict] = None) -> Config:
    """The shipped config of ``backbone`` plus ``options`` (``--cfg-options``);
    SwAV prototypes unfrozen: the steady state of a run."""
    preset = PRESETS[backbone]
    cfg = Config.fromfile(str(PRETRAIN / preset['config']))
    override = copy.deepcopy(preset.get('override', {}))
    for name, value in override.pop('tasks', {}).items():
        cfg.model.tasks[name].update(value)
    for key, value in override.items():
        cfg.model[key].update(value)
    cfg.model.tasks.swav.freeze_prototypes_iters = 0
    cfg.merge_from_dict(options or {})
    init_default_scope('mmpretrain')
    MMLogger.get_instance('hvp_mtl_step_benchmark', log_level='WARNING')
    return cfg


def patch_size(cfg: Config) -> int:
    """Patch size of the config's backbone (4 for Swin)."""
    return cfg.model.backbone.get('patch_size', 16) if 'ViT' in cfg.model.backbone.type else 4


def make_batch(cfg: Config, args) -> dict:
    """A collated batch in the data contract: 2 uint8 views, ``gt_score``, mask."""
    generator = TRANSFORMS.build(dict(
        type='SimMIMMaskGenerator', input_size=args.size, mask_patch_size=32,
        model_patch_size=patch_size(cfg), mask_ratio=0.6))
    samples = []
    for _ in range(args.batch):
        views = [torch.randint(0, 256, (3, args.size, args.size), dtype=torch.uint8)
                 for _ in range(2)]
        score = torch.zeros(args.num_classes)
        positives = torch.randint(0, args.num_classes, (8, ))
        score[positives] = torch.tensor([1., .9, .8, 1., 1., .9, 1., .8])
        sample = DataSample().set_gt_score(score)
        sample.set_mask(torch.as_tensor(generator({})['mask']))
        samples.append(dict(inputs=views, data_samples=sample))
    batch = default_collate(samples)
    if args.channels_last:
        batch['inputs'] = [v.contiguous(memory_format=torch.channels_last)
                           for v in batch['inputs']]
    if args.device == 'cuda':  # as the loader's pin_memory=True
        batch['inputs'] = [v.pin_memory() for v in batch['inputs']]
    return batch


class BackboneFloor(BaseModel):
    """Only the backbone passes of the HVP-MTL step, with a trivial loss."""

    def __init__(self, backbone: dict, data_preprocessor: dict, masked: bool,
                 with_teacher: bool) -> None:
        super().__init__(data_preprocessor=MODELS.build(data_preprocessor))
        self.backbone = MODELS.build(backbone)
        self.masked = masked
        self.teacher = (MomentumTeacher(dict(backbone=self.backbone))
                        if with_teacher else None)

    def forward(self, inputs, data_samples=None, mode='loss'):
        view0, view1 = inputs
        mask = None
        if self.masked:
            mask0 = torch.stack([sample.mask for sample in data_samples])
            mask = torch.cat([mask0, torch.zeros_like(mask0)])
        loss = self.backbone(torch.cat([view0, view1]), mask)[-1].float().mean()
        if self.teacher is not None:
            with torch.no_grad():
                self.teacher.backbone(view1)
        return dict(loss=loss)


def add_montage_task(model_cfg: Config, args) -> None:
    """The fifth task of ``hvp_swin-b_montage.py`` on ``model_cfg``'s Swin: four
    output stages, the FPN sized to the Swin's stage widths, cells of P5's size."""
    from mmpretrain.models import SwinTransformer
    backbone = model_cfg.backbone
    if backbone.type != 'MaskedSwinTransformer':
        raise ValueError('the montage case needs a Swin backbone (four stages)')
    shipped = Config.fromfile(str(PRETRAIN / MONTAGE_CONFIG)).model
    arch = backbone.arch
    embed = (arch['embed_dims'] if isinstance(arch, dict) else
             SwinTransformer.arch_zoo[arch]['embed_dims'])
    head = shipped.tasks.montage
    head.neck.in_channels = [embed * 2**i for i in range(4)]
    head.cell_head.cell_size = args.size // 32
    for key, value in PRESETS[args.backbone].get('montage_override', {}).items():
        head[key].update(copy.deepcopy(value))
    backbone.out_indices = shipped.backbone.out_indices
    model_cfg.tasks.montage = head
    model_cfg.loss_weights.montage = shipped.loss_weights.montage


def simmim_model(cfg: Config, size: int) -> dict:
    """mmpretrain's SimMIM on the same backbone as ``cfg``."""
    backbone = copy.deepcopy(cfg.model.backbone)
    if backbone.type == 'MaskedSwinTransformer':
        from mmengine.hub import get_config
        model = get_config(SIMMIM_SWIN).model
        model.backbone = dict(type='SimMIMSwinTransformer', arch=backbone.arch,
                              img_size=size, stage_cfgs=dict(block_cfgs=dict(
                                  window_size=backbone.get('window_size', 7))),
                              drop_path_rate=backbone.get('drop_path_rate', 0.))
        stride = 32
    else:  # no SimMIM ViT in mmpretrain: its algorithm, neck and head on MaskedViT
        backbone.img_size = size
        stride = patch_size(cfg)
        model = dict(type='SimMIM', backbone=backbone,
                     neck=dict(type='SimMIMLinearDecoder'),
                     head=dict(type='SimMIMHead', patch_size=stride,
                               loss=dict(type='PixelReconstructionLoss',
                                         criterion='L1', channel=3)))
    model['neck'].update(in_channels=cfg.model.tasks.mim.in_channels, encoder_stride=stride)
    model['data_preprocessor'] = copy.deepcopy(cfg.model.data_preprocessor)
    return model


def optim_wrapper_cfg(cfg: Config, args) -> dict:
    """The config's optim wrapper for this device, dtype and fused flag.

    The shipped guarded wrappers: fp32 ``GuardedOptimWrapper``; bf16
    ``GuardedAmpOptimWrapper(dtype='bfloat16')``, without a loss scaler.
    """
    wrapper = copy.deepcopy(cfg.optim_wrapper)
    wrapper.pop('dtype', None)
    wrapper.pop('loss_scale', None)
    wrapper['type'] = 'GuardedOptimWrapper'
    if args.dtype == 'bf16':
        wrapper.update(type='GuardedAmpOptimWrapper', dtype='bfloat16')
    if args.fused:
        wrapper['optimizer']['fused'] = True
    return wrapper


def persistent_bytes(model: torch.nn.Module, wrapper) -> int:
    """Bytes of parameters, buffers and optimizer state."""
    tensors = list(model.parameters()) + list(model.buffers())
    for state in wrapper.optimizer.state.values():
        tensors += [v for v in state.values() if torch.is_tensor(v)]
    return sum(t.numel() * t.element_size() for t in tensors)


def build_case(name: str, cfg: Config, batch: dict, args) -> Case:
    """Model + optim wrapper of one case and its step function."""
    hub = MessageHub.get_instance('hvp_mtl_step_benchmark')
    size = args.size
    if name in TASK_WEIGHTS or name in ('montage', 'grad-share', 'collapse-monitor'):
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.backbone.img_size = size
        model_cfg.tasks.mlc.num_classes = args.num_classes
        model_cfg.loss_weights.update(TASK_WEIGHTS.get(name, {}))
        if name == 'montage':  # the full step plus the fifth task
            add_montage_task(model_cfg, args)
        model = MODELS.build(model_cfg)
        data = batch
    elif name == 'floor':
        backbone = copy.deepcopy(cfg.model.backbone)
        backbone.img_size = size
        model = BackboneFloor(backbone, cfg.model.data_preprocessor,
                              masked=cfg.model.loss_weights.mim > 0,
                              with_teacher=cfg.model.loss_weights.distill > 0)
        data = batch
    elif name == 'simmim':
        model = MODELS.build(simmim_model(cfg, size))
        data = dict(inputs=batch['inputs'][0], data_samples=batch['data_samples'])
    else:
        raise KeyError(f'unknown case {name!r}; expected one of {CASES}')
    model = model.to(args.device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if args.compile:
        for module in (model.backbone, getattr(model, 'neck', None),
                       getattr(model, 'mlc_head', None),
                       getattr(model, 'swav_head', None),
                       getattr(model, 'mim_head', None)):
            if module is not None:
                module.compile()
        teacher = getattr(model, 'teacher', None)
        for module in (getattr(teacher, 'backbone', None),
                       getattr(teacher, 'mlc_head', None)):
            if module is not None:
                module.compile()
    model.train()
    wrapper = build_optim_wrapper(model, optim_wrapper_cfg(cfg, args))

    # TeacherAndPrototypesHook's work: EMA teacher + prototypes after each step
    after_step = getattr(model, 'after_train_step', None)
    if after_step is not None:
        after_step(before_training=True)

    monitor = None
    if name == 'collapse-monitor':  # its fixed batch: the benchmark's view 0, repeated
        monitor = CollapseMonitorHook(num_images=args.monitor_images)
        view0 = batch['inputs'][0]
        repeats = -(-args.monitor_images // len(view0))
        monitor.use_images(view0.repeat(repeats, 1, 1, 1)[:args.monitor_images].cpu())

    def step() -> None:
        log_vars = model.train_step(data, wrapper)
        if after_step is not None:
            after_step()
        for key, value in log_vars.items():  # as RuntimeInfoHook.after_train_iter
            hub.update_scalar(f'train/{key}', value)
        if name == 'grad-share':  # an iteration on which TaskGradientShareHook measures
            TaskGradientShareHook.measure(model, wrapper, data)
        if monitor is not None:  # an iteration on which CollapseMonitorHook measures
            monitor.measure(model, getattr(wrapper, 'cast_dtype', None))

    step()  # creates the optimizer state, so persistent bytes are complete
    return Case(step, persistent_bytes(model, wrapper))
