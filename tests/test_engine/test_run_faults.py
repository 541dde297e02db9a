"""Faults at the edges of a run, each reached for real: a second job on one work dir, a killed
launcher, a checkpoint write that fails (a file-size limit: EFBIG, the same path as ENOSPC)."""
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from hvp_mtl.engine.runner.work_dir_lock import LOCK_NAME, WorkDirLocked, acquire_work_dir_lock
from tests.helpers.dist_launch import DIST_TRAIN, ROOT
from tests.helpers.dist_launch import free_port as _free_port
from tests.helpers.dist_launch import launch_env as _env
from tests.helpers.dist_launch import write_cfg as _write_cfg

TRAIN = ROOT / 'tools' / 'train.py'
pytestmark = pytest.mark.slow


def _hold_lock(work_dir):
    """Another process that holds the lock until killed."""
    code = textwrap.dedent(f'''
        import sys, time
        from hvp_mtl.engine.runner.work_dir_lock import acquire_work_dir_lock
        acquire_work_dir_lock({str(work_dir)!r}); print('held', flush=True); time.sleep(600)''')
    proc = subprocess.Popen([sys.executable, '-c', code], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, env=_env())
    assert proc.stdout.readline().strip() == 'held'
    return proc


def test_a_second_job_on_one_work_dir_stops_at_once_naming_the_holder(demo_world, tmp_path):
    cfg = _write_cfg(tmp_path, demo_world / 'pretrain', iters=2)
    work = tmp_path / 'work'
    holder = _hold_lock(work)
    try:
        start = time.monotonic()
        proc = subprocess.run([sys.executable, str(TRAIN), str(cfg), '--work-dir', str(work)],
                              cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1 and time.monotonic() - start < 60
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(f'error: work dir {work} is in use by host ')
        assert f'pid {holder.pid}, started ' in lines[0] and 'another --work-dir' in lines[0]
        assert not list(work.glob('2*'))  # the refused job wrote nothing
        with pytest.raises(WorkDirLocked):
            acquire_work_dir_lock(str(work))
    finally:
        holder.kill()
        holder.wait()
    # the kernel dropped the dead holder's lock: no stale lock, the next job runs
    proc = subprocess.run([sys.executable, str(TRAIN), str(cfg), '--work-dir', str(work)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / 'iter_2.pth').is_file() and (work / LOCK_NAME).is_file()


@pytest.mark.dist
def test_workers_end_with_their_killed_launcher(demo_world, tmp_path):
    cfg = _write_cfg(tmp_path, demo_world / 'pretrain', iters=100000)
    launcher = subprocess.Popen(['bash', str(DIST_TRAIN), str(cfg), '2'], cwd=ROOT,
                                env=_env(PORT=_free_port()), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (tmp_path / 'work' / 'iter_2.pth').exists():
            time.sleep(1)
        assert (tmp_path / 'work' / 'iter_2.pth').exists(), 'the 2-process run did not train'
        # dist_train.sh execs torchrun: the launcher is this process, the workers its children
        workers = [p for p in psutil.Process(launcher.pid).children(recursive=True)
                   if 'tools/train.py' in ' '.join(p.cmdline())]
        assert len(workers) == 2, workers
        os.kill(launcher.pid, signal.SIGKILL)  # kill -9 the launcher only
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f'workers outlived their launcher by 10 s: {alive}'
    finally:
        launcher.kill()
        launcher.wait()
        for proc in psutil.process_iter():
            try:
                if str(tmp_path) in ' '.join(proc.cmdline()):
                    proc.kill()
            except psutil.Error:
                pass


def _limit_file_size(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_failed_checkpoint_write_stops_in_one_line_and_keeps_the_last_one(demo_world,
                                                                            tmp_path):
    cfg = _write_cfg(tmp_path, demo_world / 'pretrain', iters=2)
    work = tmp_path / 'work'
    first = subprocess.run([sys.executable, str(TRAIN), str(cfg), '--work-dir', str(work),
                            '--cfg-options', 'train_cfg.max_iters=1'],
                           cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    kept = (work / 'iter_1.pth').read_bytes()
    last = (work / 'last_checkpoint').read_text()
    limit = len(kept) // 2  # the next checkpoint (the same size) cannot be written
    proc = subprocess.run([sys.executable, str(TRAIN), str(cfg), '--work-dir', str(work),
                           '--resume'], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=600, preexec_fn=_limit_file_size(limit))
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert line.startswith(f'error: checkpoint {work}/iter_2.pth could not be written: '
                           '[Errno 27 EFBIG] File too large'), line
    assert f'the previous checkpoint {work}/iter_1.pth is intact' in line
    assert f'resume with: python tools/train.py {cfg} --work-dir {work} --resume' in line
    assert ' GiB free in ' in line and 'needed' in line
    assert not list(work.glob('*.tmp')) and not list(work.glob('.*.tmp'))
    assert (work / 'iter_1.pth').read_bytes() == kept
    assert (work / 'last_checkpoint').read_text() == last


def test_a_disk_too_small_for_the_kept_checkpoints_is_announced(demo_world, tmp_path):
    from mmengine.runner import Runner

    from hvp_mtl.engine.hooks.checkpoint_space import (
        estimate_checkpoint_bytes,
        warn_if_disk_too_small,
    )
    from tests.helpers.resume_runs import scale_cfg
    runner = Runner.from_cfg(scale_cfg(tmp_path / 'w', demo_world / 'pretrain', iters=1))
    runner.train()
    size = estimate_checkpoint_bytes(runner)
    actual = (tmp_path / 'w' / 'iter_1.pth').stat().st_size
    assert 0.8 * actual < size < 1.2 * actual  # the estimate is the file's bulk
    free, needed = warn_if_disk_too_small(runner, str(tmp_path), 10**9)
    assert needed > free  # a billion kept checkpoints never fit: the warning path
    log = open(runner.logger.log_file, encoding='utf-8').read()
    assert 'the run will stop when a save fails' in log
