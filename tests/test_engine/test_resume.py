"""Kill-and-resume: a tiny HVP-MTL run stopped at iteration k and resumed to n
equals the uninterrupted run bit for bit (student, EMA teacher, SwAV queue and
freeze counter, optimizer, schedulers), and the resumed run loads only the
batches it trains on (no dataloader replay).

The run helpers (config with the training-at-scale parts, simulated kill, load
counter, NaN injection) live in ``tests/helpers/resume_runs.py``.
"""
import itertools

import numpy as np
import pytest
from mmengine.dataset import DefaultSampler

from hvp_mtl.datasets.samplers import ResumableDefaultSampler, ResumableInfiniteSampler  # noqa: E402
from tests.helpers.resume_runs import (
    CountLoads,
    assert_same_state,
    run_log,
    scale_cfg,
    snapshot,
    train,
)


# -------------------------------------------------------------------- tests --
def test_resumable_samplers_seek_is_the_suffix_of_the_same_order():
    dataset = list(range(23))
    reference = list(DefaultSampler(dataset, shuffle=True, seed=3))
    sampler = ResumableDefaultSampler(dataset, shuffle=True, seed=3)
    assert list(sampler) == reference  # same order as mmengine's sampler
    sampler.set_resume_position(epoch=0, consumed=10)
    assert list(sampler) == reference[10:]
    assert list(sampler) == reference  # one-shot: the next epoch is whole
    sampler.set_resume_position(epoch=5, consumed=7)
    sampler5 = ResumableDefaultSampler(dataset, shuffle=True, seed=3)
    sampler5.set_epoch(5)
    assert list(sampler) == list(sampler5)[7:]

    stream = ResumableInfiniteSampler(dataset, shuffle=True, seed=3)
    head = list(itertools.islice(iter(stream), 60))
    assert sorted(head[:23]) == dataset and sorted(head[23:46]) == dataset
    stream.set_resume_position(0, 41)
    assert list(itertools.islice(iter(stream), 19)) == head[41:]


def _as_rank(sampler, rank, world_size):
    """Make a constructed sampler rank ``rank`` of ``world_size``."""
    sampler.rank, sampler.world_size = rank, world_size
    if hasattr(sampler, 'total_size'):
        sampler.num_samples = -(-len(sampler.dataset) // world_size)
        sampler.total_size = sampler.num_samples * world_size
    return sampler


def test_compact_order_per_rank_equals_mmengine_with_padding():
    """The int32 order, padded modulo the dataset size and handed out in
    blocks, gives every rank mmengine's list-based indices; the infinite
    stream likewise, across epoch boundaries."""
    from hvp_mtl.datasets.samplers import resumable_samplers
    dataset = list(range(23))
    for world_size in (1, 3, 4):
        for rank in range(world_size):
            ours = _as_rank(ResumableDefaultSampler(dataset, seed=5), rank,
                            world_size)
            theirs = _as_rank(DefaultSampler(dataset, seed=5), rank,
                              world_size)
            ours.set_epoch(2)
            theirs.set_epoch(2)
            assert list(ours) == list(theirs)
            # a checkpoint counts whole steps: a multiple of the world size
            ours.set_resume_position(epoch=2, consumed=3 * world_size)
            assert list(ours) == list(theirs)[3:]
    assert resumable_samplers.epoch_order(23, 5, 2, True).dtype == np.int32
    # blocks smaller than an epoch: the stream crosses blocks and epochs
    old_block, resumable_samplers.BLOCK = resumable_samplers.BLOCK, 4
    try:
        streams = [_as_rank(ResumableInfiniteSampler(dataset, seed=1), r, 2)
                   for r in range(2)]
        heads = [list(itertools.islice(iter(s), 40)) for s in streams]
        merged = [heads[i % 2][i // 2] for i in range(80)]
        assert sorted(merged[:23]) == dataset
        assert sorted(merged[23:46]) == dataset
        streams[1].set_resume_position(0, 30)
        assert list(itertools.islice(iter(streams[1]), 20)) == merged[31::2][:20]
    finally:
        resumable_samplers.BLOCK = old_block


@pytest.fixture(scope='module')
def pretrain_root(demo_world):
    return demo_world / 'pretrain'


@pytest.mark.slow
def test_kill_mid_epoch_and_resume_is_bit_identical(pretrain_root, tmp_path):
    """6 images, batch 2: 3 iterations per epoch, 2 epochs (n = 6). The run is
    killed after iteration 5; the latest checkpoint is iteration 4, i.e.
    epoch 1 with one of its three batches done."""
    straight = train(scale_cfg(tmp_path / 'straight', pretrain_root,
                               epochs=2))
    assert straight.iter == 6
    expected = snapshot(straight)

    cfg = scale_cfg(tmp_path / 'killed', pretrain_root, epochs=2)
    cfg.custom_hooks.append(dict(type='KillAtIterHook', at=5))
    killed = train(cfg)
    assert killed.iter == 4  # iteration 5 ran but was not saved
    assert (tmp_path / 'killed' / 'iter_4.pth').is_file()

    CountLoads.count = 0
    cfg = scale_cfg(tmp_path / 'killed', pretrain_root, epochs=2)
    cfg.resume = True
    resumed = train(cfg)
    assert resumed.iter == 6 and resumed.epoch == 2
    # only the 2 remaining batches of 2 images were loaded: no replay
    assert CountLoads.count == 2 * 2
    log = run_log(tmp_path / 'killed')
    assert 'Advance dataloader' not in log
    assert 'Resuming data at epoch 1, sample 2 (batch 1)' in log
    assert_same_state(expected, snapshot(resumed), 'epoch loop')
    model = resumed.model
    assert int(model.teacher.steps) == 7  # the copy before training + 6 EMA steps
    assert int(model.swav_head.iteration) == 6
    assert int(model.swav_head.queue_count) > 0


@pytest.mark.slow
def test_iteration_loop_resume_is_bit_identical(pretrain_root, tmp_path):
    straight = train(scale_cfg(tmp_path / 'straight', pretrain_root,
                               iters=4))
    expected = snapshot(straight)
    cfg = scale_cfg(tmp_path / 'killed', pretrain_root, iters=4)
    cfg.custom_hooks.append(dict(type='KillAtIterHook', at=3))
    train(cfg)
    CountLoads.count = 0
    cfg = scale_cfg(tmp_path / 'killed', pretrain_root, iters=4)
    cfg.resume = True
    resumed = train(cfg)
    assert resumed.iter == 4 and CountLoads.count == 2 * 2
    assert 'no batch is loaded or replayed' in run_log(tmp_path / 'killed')
    assert_same_state(expected, snapshot(resumed), 'iteration loop')


@pytest.mark.slow
def test_validation_on_a_checkpoint_iteration_keeps_resume_bit_identical(
        pretrain_root, tmp_path):
    """``IterIntervalValHook`` every 2 iterations, checkpoints every 2: the
    validation after iteration 4 runs after its checkpoint was written (and
    creating its dataloader iterator draws from torch's generator); the run
    resumed from iteration 4 does not validate there again and must still
    equal the uninterrupted run. Also a plain mmengine ``ValLoop``."""
    from tests.helpers.eval_helpers import _shrink_eval_settings

    def cfg_with_val(work_dir, loop):
        cfg = scale_cfg(work_dir, pretrain_root, epochs=2)
        # stochastic depth draws from torch's generator in every step, as in
        # the shipped configs (drop_path_rate=0.1)
        cfg.model.backbone.drop_path_rate = 0.1
        _shrink_eval_settings(cfg, pretrain_root, batch_size=2)
        cfg.val_cfg = dict(type=loop) if loop == 'ValLoop' else dict(
            type=loop, subset_size=2, full_at_end=True)
        cfg.custom_hooks.append(dict(type='IterIntervalValHook', interval=2))
        return cfg

    for loop in ('MultiLabelValLoop', 'ValLoop'):
        straight = train(cfg_with_val(tmp_path / loop / 'straight', loop))
        assert straight.iter == 6
        assert 'Epoch(val)' in run_log(tmp_path / loop / 'straight') or \
            'Iter(val)' in run_log(tmp_path / loop / 'straight')
        cfg = cfg_with_val(tmp_path / loop / 'killed', loop)
        cfg.custom_hooks.append(dict(type='KillAtIterHook', at=5))
        train(cfg)
        cfg = cfg_with_val(tmp_path / loop / 'killed', loop)
        cfg.resume = True
        resumed = train(cfg)
        assert resumed.iter == 6
        assert_same_state(snapshot(straight), snapshot(resumed), loop)
