"""tools/dist_train.sh: GPUS is the total over all nodes.

Real multi-process runs on the CPU (gloo): 2 processes on one node, and two
one-process "nodes" on 127.0.0.1 that form a single job; the 64-GPU plan on
8-GPU nodes; layout errors.
"""
import os
import subprocess

import pytest
import torch

from tests.helpers.dist_launch import DIST_TRAIN, ROOT
from tests.helpers.dist_launch import free_port as _free_port
from tests.helpers.dist_launch import launch_env as _env
from tests.helpers.dist_launch import newest_log as _log
from tests.helpers.dist_launch import write_cfg as _write_cfg


@pytest.mark.slow
@pytest.mark.dist
def test_two_cpu_processes_run_to_completion(demo_world, tmp_path):
    """2 gloo processes; a NaN on rank 1 only is skipped by both ranks."""
    cfg = _write_cfg(tmp_path, demo_world / 'pretrain', iters=3,
                     custom_hooks=[dict(type='InjectNonFiniteHook', iters=[1],
                                        ranks=[1])])
    proc = subprocess.run(
        ['bash', str(DIST_TRAIN), str(cfg), '2'],
        cwd=ROOT, env=_env(PORT=_free_port()), capture_output=True,
        text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'no GPU visible; starting 2 CPU process(es) (gloo backend)' \
        in proc.stderr
    work = tmp_path / 'work'
    log = _log(work)
    assert 'Distributed launcher: pytorch' in log
    assert 'Effective batch size: 2 per GPU x 2 process(es) = 4' in log
    assert 'Skipped the optimizer step of iter 2' in log
    assert 'Iter(train) [3/3]' in log
    first, second = (torch.load(work / f'iter_{i}.pth', map_location='cpu')
                     for i in (1, 2))
    for key, value in first['state_dict'].items():
        assert torch.equal(value, second['state_dict'][key]), key
    assert first['resume_state']['world_size'] == 2
    assert len(first['resume_state']['rng']) == 2


@pytest.mark.slow
@pytest.mark.dist
def test_two_single_gpu_nodes_form_one_job(demo_world, tmp_path):
    cfg = _write_cfg(tmp_path, demo_world / 'pretrain', iters=2)
    port = _free_port()
    nodes = [
        subprocess.Popen(
            ['bash', str(DIST_TRAIN), str(cfg), '2'], cwd=ROOT,
            env=_env(NNODES=2, NODE_RANK=rank, GPUS_PER_NODE=1,
                     MASTER_ADDR='127.0.0.1', PORT=port),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (out, err) in zip(nodes, outputs):
        assert node.returncode == 0, out[-3000:] + err[-3000:]
    assert 'node 0/2, 1 process(es) on this node, world size 2' \
        in outputs[0][1]
    assert 'node 1/2, 1 process(es) on this node, world size 2' \
        in outputs[1][1]
    log = _log(tmp_path / 'work')
    assert 'Effective batch size: 2 per GPU x 2 process(es) = 4' in log
    assert 'Iter(train) [2/2]' in log


def test_64_gpus_on_8_gpu_nodes_prints_the_plan(tmp_path):
    proc = subprocess.run(
        ['bash', str(DIST_TRAIN), 'configs/pretrain/hvp_swin-b.py', '64',
         '--amp'],
        cwd=ROOT, env=_env(GPUS_PER_NODE=8), capture_output=True, text=True,
        timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert 'This is a 8-node job: 64 GPUs = 8 nodes x 8 GPUs.' in lines
    plan = [line for line in lines if line.lstrip().startswith('node ')]
    assert len(plan) == 8
    for rank, line in enumerate(plan):
        assert line.strip() == (
            f'node {rank}: GPUS_PER_NODE=8 NNODES=8 NODE_RANK={rank} '
            'MASTER_ADDR=<address-of-node-0> PORT=29500 '
            'tools/dist_train.sh configs/pretrain/hvp_swin-b.py 64 --amp')


def test_layout_errors_are_explained():
    not_divisible = subprocess.run(
        ['bash', str(DIST_TRAIN), 'cfg.py', '12'], cwd=ROOT,
        env=_env(GPUS_PER_NODE=8), capture_output=True, text=True)
    assert not_divisible.returncode == 1
    assert 'GPUS=12 is not a multiple of GPUS_PER_NODE=8' \
        in not_divisible.stderr
    wrong_nnodes = subprocess.run(
        ['bash', str(DIST_TRAIN), 'cfg.py', '16'], cwd=ROOT,
        env=_env(GPUS_PER_NODE=8, NNODES=4), capture_output=True, text=True)
    assert wrong_nnodes.returncode == 1
    assert 'NNODES=4 disagrees with GPUS/GPUS_PER_NODE = 16/8 = 2' \
        in wrong_nnodes.stderr
    no_master = subprocess.run(
        ['bash', str(DIST_TRAIN), 'cfg.py', '16'], cwd=ROOT,
        env=_env(GPUS_PER_NODE=8, NODE_RANK=1), capture_output=True,
        text=True)
    assert no_master.returncode == 1
    assert 'MASTER_ADDR (the address of node 0) must be set' \
        in no_master.stderr


def test_slurm_cpus_per_task_follow_the_configs_loader_workers(tmp_path):
    """tools/slurm_train.sh reserves num_workers + 1 CPUs per task (read from
    the config and its --cfg-options) and refuses fewer. ``srun`` is a stub
    on PATH that records its arguments (no Slurm on CI)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "srun_args"}\n')
    srun.chmod(0o755)
    slurm = ROOT / 'tools' / 'slurm_train.sh'
    cfg = 'configs/pretrain/hvp_swin-b.py'  # num_workers=8

    def submit(*args, **env):
        return subprocess.run(
            ['bash', str(slurm), 'gpu', 'job', cfg, 'work', *args], cwd=ROOT,
            env=_env(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
                     GPUS=16, **env),
            capture_output=True, text=True, timeout=120)

    derived = submit('--amp')
    assert derived.returncode == 0, derived.stderr
    srun_args = (tmp_path / 'srun_args').read_text().split()
    assert '--cpus-per-task=9' in srun_args and '--ntasks=16' in srun_args
    assert srun_args[-1] == '--amp'
    too_few = submit(CPUS_PER_TASK=5)
    assert too_few.returncode == 1
    assert ('CPUS_PER_TASK=5 but configs/pretrain/hvp_swin-b.py starts 8 '
            'loader workers') in too_few.stderr
    fewer_workers = submit('--cfg-options', 'train_dataloader.num_workers=4',
                           CPUS_PER_TASK=5)
    assert fewer_workers.returncode == 0, fewer_workers.stderr
    assert '--cpus-per-task=5' in (tmp_path / 'srun_args').read_text()
    forced = submit(CPUS_PER_TASK=5, ALLOW_FEWER_CPUS=1)
    assert forced.returncode == 0, forced.stderr
