"""tools/setup_env.sh: the mmcv-ops build decision (``--dry-run``) and the report (``--check``).

The decision is run for real with an ``nvcc`` on PATH that is a small script printing what the
CUDA toolkit's ``nvcc --version`` prints (no GPU, no toolkit), and with the test environment's
own torch for the GPU probe. Nothing is installed.
"""
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'tools' / 'setup_env.sh'


def fake_nvcc(tmp_path, release='12.4'):
    """A directory holding an ``nvcc`` that prints the version banner of CUDA ``release``."""
    bindir = tmp_path / 'bin'
    bindir.mkdir(exist_ok=True)
    nvcc = bindir / 'nvcc'
    nvcc.write_text('#!/bin/sh\necho "nvcc: NVIDIA (R) Cuda compiler driver"\n'
                    f'echo "Cuda compilation tools, release {release}, V{release}.131"\n')
    nvcc.chmod(0o755)
    return bindir


def run(args, tmp_path, path_dirs=(), venv=None, **env):
    """Run the script with a PATH of ``path_dirs`` plus the system's, and ``env`` set."""
    base = {k: v for k, v in os.environ.items()
            if k not in ('FORCE_CUDA', 'TORCH_CUDA_ARCH_LIST', 'HVP_VENV', 'PATH')}
    base.update(env)
    base['PATH'] = os.pathsep.join([*map(str, path_dirs), '/usr/bin', '/bin'])
    base['HVP_VENV'] = str(venv or tmp_path / 'no-venv')
    return subprocess.run(['bash', str(SCRIPT), *args], capture_output=True, text=True,
                          env=base, timeout=120)


def decision(result):
    """``{'OPS': ..., 'FORCE_CUDA': ..., ...}`` from the script's ``decision:`` line."""
    line = next(ln for ln in result.stdout.splitlines() if 'decision:' in ln)
    return dict(re.findall(r'(\w+)=(\S+)', line))


def test_nvcc_without_gpu_builds_cuda_ops_for_an_arch_list_it_names(tmp_path):
    """The login-node case: nvcc loaded, no GPU visible, nothing preset."""
    result = run(['--dry-run'], tmp_path, [fake_nvcc(tmp_path, '12.4')])
    assert result.returncode == 0, result.stderr
    assert decision(result) == dict(OPS='cuda', FORCE_CUDA='1',
                                    TORCH_CUDA_ARCH_LIST='7.0;7.5;8.0;8.6;8.9;9.0+PTX')
    assert 'no GPU needed' in result.stdout
    assert 'nothing installed' in result.stdout
    assert not (tmp_path / 'no-venv').exists()


def test_newer_cuda_adds_blackwell_archs(tmp_path):
    result = run(['--dry-run'], tmp_path, [fake_nvcc(tmp_path, '12.8')])
    assert decision(result)['TORCH_CUDA_ARCH_LIST'].endswith('10.0;12.0+PTX')


def test_preset_force_cuda_and_arch_list_are_honoured(tmp_path):
    bindir = fake_nvcc(tmp_path)
    off = run(['--dry-run'], tmp_path, [bindir], FORCE_CUDA='0')
    assert decision(off) == dict(OPS='cpu', FORCE_CUDA='0')
    assert 'FORCE_CUDA=0 preset: honoured' in off.stdout
    arch = run(['--dry-run'], tmp_path, [bindir], TORCH_CUDA_ARCH_LIST='8.0;9.0')
    assert decision(arch) == dict(OPS='cuda', FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST='8.0;9.0')


def test_without_nvcc_cpu_ops_and_forced_cuda_is_an_error(tmp_path):
    cpu = run(['--dry-run'], tmp_path)
    assert decision(cpu) == dict(OPS='cpu', FORCE_CUDA='0')
    assert 'Mask R-CNN on GPU needs CUDA ops' in cpu.stdout
    forced = run(['--dry-run'], tmp_path, FORCE_CUDA='1')
    assert forced.returncode == 3
    assert 'FORCE_CUDA=1 but no nvcc on PATH' in forced.stderr


def test_gpu_probe_and_cuda_match_use_the_environments_torch(tmp_path):
    """With the real environment (this interpreter's venv) the script imports its torch: an nvcc
    of torch's CUDA major version builds CUDA ops; another major version cannot (torch refuses
    to build the extension), so CPU ops with a warning, or an error when FORCE_CUDA=1 is preset."""
    import torch
    # setup_env.sh (make test's environment, here and in CI) installs torch's CUDA build
    assert torch.version.cuda, 'a CPU-only torch: not the environment setup_env.sh installs'
    major = int(torch.version.cuda.split('.')[0])
    same = run(['--dry-run'], tmp_path, [fake_nvcc(tmp_path, f'{major}.0')], venv=sys.prefix)
    assert same.returncode == 0, same.stderr
    assert decision(same)['OPS'] == 'cuda'
    if torch.cuda.device_count():
        assert 'building for the visible GPU(s)' in same.stdout
    else:
        assert 'no visible GPU' in same.stdout
    other = tmp_path / 'other'
    other.mkdir()
    bindir = fake_nvcc(other, f'{major + 1}.0')
    cpu = run(['--dry-run'], tmp_path, [bindir], venv=sys.prefix)
    assert decision(cpu) == dict(OPS='cpu', FORCE_CUDA='0')
    assert (f'WARNING: nvcc is CUDA {major + 1}.0 but torch was built with CUDA '
            f'{torch.version.cuda}') in cpu.stdout
    forced = run(['--dry-run'], tmp_path, [bindir], venv=sys.prefix, FORCE_CUDA='1')
    assert forced.returncode == 3 and 'FORCE_CUDA=1, but nvcc is CUDA' in forced.stderr


def test_check_reports_the_installed_ops(tmp_path):
    """``--check`` on this interpreter's environment names the kind of ops mmcv has."""
    assert (pathlib.Path(sys.prefix) / '.hvp_mtl_stamp').is_file(), (
        'the suite runs in the environment tools/setup_env.sh makes (make test); this one has '
        'no stamp')
    result = run(['--check'], tmp_path, venv=sys.prefix)
    live = re.search(r'installed ops \(now\): (\w+)', result.stdout)
    assert live, result.stdout + result.stderr
    import torch
    from mmcv.ops import get_compiling_cuda_version
    want = 'cpu' if get_compiling_cuda_version() == 'not available' else 'cuda'
    assert live.group(1) == want
    if want == 'cpu' and torch.cuda.is_available():
        assert result.returncode == 4  # the cluster trap, reported
    else:
        assert result.returncode == 0, result.stderr


def test_check_without_an_environment_and_unknown_flag(tmp_path):
    missing = run(['--check'], tmp_path)
    assert missing.returncode == 1 and 'no stamp' in missing.stderr
    bad = run(['--frobnicate'], tmp_path)
    assert bad.returncode == 2 and 'unknown argument' in bad.stderr
