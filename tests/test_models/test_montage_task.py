"""HVP-MTL's fifth task (MCL's montage contrast) trained by a real Runner, tiny Swin."""
import math

import pytest
import torch
from mmengine.runner import Runner

from tests.helpers.tiny_configs import tiny_pretrain_cfg
from tests.helpers.tiny_models import model_and_batch as _model_and_batch
from tests.helpers.tiny_models import total_loss as _total

pytestmark = pytest.mark.usefixtures('one_torch_thread')

ITERS = 4
LEVELS = [f'montage_level_{i}' for i in range(4)]


@pytest.fixture(scope='module')
def pretrain_root(demo_world):
    return demo_world / 'pretrain'


@pytest.fixture(scope='module')
def trained(pretrain_root, tmp_path_factory):
    cfg = tiny_pretrain_cfg('swin', tmp_path_factory.mktemp('montage'), pretrain_root,
                            max_iters=ITERS, montage=0.1)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


@pytest.mark.slow
def test_runner_trains_five_losses(trained):
    hub = trained.message_hub
    for key in ('loss_mlc', 'loss_swav', 'loss_mim', 'loss_distill', 'loss_montage',
                'montage_unweighted', *LEVELS):
        values = hub.get_scalar(f'train/{key}').data[0]
        assert len(values) == ITERS and all(math.isfinite(v) for v in values), key
    model = trained.model
    assert model.teacher.steps.item() == ITERS + 1
    assert model.teacher.names == ('backbone', 'mlc_head', 'montage_neck',
                                   'montage_cell_head')
    state = torch.load(f'{trained.work_dir}/iter_{ITERS}.pth', map_location='cpu',
                       weights_only=True)['state_dict']
    for prefix in ('montage_head.neck.', 'montage_head.cell_head.', 'montage_head.predictors.',
                   'teacher.montage_neck.', 'teacher.montage_cell_head.'):
        assert any(k.startswith(prefix) for k in state), prefix
    assert not any(k.startswith('teacher.montage_predictors') for k in state)


@pytest.mark.slow
def test_the_stage_norms_are_trained(trained):
    """norm0-norm2 feed only the montage path; Swin initialises a LayerNorm to (1, 0)."""
    backbone = trained.model.backbone
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    for i in range(3):
        norm = getattr(backbone, f'norm{i}')
        assert not torch.equal(norm.weight, torch.ones_like(norm.weight)), i
        assert not torch.equal(norm.bias, torch.zeros_like(norm.bias)), i


@pytest.mark.slow
def test_teacher_fpn_and_cell_head_move_only_by_ema(trained):
    model, optim_wrapper = trained.model, trained.optim_wrapper
    teacher = {k: b for k, b in model.teacher.named_buffers() if b.is_floating_point()}
    old = {k: b.clone() for k, b in teacher.items()}
    batch = next(iter(trained.train_dataloader))
    model.train_step(batch, optim_wrapper)  # the teacher's forward uses batch statistics...
    for name, buf in teacher.items():  # ...but changes no buffer, running statistics included
        assert torch.equal(buf, old[name]), name
    student = {k: p.detach() for k, p in model.named_parameters()}
    model.after_train_step()
    m = model.teacher.momentum
    pairs = [(f'montage_{part}.{key}', f'montage_head.{part}.{key}')
             for part in ('neck', 'cell_head')
             for key, _ in getattr(model.montage_head, part).named_parameters()]
    assert len(pairs) > 10
    for t_name, s_name in pairs:
        expected = m * old[t_name] + (1 - m) * student[s_name]
        torch.testing.assert_close(teacher[t_name], expected, atol=1e-6, rtol=1e-5)
    copied = [(f'montage_{part}.{key}', buf) for part in ('neck', 'cell_head')
              for key, buf in getattr(model.montage_head, part).named_buffers()
              if buf.is_floating_point()]
    assert copied  # the cell head's BN statistics
    for t_name, buf in copied:
        assert torch.equal(teacher[t_name], buf), t_name


def test_every_student_parameter_gets_a_gradient(pretrain_root):
    """DDP with find_unused_parameters=False: each trainable parameter, norm0-norm2,
    the FPN, the cell head and all four predictors get a non-zero gradient."""
    cfg = tiny_pretrain_cfg('swin', data_root=pretrain_root, montage=0.1)
    cfg.model.tasks.swav.freeze_prototypes_iters = 0
    model, data = _model_and_batch(cfg)
    losses = model(**data, mode='loss')
    assert torch.isfinite(losses['loss_montage'])
    _total(losses).backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith('montage_head.predictors.levels.3.') for n in trainable)
    for name, param in trainable.items():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_weight_zero_builds_and_draws_nothing(pretrain_root):
    """montage=0 (the default) with the montage config present: no module, no RNG draw,
    the same state-dict keys and bit-identical losses as the paper's four-task model."""
    plain = tiny_pretrain_cfg('swin', data_root=pretrain_root)
    assert 'montage' not in plain.model.tasks
    zero = tiny_pretrain_cfg('swin', data_root=pretrain_root, montage=0.1)
    zero.model.loss_weights.montage = 0.
    zero.model.backbone.out_indices = plain.model.backbone.out_indices
    results = []
    for cfg in (plain, zero):
        model, data = _model_and_batch(cfg)
        assert model.montage_head is None and model.loss_weights['montage'] == 0.
        assert model.teacher.names == ('backbone', 'mlc_head')
        losses = model(**data, mode='loss')
        results.append((list(model.state_dict()), losses, torch.get_rng_state()))
    (keys, losses, rng), (zero_keys, zero_losses, zero_rng) = results
    assert zero_keys == keys
    assert not any('montage' in k or k.startswith('backbone.norm0') for k in keys)
    assert 'loss_montage' not in losses and set(zero_losses) == set(losses)
    for key, value in losses.items():
        assert torch.equal(zero_losses[key], value), key
    assert torch.equal(zero_rng, rng)


def test_montage_needs_four_stages(pretrain_root):
    cfg = tiny_pretrain_cfg('swin', data_root=pretrain_root, montage=0.1)
    cfg.model.backbone.out_indices = (3, )
    with pytest.raises(ValueError, match='out_indices=\\(0, 1, 2, 3\\)'):
        _model_and_batch(cfg)
    cfg = tiny_pretrain_cfg('swin', data_root=pretrain_root, montage=0.1)
    cfg.model.tasks.pop('montage')
    with pytest.raises(ValueError, match="tasks has no 'montage'"):
        _model_and_batch(cfg)


@pytest.mark.slow
def test_export_of_a_montage_checkpoint(trained, tmp_path):
    """The exporter takes the teacher's backbone, norm0-norm2 included; timm gets norm3 only."""
    from tests.helpers.exporter import export_in_process
    ckpt = f'{trained.work_dir}/iter_{ITERS}.pth'
    out = tmp_path / 'backbone.pth'
    error, _ = export_in_process(ckpt, out)
    assert error is None, error
    exported = torch.load(out, weights_only=True)['state_dict']
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    prefix = 'teacher.backbone.'
    teacher = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    for i in range(4):
        key = f'norm{i}.weight'
        assert torch.equal(exported[f'backbone.{key}'], teacher[key]), key
    assert not any('montage' in k for k in exported)
    error, _ = export_in_process(ckpt, tmp_path / 'timm.pth', '--format', 'timm')
    assert error is None, error
    timm_state = torch.load(tmp_path / 'timm.pth', weights_only=True)['state_dict']
    assert torch.equal(timm_state['norm.weight'], teacher['norm3.weight'])
