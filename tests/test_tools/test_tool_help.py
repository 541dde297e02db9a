"""Every script under tools/ is a command line: ``--help`` exits 0 and prints its usage.

Each runs in a fresh interpreter from the repository root, so a script that reaches the package
through anything but a normal ``import hvp_mtl...`` (or that is not a command line at all) fails
here.
"""
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOOLS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / 'tools').rglob('*.py'))


def test_tools_are_found():
    assert 'tools/train.py' in TOOLS and 'tools/perf/step.py' in TOOLS


@pytest.mark.parametrize('tool', TOOLS)
def test_help_prints_usage(tool):
    proc = subprocess.run([sys.executable, tool, '--help'], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(f'usage: {pathlib.PurePath(tool).name}'), proc.stdout[:500]
