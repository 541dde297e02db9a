"""Run a training command and show its progress as a one-line bar, from mmengine's scalars.

mmengine's ``LocalVisBackend`` writes every logged training step as one JSON object to
``<work_dir>/<timestamp>/vis_data/scalars.json`` (``loss``, ``loss_*``, ``lr``, ``iter``,
``epoch``, ``step``). :func:`run_with_progress` runs the command with its whole output going to
a log file, follows the ``scalars.json`` of the launch the command starts, and redraws one
terminal line per new record with the progress, the total loss and every per-task ``loss_*``.
Without a terminal (CI, pipes) it prints one short line per record instead.
"""
import datetime
import os
import os.path as osp
import shutil
import subprocess
import sys
import time

from hvp_mtl.apis.work_dir_logs import launch_dirs, read_json_lines

__all__ = ['progress_of', 'render', 'run_with_progress']


def progress_of(record, unit, total):
    """``(done, total)`` steps of one training record.

    Args:
        record (dict): A ``scalars.json`` training record.
        unit (str): ``'iter'`` (``total`` iterations) or ``'epoch'`` (``total`` epochs).
        total (int): Planned length in ``unit``.

    Returns:
        tuple[float, int]: Done and planned, in ``unit``; an epoch-based run counts the epoch in
        progress as started (its records carry the epoch, not the position inside it).
    """
    if unit == 'epoch':
        return max(0, int(record.get('epoch', 1)) - 1), total
    return int(record.get('iter', record.get('step', 0))), total


def render(stage, record, done, total, elapsed, unit='iter', width=24):
    """``'pretrain   [#####-----]  20/300 iter  loss 3.69 | mim 0.74 swav 0.08 | eta 0:04:16'``."""
    frac = min(1.0, done / max(1, total))
    bar = '#' * round(frac * width) + '-' * (width - round(frac * width))
    position = f'epoch {int(record.get("epoch", 1))}/{total}' if unit == 'epoch' else \
        f'{done:>4}/{total:<4} iter'
    text = f'{stage:<14} [{bar}] {position}'
    if 'loss' in record:
        text += f'  loss {record["loss"]:.4f}'
    tasks = [f'{k.replace("loss_", "")} {v:.4f}' for k, v in record.items()
             if k.startswith('loss_') and isinstance(v, (int, float))]
    if tasks:
        text += ' | ' + ' '.join(tasks)
    if 0 < frac < 1:
        eta = datetime.timedelta(seconds=round(elapsed * (1 - frac) / frac))
        text += f' | eta {eta}'
    return text


def _new_records(work_dir, known_launches, seen):
    """Training records of the launches started after ``known_launches``, past ``seen`` lines."""
    if not work_dir:
        return []
    launches = [d for d in launch_dirs(work_dir) if osp.basename(d) not in known_launches]
    if not launches:
        return []
    path = osp.join(launches[-1], 'vis_data', 'scalars.json')
    if not osp.isfile(path):
        return []
    records = [r for r in read_json_lines(path) if 'loss' in r]
    new = records[seen[0]:]
    seen[0] = len(records)
    return new


def run_with_progress(cmd, stage, log_file, work_dir=None, length=None, cwd=None, env=None,
                      stream=None, poll_s=1.0):
    """Run ``cmd``; its output goes to ``log_file``, its training progress to ``stream``.

    Args:
        cmd (list[str]): The command.
        stage (str): Name shown in front of the bar.
        log_file (str): Receives the complete stdout and stderr.
        work_dir (str, optional): The run's mmengine work dir, whose new launch's
            ``vis_data/scalars.json`` is followed. Without it only the final line is printed.
        length (tuple[str, int], optional): ``('iter', max_iters)`` or ``('epoch', max_epochs)``.
        cwd (str, optional): Working directory.
        env (dict, optional): Environment.
        stream (file, optional): Where the bar goes. Defaults to ``sys.stdout``.
        poll_s (float): Seconds between reads of the scalars file.

    Returns:
        tuple[int, float]: The return code and the wall time in seconds.
    """
    stream = stream or sys.stdout
    tty = hasattr(stream, 'isatty') and stream.isatty()
    unit, total = length or ('iter', 0)
    os.makedirs(osp.dirname(osp.abspath(log_file)), exist_ok=True)
    known = {osp.basename(d) for d in launch_dirs(work_dir)} if work_dir else set()
    seen, last = [0], ''
    start = time.perf_counter()

    def show():
        nonlocal last
        for record in _new_records(work_dir, known, seen):
            done, planned = progress_of(record, unit, total)
            last = render(stage, record, done, planned, time.perf_counter() - start, unit)
            if tty:
                columns = shutil.get_terminal_size().columns
                stream.write('\r' + last[:max(40, columns - 1)] + '\x1b[K')
            else:
                stream.write(last + '\n')
            stream.flush()

    with open(log_file, 'w', encoding='utf-8') as log:
        log.write('+ ' + ' '.join(cmd) + '\n')
        log.flush()
        env = dict(os.environ if env is None else env, PYTHONUNBUFFERED='1')
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                time.sleep(poll_s)
                show()
            show()
        except BaseException:  # interrupted: do not leave the run (or its data workers) behind
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    elapsed = time.perf_counter() - start
    status = 'done' if proc.returncode == 0 else \
        f'FAILED (exit {proc.returncode}, log: {log_file})'
    if tty and last:
        stream.write('\r\x1b[K')
    stream.write(f'{stage:<14} {status} in {elapsed:.0f} s\n')
    stream.flush()
    return proc.returncode, elapsed
