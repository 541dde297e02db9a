"""The multi-label validation under DDP (2 processes, gloo) gives the same
numbers as one process, on the subset during training and on the full list
at the end (33 images: the sampler pads, the evaluator must drop it)."""
import pytest

from tests.helpers.eval_helpers import (
    build_tiny_pretrain_config,
    demo_world_dir,
    metric_at,
    read_scalars,
    save_initial_checkpoint,
    torchrun,
)

pytestmark = [pytest.mark.dist, pytest.mark.slow]

KEYS = ('multi-label/mAP', 'multi-label/CP', 'multi-label/OF1')


def test_ddp_metrics_equal_single_process(tmp_path_factory):
    from mmengine.runner import Runner
    world = demo_world_dir(tmp_path_factory)
    tmp = tmp_path_factory.mktemp('val_ddp')
    # lr 0: the weights stay those of the checkpoint, so both runs score the
    # same model at iteration 1 (subset of 11) and 2 (all 33 images)
    cfg = build_tiny_pretrain_config(world, tmp / 'single', max_iters=2,
                                     subset_size=11, val_interval=1, lr=0.,
                                     batch_size=4)
    cfg.load_from = str(save_initial_checkpoint(cfg, tmp / 'init.pth'))
    Runner.from_cfg(cfg).train()
    single = read_scalars(tmp / 'single')

    cfg.work_dir = str(tmp / 'ddp')
    cfg.dump(str(tmp / 'ddp_cfg.py'))
    torchrun('tools/train.py', [str(tmp / 'ddp_cfg.py')])
    ddp_log = '\n'.join(p.read_text() for p in (tmp / 'ddp').glob('*/*.log'))
    assert 'Distributed training: True' in ddp_log
    assert 'GPU number: 2' in ddp_log  # mmengine's name for the world size
    ddp = read_scalars(tmp / 'ddp')
    for key in KEYS:
        one, two = metric_at(single, key), metric_at(ddp, key)
        assert sorted(one) == [1, 2], (key, one)
        for step in (1, 2):
            assert two[step] == pytest.approx(one[step], abs=1e-4), \
                (key, step, one, two)
