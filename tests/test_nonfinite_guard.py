"""Non-finite guard on a tiny HVP-MTL run: a NaN step changes nothing (student,
EMA teacher and its step counter, SwAV queue and freeze counter, optimizer
moments), is logged and counted; N such steps in a row stop the run with a
message naming the last good checkpoint."""
import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from test_resume import (assert_same_state, run_log, scale_cfg,  # noqa: E402
                         snapshot, train)

from hvp_mtl.engine.runner import NonFiniteTrainingError  # noqa: E402


def _nan_hook(runner):
    return next(h for h in runner.hooks
                if type(h).__name__ == 'InjectNonFiniteHook')


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
