"""Running the project's scripts from a test and reading what they write: a script's stdout,
the rows of a markdown table, the digests of every file of a folder."""
import hashlib
import os
import os.path as osp
import subprocess
import sys
from pathlib import Path

__all__ = ['ROOT', 'run_script', 'table_rows', 'file_digests']

ROOT = Path(__file__).resolve().parents[2]


def run_script(*args):
    """stdout of ``python *args`` run from the repository root (which must succeed)."""
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def table_rows(text):
    """``{first cell: [other cells]}`` of the markdown table rows in text."""
    rows = {}
    for line in text.splitlines():
        if line.startswith('| ') and not line.startswith('|---'):
            cells = [c.strip() for c in line.strip('|').split('|')]
            rows[cells[0]] = cells[1:]
    return rows


def file_digests(root):
    """``{relative path: sha256}`` of every file below ``root``."""
    digests = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = osp.join(folder, name)
            with open(path, 'rb') as f:
                digests[osp.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return digests
