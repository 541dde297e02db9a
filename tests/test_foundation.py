"""Foundation: a real run through tools/train.py, a resume with weights_only loading on,
and refusal of a checkpoint that holds a class outside the allow-list."""
import os
import pickle
import subprocess
import sys
import pathlib

import pytest
import torch

import hvp_mtl  # noqa: F401  (the weights_only allow-list for mmengine checkpoints)

ROOT = pathlib.Path(__file__).resolve().parents[1]
CFG = ROOT / 'configs' / 'pretrain' / 'baselines' / 'simmim_swin-tiny_demo.py'
sys.path.insert(0, str(ROOT / 'tools'))


def _train(work_dir, data_root, max_iters, *extra):
    env = {k: v for k, v in os.environ.items() if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}
    cmd = [sys.executable, str(ROOT / 'tools' / 'train.py'), str(CFG), '--work-dir', str(work_dir),
           *extra, '--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
           f'train_cfg.max_iters={max_iters}', 'default_hooks.checkpoint.interval=2']
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    from hvp_mtl.datasets.demo_world.writers import write_images
    tmp = tmp_path_factory.mktemp('foundation')
    write_images(tmp / 'images', 8, size=72)
    log = _train(tmp / 'work', tmp / 'images', 2)
    return tmp, log


def test_two_iterations_write_a_checkpoint(trained):
    tmp, log = trained
    assert (tmp / 'work' / 'iter_2.pth').is_file()
    assert (tmp / 'work' / 'last_checkpoint').read_text().strip().endswith('iter_2.pth')
    assert 'Iter(train) [2/2]' in log


def test_resume_continues_with_weights_only_loading(trained):
    tmp, _ = trained
    # The checkpoint really holds the objects that torch>=2.6 refuses by default ...
    ckpt = tmp / 'work' / 'iter_2.pth'
    probe = subprocess.run(
        [sys.executable, '-c', f'import torch; torch.load({str(ckpt)!r})'],
        capture_output=True, text=True)
    assert probe.returncode != 0 and 'HistoryBuffer' in probe.stderr
    # ... and with the plugin's allow-list the resume goes through, weights_only left on.
    log = _train(tmp / 'work', tmp / 'images', 4, '--resume')
    assert 'resumed' in log.lower() and 'iter_2.pth' in log
    assert 'Iter(train) [3/4]' in log and 'Iter(train) [1/4]' not in log
    assert (tmp / 'work' / 'iter_4.pth').is_file()
    ck = torch.load(tmp / 'work' / 'iter_4.pth', map_location='cpu')
    assert ck['meta']['iter'] == 4


class _Payload:
    """An arbitrary class that would run code when unpickled without weights_only."""

    def __reduce__(self):
        return (os.system, ('echo should-never-run > /dev/null',))


def test_checkpoint_with_unlisted_class_is_refused(tmp_path):
    import hvp_mtl  # noqa: F401  (installs the allow-list)
    from mmengine.runner.checkpoint import _load_checkpoint
    bad = tmp_path / 'bad.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': {'x': _Payload()}}, bad)
    with pytest.raises(pickle.UnpicklingError, match='system|Unsupported global'):
        _load_checkpoint(str(bad), map_location='cpu')
    # a clean checkpoint with mmengine's message hub objects still loads
    from mmengine.logging import HistoryBuffer
    good = tmp_path / 'good.pth'
    hb = HistoryBuffer()
    hb.update(1.5)
    torch.save({'state_dict': {'w': torch.ones(2)}, 'message_hub': {'log_scalars': {'loss': hb}}}, good)
    loaded = _load_checkpoint(str(good), map_location='cpu')
    assert loaded['message_hub']['log_scalars']['loss'].current() == 1.5
