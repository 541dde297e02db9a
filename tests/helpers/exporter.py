"""The backbone exporter (``tools/model_converters/hvp_to_backbone.py``) driven from a test,
in process or as a command line, and a load in an interpreter that never imports the plugin."""
import contextlib
import importlib.util
import io
import pathlib
import subprocess
import sys

import torch

__all__ = ['ROOT', 'EXPORTER', 'load_exporter', 'run_exporter', 'export_in_process',
           'load_plain', 'TOL', 'images']

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXPORTER = ROOT / 'tools' / 'model_converters' / 'hvp_to_backbone.py'
#: the largest difference allowed between our backbone and its timm export
TOL = 1e-5


def images(size, batch=2, seed=1):
    """Seeded random images ``[batch, 3, size, size]``."""
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def load_exporter():
    """The exporter script as a module."""
    spec = importlib.util.spec_from_file_location('hvp_to_backbone', EXPORTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_exporter(*args):
    """The exporter as a command line, in a subprocess."""
    return subprocess.run([sys.executable, str(EXPORTER), *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def export_in_process(*args):
    """``main(args)`` of the exporter; returns (exit message or None, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            load_exporter().main(list(map(str, args)))
        except SystemExit as exc:
            return str(exc.code), out.getvalue()
    return None, out.getvalue()


def load_plain(path):
    """Load in a fresh interpreter that never imports hvp_mtl (no allow-list)."""
    code = ('import sys, torch; ck = torch.load(sys.argv[1], weights_only=True); '
            'assert "hvp_mtl" not in sys.modules; '
            'print(len(ck["state_dict"]), sorted(ck))')
    return subprocess.run([sys.executable, '-c', code, str(path)],
                          capture_output=True, text=True, timeout=120)
