"""Launching ``tools/dist_train.sh`` from a test: a free port, a clean environment, a tiny
config written to disk (with the run helpers' hooks importable), the newest log."""
import os
import pathlib
import socket
import sys

from tests.helpers.resume_runs import scale_cfg

__all__ = ['ROOT', 'DIST_TRAIN', 'free_port', 'launch_env', 'write_cfg', 'newest_log']

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIST_TRAIN = ROOT / 'tools' / 'dist_train.sh'


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch_env(**extra) -> dict:
    """This process's environment without a launch layout, CPU only, plus ``extra``."""
    env = dict(os.environ)
    for key in ('NNODES', 'NODE_RANK', 'GPUS_PER_NODE', 'MASTER_ADDR',
                'PORT'):
        env.pop(key, None)
    env.update(PYTHON=sys.executable, CUDA_VISIBLE_DEVICES='',
               PYTHONPATH=str(ROOT))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def write_cfg(tmp_path, data_root, iters, custom_hooks=()):
    """A :func:`scale_cfg` run dumped to ``tmp_path``, checkpointing every iteration."""
    cfg = scale_cfg(tmp_path / 'work', data_root, iters=iters,
                    ckpt_interval=1, num_images=8)
    # the test hooks live in tests/helpers/resume_runs.py
    cfg.custom_imports = dict(imports=['hvp_mtl', 'tests.helpers.resume_runs'],
                              allow_failed_imports=False)
    cfg.custom_hooks.extend(custom_hooks)
    path = tmp_path / 'tiny_hvp_mtl.py'
    cfg.dump(str(path))
    return path


def newest_log(work_dir) -> str:
    """Text of the newest mmengine log below ``work_dir``."""
    logs = sorted(work_dir.glob('*/*.log'))
    return logs[-1].read_text()
