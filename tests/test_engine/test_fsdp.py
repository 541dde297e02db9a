"""configs/pretrain/hvp_swin-b_fsdp.py's strategy on 2 real gloo processes.

FlexibleRunner + ResumableFSDPStrategy (one unit per Swin block) trains the
tiny HVP-MTL model with every objective on, EMA teacher and SwAV state
included: the result equals the DDP run of the same config, and a run
killed after iteration 3 and resumed from its iteration-2 checkpoint ends
where the uninterrupted FSDP run does.
"""
import subprocess

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmpretrain.registry import HOOKS, MODELS

from tests.helpers.dist_launch import DIST_TRAIN, ROOT
from tests.helpers.dist_launch import free_port as _free_port
from tests.helpers.dist_launch import launch_env as _env
from tests.helpers.dist_launch import newest_log as _log
from tests.helpers.resume_runs import scale_cfg

pytestmark = [pytest.mark.dist, pytest.mark.slow]

FSDP_CONFIG = ROOT / 'configs' / 'pretrain' / 'hvp_swin-b_fsdp.py'
ITERS = 4


def _initial_weights(cfg, path):
    """One initialisation for both runs (the runners build and initialise
    the model at different points of the random stream)."""
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict()), path)


@HOOKS.register_module(force=True)
class LogForwardDtypesHook(Hook):
    """Log the dtype a student weight has inside forward (FSDP's all-gather)
    and the dtype of its sharded master copy and gradient after the step."""

    def before_train(self, runner):
        module = runner.model.module.backbone.patch_embed.projection
        module.register_forward_pre_hook(lambda m, args: runner.logger.info(
            f'forward weight dtype: {m.weight.dtype}'))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        params = [p for p in runner.model.parameters() if p.numel()]
        runner.logger.info(f'master weight dtypes: {sorted({str(p.dtype) for p in params})}; '
                           f'loss {float(outputs["loss"]):.4f}')


def _write(tmp_path, name, data_root, fsdp, custom_hooks=(), shipped_precision=False):
    cfg = scale_cfg(tmp_path / name, data_root, iters=ITERS, ckpt_interval=2,
                    num_images=8)
    init = tmp_path / 'init.pth'
    if not init.exists():
        _initial_weights(cfg, init)
    cfg.load_from = str(init)
    cfg.custom_imports = dict(imports=['hvp_mtl', 'tests.helpers.resume_runs',
                                       'tests.test_engine.test_fsdp'],
                              allow_failed_imports=False)
    cfg.custom_hooks.extend(custom_hooks)
    if fsdp:
        shipped = Config.fromfile(str(FSDP_CONFIG))
        cfg.runner_type = shipped.runner_type
        cfg.strategy = shipped.strategy
        cfg.strategy.model_wrapper.device_id = 'cpu'
        if shipped_precision:  # bf16 all-gathers need the config's bf16 autocast
            cfg.optim_wrapper.update(type='GuardedAmpOptimWrapper', dtype='bfloat16')
        else:  # fp32 all-gathers: the run must equal the fp32 DDP run
            cfg.strategy.model_wrapper.mixed_precision = None
        # the shipped 'full' offloads to the CPU, which CPU tensors do not need
        cfg.strategy.state_dict_cfg = dict(
            state_dict_type='FULL_STATE_DICT',
            state_dict_config=dict(type='FullStateDictConfig',
                                   offload_to_cpu=False, rank0_only=True),
            optim_state_dict_config=dict(type='FullOptimStateDictConfig',
                                         offload_to_cpu=False,
                                         rank0_only=True))
    path = tmp_path / f'{name}.py'
    cfg.dump(str(path))
    return path


def _launch(cfg_path, *args):
    return subprocess.run(
        ['bash', str(DIST_TRAIN), str(cfg_path), '2', *args], cwd=ROOT,
        env=_env(PORT=_free_port()), capture_output=True, text=True,
        timeout=600)


def _state(work_dir, iteration):
    ckpt = torch.load(work_dir / f'iter_{iteration}.pth', map_location='cpu')
    return ckpt['state_dict']


@pytest.fixture(scope='module')
def runs(demo_world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('fsdp')
    data = demo_world / 'pretrain'
    done = {}
    for name, fsdp in (('fsdp', True), ('ddp', False)):
        proc = _launch(_write(tmp, name, data, fsdp))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        done[name] = tmp / name
    return tmp, data, done


def test_fsdp_equals_ddp_with_teacher_and_swav_state(runs):
    tmp, _, done = runs
    assert 'FSDP' in _log(done['fsdp']) and 'FSDP' not in _log(done['ddp'])
    fsdp, ddp = _state(done['fsdp'], ITERS), _state(done['ddp'], ITERS)
    assert set(fsdp) == set(ddp)  # plain names: no FSDP wrapper components
    assert not any('_fsdp_wrapped_module' in key for key in fsdp)
    assert int(fsdp['teacher.steps']) == ITERS + 1
    assert int(fsdp['swav_head.iteration']) == ITERS
    init = torch.load(tmp / 'init.pth', map_location='cpu')['state_dict']
    squared_diff = squared_update = 0.
    for key, value in ddp.items():
        if not value.is_floating_point():
            assert torch.equal(fsdp[key], value), key
            continue
        # within a tenth of one AdamW step (lr 1e-3) everywhere: Adam turns
        # round-off in near-zero gradients (a bias before BatchNorm) into
        # steps of its own, so a tight per-element rtol would test noise
        torch.testing.assert_close(fsdp[key], value, atol=1e-4, rtol=0,
                                   msg=lambda m, k=key: f'{k}: {m}')
        if key in init and not key.startswith('teacher.'):
            squared_diff += (fsdp[key] - value).double().pow(2).sum().item()
            squared_update += (value - init[key]).double().pow(2).sum().item()
    # the two runs' total parameter updates agree to 0.1 %
    assert squared_update > 0 and squared_diff / squared_update < 1e-6
    # the teacher really moved by EMA and the prototypes were re-normalised
    # after the last step (written back to the shards)
    assert not torch.equal(fsdp['teacher.backbone.patch_embed.projection.weight'],
                           fsdp['backbone.patch_embed.projection.weight'])
    norms = fsdp['swav_head.prototypes.weight'].norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_fsdp_kill_and_resume_equals_the_uninterrupted_run(runs):
    tmp, data, done = runs
    killed = _write(tmp, 'killed', data, fsdp=True,
                    custom_hooks=[dict(type='KillAtIterHook', at=3)])
    proc = _launch(killed)
    assert proc.returncode != 0 and 'killed after iteration 3' in proc.stderr
    ckpt = torch.load(tmp / 'killed' / 'iter_2.pth', map_location='cpu')
    # each rank's own SwAV queue travels with the checkpoint (the state dict
    # has rank 0's only); the resumed ranks get theirs back
    queues = [state['swav_head']['queue']
              for state in ckpt['resume_state']['rank_local']]
    assert len(queues) == 2 and queues[0].abs().sum() > 0
    assert not torch.equal(queues[0], queues[1])
    torch.testing.assert_close(queues[0], ckpt['state_dict']['swav_head.queue'])
    assert not (tmp / 'killed' / 'iter_4.pth').exists()
    resumed = _write(tmp, 'killed', data, fsdp=True)  # same work dir, no kill
    proc = _launch(resumed, '--resume')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'resumed' in _log(tmp / 'killed').lower()
    expected, got = _state(done['fsdp'], ITERS), _state(tmp / 'killed', ITERS)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, atol=0, rtol=0,
                                   msg=lambda m, k=key: f'{k}: {m}')


def test_fsdp_all_gathers_bf16_parameters_as_shipped(runs):
    """The shipped MixedPrecision: bf16 weights inside forward (half the
    all-gather traffic), fp32 sharded master weights, optimizer and checkpoint."""
    tmp, data, _ = runs
    shipped = Config.fromfile(str(FSDP_CONFIG)).strategy.model_wrapper.mixed_precision
    assert shipped == dict(param_dtype='bfloat16', reduce_dtype='float32',
                           buffer_dtype='float32')
    proc = _launch(_write(tmp, 'bf16', data, fsdp=True, shipped_precision=True,
                          custom_hooks=[dict(type='LogForwardDtypesHook')]))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = _log(tmp / 'bf16')
    assert 'forward weight dtype: torch.bfloat16' in log
    assert 'forward weight dtype: torch.float32' not in log
    assert "master weight dtypes: ['torch.float32']" in log
    state = _state(tmp / 'bf16', ITERS)
    assert all(v.dtype == torch.float32 for k, v in state.items() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert int(state['teacher.steps']) == ITERS + 1


def test_ddp_needs_no_unused_parameter_search_and_keeps_frozen_prototypes(runs):
    """The DDP run of the fixture: find_unused_parameters=False as shipped, the
    prototypes frozen for 2 iterations (in the graph, gradient cleared) did not
    move until the freeze ended."""
    tmp, _, done = runs
    assert 'find_unused_parameters=False' in _log(done['ddp'])
    init = torch.load(tmp / 'init.pth', map_location='cpu')['state_dict']
    init = torch.nn.functional.normalize(init['swav_head.prototypes.weight'], dim=1)
    frozen = _state(done['ddp'], 2)['swav_head.prototypes.weight']
    torch.testing.assert_close(frozen, init, atol=1e-6, rtol=0)
    trained = _state(done['ddp'], ITERS)['swav_head.prototypes.weight']
    assert (trained - init).abs().max() > 1e-4


def test_ddp_with_broadcast_buffers_is_refused(runs):
    tmp, data, _ = runs
    cfg = Config.fromfile(str(_write(tmp, 'broadcast', data, fsdp=False)))
    cfg.model_wrapper_cfg.broadcast_buffers = True
    path = tmp / 'broadcast_on.py'
    cfg.dump(str(path))
    proc = _launch(path)
    assert proc.returncode != 0
    assert 'model_wrapper_cfg.broadcast_buffers=True' in proc.stderr
    assert "rank 0's SwAV queue" in proc.stderr
