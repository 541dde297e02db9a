"""Atomic checkpoints: a truncated or corrupt latest checkpoint is reported and
the previous one resumed; a write that dies half-way leaves ``last_checkpoint``
on the previous, complete file (and the previous file in place)."""
import os
import shutil

import pytest
import torch

from hvp_mtl.engine.hooks.atomic_checkpoint_hook import is_intact_checkpoint  # noqa: E402
from tests.helpers.resume_runs import run_log, scale_cfg, train


def test_intact_checkpoint_detection(tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': {'w': torch.arange(4096.)}, 'meta': {}}, path)
    assert is_intact_checkpoint(str(path))
    data = path.read_bytes()
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(data[:len(data) // 2])
    assert not is_intact_checkpoint(str(truncated))
    flipped = bytearray(data)
    start = data.find(b'data/0') + 200  # inside the tensor record
    flipped[start:start + 8] = bytes(8)
    corrupt = tmp_path / 'corrupt.pth'
    corrupt.write_bytes(bytes(flipped))
    assert not is_intact_checkpoint(str(corrupt))
    assert not is_intact_checkpoint(str(tmp_path / 'missing.pth'))


@pytest.fixture(scope='module')
def trained_4(demo_world, tmp_path_factory):
    """A 4-iteration run with checkpoints at iterations 2 and 4."""
    work = tmp_path_factory.mktemp('atomic') / 'work'
    runner = train(scale_cfg(work, demo_world / 'pretrain', iters=4))
    assert runner.iter == 4
    return work


def _copy(work, tmp_path):
    dst = tmp_path / 'work'
    shutil.copytree(work, dst)
    # the copy must point at its own files
    (dst / 'last_checkpoint').write_text(str(dst / 'iter_4.pth'))
    return dst


@pytest.mark.slow
def test_truncated_latest_checkpoint_falls_back(demo_world, trained_4,
                                                tmp_path):
    work = _copy(trained_4, tmp_path)
    latest = work / 'iter_4.pth'
    size = latest.stat().st_size
    with open(latest, 'r+b') as f:
        f.truncate(size // 3)
    cfg = scale_cfg(work, demo_world / 'pretrain', iters=5)
    cfg.resume = True
    runner = train(cfg)
    log = run_log(work)
    assert f'The latest checkpoint {latest}' in log
    assert 'is truncated or corrupt; resuming from the previous intact ' \
        f'checkpoint {work / "iter_2.pth"}' in log
    assert 'resumed epoch: 0, iter: 2' in log
    assert runner.iter == 5
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_5.pth')
    assert is_intact_checkpoint(str(work / 'iter_5.pth'))
    assert not list(work.glob('*.tmp'))


@pytest.mark.slow
def test_fallback_takes_only_files_the_checkpoint_hook_wrote(
        demo_world, trained_4, tmp_path):
    """``last_checkpoint`` names a corrupt ``iter_4.pth``; the newest file in
    the work dir is an exported ``backbone.pth`` (intact, as the fine-tune
    configs once placed it) and another stray ``*.pth``: the resume falls
    back to ``iter_2.pth``, the newest file named like ``iter_{}.pth``."""
    from hvp_mtl.engine.hooks.atomic_checkpoint_hook import find_intact_checkpoint
    work = _copy(trained_4, tmp_path)
    latest = work / 'iter_4.pth'
    latest.write_bytes(latest.read_bytes()[:1000])
    weights = torch.load(work / 'iter_2.pth', map_location='cpu',
                         weights_only=True)['state_dict']
    torch.save({'state_dict': {k[len('backbone.'):]: v for k, v in
                               weights.items()
                               if k.startswith('backbone.')}},
               work / 'backbone.pth')
    torch.save({'state_dict': weights}, work / 'iter_2_copy.pth')
    assert find_intact_checkpoint(str(work)) == str(work / 'iter_2.pth')
    cfg = scale_cfg(work, demo_world / 'pretrain', iters=5)
    cfg.resume = True
    runner = train(cfg)
    log = run_log(work)
    assert 'resuming from the previous intact checkpoint ' \
        f'{work / "iter_2.pth"}' in log
    assert 'resumed epoch: 0, iter: 2' in log and runner.iter == 5
    # nothing the hook wrote is intact: an error, never the exported weights
    for path in work.glob('iter_*.pth'):
        if path.name != 'iter_2_copy.pth':
            path.write_bytes(b'broken')
    (work / 'last_checkpoint').write_text(str(work / 'iter_5.pth'))
    with pytest.raises(RuntimeError, match=r'no intact checkpoint named like '
                       r'iter_\{\}.pth or epoch_\{\}.pth'):
        find_intact_checkpoint(str(work))


@pytest.mark.slow
def test_write_dying_midway_keeps_previous_checkpoint(demo_world, trained_4,
                                                      tmp_path):
    """The temporary file of iteration 6 cannot be written (a directory is in
    its way): the run fails at that save, and neither ``last_checkpoint`` nor
    the kept checkpoints are touched -- even with ``max_keep_ckpts=1``."""
    work = _copy(trained_4, tmp_path)
    (work / 'iter_6.pth.tmp').mkdir()
    cfg = scale_cfg(work, demo_world / 'pretrain', iters=6, max_keep_ckpts=1)
    cfg.resume = True
    with pytest.raises(IsADirectoryError):
        train(cfg)
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_4.pth')
    assert is_intact_checkpoint(str(work / 'iter_4.pth'))
    assert not (work / 'iter_6.pth').exists()
    os.rmdir(work / 'iter_6.pth.tmp')
    # and the run resumes from iteration 4 and finishes
    runner = train(cfg)
    assert runner.iter == 6
    assert 'resumed epoch: 0, iter: 4' in run_log(work)
    # max_keep_ckpts=1: older files are pruned only after a complete write
    assert sorted(p.name for p in work.glob('*.pth')) == ['iter_6.pth']
