"""Non-finite guard on a tiny HVP-MTL run: a NaN step changes nothing (student,
EMA teacher and its step counter, SwAV queue and freeze counter, optimizer
moments), is logged and counted; N such steps in a row stop the run with a
message naming the last good checkpoint."""
import pathlib

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper
from mmpretrain.registry import HOOKS

from hvp_mtl.engine.optimizers import NonFiniteTrainingError  # noqa: E402
from tests.helpers.resume_runs import assert_same_state, run_log, scale_cfg, snapshot, train


def _nan_hook(runner):
    return next(h for h in runner.hooks
                if type(h).__name__ == 'InjectNonFiniteHook')


@pytest.mark.slow
@pytest.mark.parametrize('wrapper', ['GuardedOptimWrapper',
                                     'GuardedAmpOptimWrapper'])
def test_nan_step_is_skipped(demo_world, tmp_path, wrapper):
    """NaN at iteration 3 of 4 (0-based 2); with AMP: bf16 autocast (CPU)."""
    cfg = scale_cfg(tmp_path, demo_world / 'pretrain', iters=4)
    cfg.optim_wrapper.type = wrapper
    if wrapper == 'GuardedAmpOptimWrapper':
        cfg.optim_wrapper.dtype = 'bfloat16'
    cfg.custom_hooks.append(
        dict(type='InjectNonFiniteHook', iters=[2], record=True))
    runner = train(cfg)
    assert runner.iter == 4
    states = _nan_hook(runner).states
    states[4] = snapshot(runner)
    # the NaN step (2 -> 3) left model and optimizer as they were (the lr
    # schedule, a function of the iteration, moves on) ...
    assert_same_state(states[2], states[3], 'skipped step', schedulers=False)
    # ... while the steps around it trained
    for before, after in ((1, 2), (3, 4)):
        changed = [k for k in states[before]['model']
                   if not torch.equal(states[before]['model'][k],
                                      states[after]['model'][k])]
        assert 'backbone.patch_embed.projection.weight' in changed
        assert 'teacher.backbone.patch_embed.projection.weight' in changed
        assert 'swav_head.iteration' in changed
    guard = runner.optim_wrapper
    assert guard.total_nonfinite == 1 and guard.consecutive_nonfinite == 0
    # what a skipped step restores: forward's state (SwAV queue and counter),
    # not the EMA teacher (changed only after a step, by the hook, which a
    # skipped step skips) -- no per-step copy of the teacher
    restored = guard._snapshot_names(runner.model)
    assert {'swav_head.queue', 'swav_head.iteration'} <= restored
    assert not any(name.startswith('teacher.') for name in restored)
    log = run_log(tmp_path)
    assert 'Skipped the optimizer step of iter 3: non-finite loss or ' \
        'gradients (1 in a row, 1 non-finite steps in total)' in log
    assert 'nonfinite_skips: 1' in log


@pytest.mark.slow
def test_consecutive_nan_steps_stop_the_run(demo_world, tmp_path):
    cfg = scale_cfg(tmp_path, demo_world / 'pretrain', iters=8)
    cfg.optim_wrapper.max_consecutive_nonfinite = 3
    cfg.custom_hooks.append(
        dict(type='InjectNonFiniteHook', iters=range(2, 8)))
    with pytest.raises(NonFiniteTrainingError) as error:
        train(cfg)
    message = str(error.value)
    assert '3 consecutive steps had a non-finite loss or gradients ' \
        '(the last at iter 5)' in message
    assert f'The last good checkpoint is {tmp_path / "iter_4.pth"}' \
        in message
    # iteration 4's checkpoint holds the weights of iteration 2: nothing
    # trained after the first NaN step
    ckpt2 = torch.load(tmp_path / 'iter_2.pth', map_location='cpu')
    ckpt4 = torch.load(tmp_path / 'iter_4.pth', map_location='cpu')
    for key, value in ckpt2['state_dict'].items():
        assert torch.equal(value, ckpt4['state_dict'][key]), key


@HOOKS.register_module(force=True)
class InjectGradNaNHook(Hook):
    """Make the gradient of the backbone output NaN (or Inf) at the given
    0-based iterations; the loss stays finite."""

    priority = 'HIGHEST'

    def __init__(self, iters, value=float('nan')) -> None:
        self.iters, self.value, self._handle = set(iters), value, None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter not in self.iters:
            return
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model

        def poison(module, args, outputs):
            for out in outputs:
                out.register_hook(lambda grad: grad * self.value)

        self._handle = model.backbone.register_forward_hook(poison)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        assert torch.isfinite(outputs['loss'])  # only the gradients are bad
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


@pytest.mark.slow
@pytest.mark.parametrize('dtype', ['bfloat16', 'float16'])
def test_nan_gradients_with_a_finite_loss_stop_the_run(demo_world, tmp_path, dtype):
    """bf16: no loss scaler, every NaN-gradient step counts; fp16 (the CUDA
    scaler branches, on a CPU GradScaler): the scaler's overflow skips are
    bounded by max_consecutive_overflow."""
    cfg = scale_cfg(tmp_path, demo_world / 'pretrain', iters=8)
    cfg.optim_wrapper.update(type='GuardedAmpOptimWrapper', dtype=dtype,
                             max_consecutive_nonfinite=3, max_consecutive_overflow=3)
    if dtype == 'float16':  # dynamic; small enough that the tiny model never overflows
        cfg.optim_wrapper.loss_scale = dict(init_scale=256.)
    cfg.custom_hooks.append(dict(type='InjectGradNaNHook', iters=range(2, 8)))
    with pytest.raises(NonFiniteTrainingError) as error:
        train(cfg)
    message = str(error.value)
    if dtype == 'bfloat16':
        assert '3 consecutive steps had a non-finite loss or gradients ' \
            '(the last at iter 5)' in message
    else:
        assert '3 consecutive steps were skipped as fp16 loss-scale overflows' in message
        assert 'now 32' in message  # 256 halved three times
        assert '(the last at iter 5)' in message
    ckpt2 = torch.load(tmp_path / 'iter_2.pth', map_location='cpu')
    ckpt4 = torch.load(tmp_path / 'iter_4.pth', map_location='cpu')
    for key, value in ckpt2['state_dict'].items():
        assert torch.equal(value, ckpt4['state_dict'][key]), key
    scaler = ckpt4['optimizer'].get('loss_scaler', {})
    assert (scaler == {}) == (dtype == 'bfloat16')  # bf16: no loss scaler at all


@pytest.mark.slow
def test_one_fp16_overflow_is_the_scalers_business(demo_world, tmp_path):
    """One Inf-gradient step under fp16: skipped, scale halved, not counted as
    non-finite, and the run goes on."""
    cfg = scale_cfg(tmp_path, demo_world / 'pretrain', iters=4)
    cfg.optim_wrapper.update(type='GuardedAmpOptimWrapper', dtype='float16',
                             loss_scale=dict(init_scale=256.))
    cfg.custom_hooks.append(dict(type='InjectGradNaNHook', iters=[1], value=float('inf')))
    runner = train(cfg)
    guard = runner.optim_wrapper
    assert runner.iter == 4 and guard.loss_scaler.is_enabled()
    assert guard.total_scale_skips == 1 and guard.total_nonfinite == 0
    assert guard.consecutive_overflow == 0
    assert guard.loss_scaler.get_scale() == 128.
    assert 'Skipped the optimizer step of iter 2: fp16 gradient overflow (1 in a row, ' \
        '1 overflow skips in total)' in run_log(tmp_path)


def test_bf16_with_a_loss_scaler_is_refused():
    model = nn.Linear(4, 2)
    for loss_scale in ('dynamic', 512., dict(init_scale=2.**10)):
        with pytest.raises(ValueError, match='bf16 needs no loss scaling'):
            build_optim_wrapper(model, dict(
                type='GuardedAmpOptimWrapper', dtype='bfloat16', loss_scale=loss_scale,
                optimizer=dict(type='SGD', lr=0.1)))
    wrapper = build_optim_wrapper(model, dict(
        type='GuardedAmpOptimWrapper', dtype='bfloat16', optimizer=dict(type='SGD', lr=0.1)))
    assert not wrapper.loss_scaler.is_enabled()
    fp16 = build_optim_wrapper(model, dict(
        type='GuardedAmpOptimWrapper', dtype='float16', optimizer=dict(type='SGD', lr=0.1)))
    assert fp16.loss_scaler.is_enabled() and fp16._dynamic_scaling


def _toy_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 4))


HOST_SYNCS = ('item', 'tolist', '__bool__', '__float__', '__int__', 'numpy')


@pytest.mark.parametrize('wrapper', [dict(type='GuardedOptimWrapper'),
                                     dict(type='GuardedAmpOptimWrapper', dtype='float16'),
                                     dict(type='GuardedAmpOptimWrapper', dtype='bfloat16')],
                         ids=['fp32', 'fp16', 'bf16'])
def test_one_gradient_norm_and_one_host_sync_per_step(monkeypatch, wrapper):
    """The guard's verdict and norm clipping share one norm computation; the
    guard syncs with the host once per step; clipping is upstream's exactly."""
    model, reference = _toy_model(), _toy_model()
    clip = dict(max_norm=0.05)  # small: every step clips
    optimizer = dict(type='SGD', lr=0.5, momentum=0.9)
    ours = build_optim_wrapper(model, dict(wrapper, optimizer=optimizer, clip_grad=clip))
    upstream = build_optim_wrapper(reference, dict(
        type='OptimWrapper', optimizer=optimizer, clip_grad=clip))
    counts = dict(norms=0, syncs=0)
    foreach_norm = torch._foreach_norm

    def counting_norm(*args, **kwargs):
        counts['norms'] += 1
        return foreach_norm(*args, **kwargs)

    monkeypatch.setattr(torch, '_foreach_norm', counting_norm)
    for name in HOST_SYNCS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, **kwargs):
            counts['syncs'] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    inputs = torch.randn(16, 8)
    for step in range(3):
        with ours.optim_context(model):
            loss = model(inputs).float().pow(2).mean()
        counts.update(norms=0, syncs=0)
        ours.update_params(loss)
        if step > 0:  # the first step also learns which parameters forward changes
            assert counts == dict(norms=1, syncs=1), counts
        if wrapper['type'] == 'GuardedOptimWrapper':
            upstream.update_params(reference(inputs).pow(2).mean())
            for a, b in zip(model.parameters(), reference.parameters()):
                assert torch.equal(a, b)  # bit-identical to clip_grad_norm_ + step
    assert ours.total_nonfinite == 0


def test_amp_flag_on_the_shipped_bf16_config_adds_no_loss_scaler(tmp_path):
    """``tools/train.py configs/pretrain/hvp_swin-b.py --amp`` (what
    test_dist_launch's 64-GPU plan prints) keeps bf16 without a loss scaler."""
    import importlib.util

    from mmengine.config import Config
    root = pathlib.Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location('hvp_train_tool', root / 'tools' / 'train.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    config = root / 'configs' / 'pretrain' / 'hvp_swin-b.py'
    cfg = tool.merge_args(Config.fromfile(str(config)), tool.parse_args(
        [str(config), '--amp', '--work-dir', str(tmp_path)]))
    assert cfg.optim_wrapper.type == 'GuardedAmpOptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    wrapper_cfg = {k: v for k, v in cfg.optim_wrapper.items() if k != 'paramwise_cfg'}
    wrapper_cfg['optimizer'] = dict(wrapper_cfg['optimizer'], fused=False)
    wrapper = build_optim_wrapper(nn.Linear(4, 2), wrapper_cfg)
    assert wrapper.cast_dtype == torch.bfloat16 and not wrapper.loss_scaler.is_enabled()
