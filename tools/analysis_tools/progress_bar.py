"""Run a training/testing command and show its mmengine log as a one-line progress bar.

mmengine logs ``Iter(train) [ 20/300]  ... loss: 3.69  loss_mim: 0.74 ...`` (or ``Epoch(train)
[3][ 5/9]``, ``Epoch(test) [4/12]``) but draws no bar. :func:`run_with_progress` runs the command,
writes its whole output to a log file, and redraws one terminal line per logged step with the
progress, the total loss and every per-task ``loss_*``. Without a terminal (CI, pipes) it prints
one short line per logged step instead.
"""
import os
import re
import shutil
import subprocess
import sys
import time

ITER = re.compile(r'Iter\((train|val|test)\)\s*\[\s*(\d+)/(\d+)\]')
EPOCH = re.compile(r'Epoch\((train|val|test)\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\]')
EPOCH_EVAL = re.compile(r'Epoch\((val|test)\)\s*\[\s*(\d+)/(\d+)\]')
SCALAR = re.compile(r'(?<![\w.])((?:\w+\.)*loss(?:_\w+)?|lr|eta):\s*(\S+)')


def parse_progress(line, max_epochs=None):
    """Progress of one mmengine log line.

    Args:
        line (str): A line of the log.
        max_epochs (int, optional): Epochs of an epoch-based run (the log only says the current).

    Returns:
        dict | None: ``mode``, ``done``/``total`` (steps, over all epochs when ``max_epochs`` is
        given) and ``scalars`` (``loss``, ``[head.]loss_*``, ``lr``, ``eta`` as text); ``None``
        for other lines.
    """
    scalars = dict(SCALAR.findall(line))
    match = ITER.search(line)
    if match:
        return dict(mode=match[1], done=int(match[2]), total=int(match[3]), scalars=scalars)
    match = EPOCH.search(line)
    if match:
        epoch, step, per_epoch = int(match[2]), int(match[3]), int(match[4])
        if max_epochs:
            return dict(mode=match[1],
                        done=(epoch - 1) * per_epoch + step,
                        total=max_epochs * per_epoch,
                        scalars=scalars)
        return dict(mode=match[1], done=step, total=per_epoch, scalars=scalars)
    match = EPOCH_EVAL.search(line)
    if match:
        return dict(mode=match[1], done=int(match[2]), total=int(match[3]), scalars=scalars)
    return None


def render(stage, progress, width=24):
    """``'pretrain   [#####-----]  20/300  loss 3.69 | mim 0.74 swav 0.08 | eta 0:04:16'``."""
    frac = min(1.0, progress['done'] / max(1, progress['total']))
    bar = '#' * round(frac * width) + '-' * (width - round(frac * width))
    text = f'{stage:<14} [{bar}] {progress["done"]:>4}/{progress["total"]:<4} {progress["mode"]}'
    scalars = progress['scalars']
    if 'loss' in scalars:
        text += f'  loss {scalars["loss"]}'
    tasks = [f'{k.replace("loss_", "")} {v}' for k, v in scalars.items() if 'loss_' in k]
    if tasks:
        text += ' | ' + ' '.join(tasks)
    if 'eta' in scalars:
        text += f' | eta {scalars["eta"]}'
    return text


def run_with_progress(cmd, stage, log_file, cwd=None, env=None, max_epochs=None, stream=None):
    """Run ``cmd``; its output goes to ``log_file`` and, condensed, to ``stream``.

    Args:
        cmd (list[str]): The command.
        stage (str): Name shown in front of the bar.
        log_file (str): Receives the complete stdout and stderr.
        cwd (str, optional): Working directory.
        env (dict, optional): Environment.
        max_epochs (int, optional): For epoch-based runs, to show the overall progress.
        stream (file, optional): Where the bar goes. Defaults to ``sys.stdout``.

    Returns:
        tuple[int, float]: The return code and the wall time in seconds.
    """
    stream = stream or sys.stdout
    tty = hasattr(stream, 'isatty') and stream.isatty()
    os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
    start = time.perf_counter()
    last = ''
    with open(log_file, 'w', encoding='utf-8') as log:
        log.write('+ ' + ' '.join(cmd) + '\n')
        log.flush()
        env = dict(os.environ if env is None else env, PYTHONUNBUFFERED='1')
        proc = subprocess.Popen(cmd,
                                cwd=cwd,
                                env=env,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT,
                                text=True,
                                bufsize=1)
        try:
            for line in proc.stdout:
                log.write(line)
                log.flush()  # the log file is how a user follows a stage in detail
                progress = parse_progress(line, max_epochs if 'train' in line else None)
                if progress is None:
                    continue
                last = render(stage, progress)
                if tty:
                    columns = shutil.get_terminal_size().columns
                    stream.write('\r' + last[:max(40, columns - 1)] + '\x1b[K')
                else:
                    stream.write(last + '\n')
                stream.flush()
        except BaseException:  # interrupted: do not leave the run (or its data workers) behind
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        returncode = proc.wait()
    elapsed = time.perf_counter() - start
    status = 'done' if returncode == 0 else f'FAILED (exit {returncode}, log: {log_file})'
    if tty and last:
        stream.write('\r\x1b[K')
    stream.write(f'{stage:<14} {status} in {elapsed:.0f} s\n')
    stream.flush()
    return returncode, elapsed
