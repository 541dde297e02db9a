#!/usr/bin/env bash
# One command for a machine with one NVIDIA GPU and no network (docs/PERFORMANCE.md, "GPU suite"):
#
#   bash tools/benchmark/gpu_suite.sh [--device cpu] [--results DIR] [--no-compile] ...
#
# If PYTHON (default python3) cannot import mmpretrain, a venv with --system-site-packages (torch,
# numpy, timm... of the machine) is created next to the repository and the wheels of
# prepare_gpu_wheels.sh (WHEELS, default ../hvp_mtl_wheels) are installed into it offline.
# Results: DIR/gpu_suite.json (default gpu_suite_results) and `SUITE key=value` lines.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-"$ROOT/../hvp_mtl_wheels"}
VENV=${VENV:-"$ROOT/../hvp_mtl_suite_venv"}
if ! "$PYTHON" -c 'import mmpretrain, mmengine' 2>/dev/null; then
    if [ ! -x "$VENV/bin/python" ]; then
        [ -d "$WHEELS" ] || { echo "no mmpretrain and no wheel folder $WHEELS" >&2; exit 2; }
        "$PYTHON" -m venv --system-site-packages "$VENV"
        "$VENV/bin/python" -m pip install --no-index --find-links "$WHEELS" --no-deps \
            "$WHEELS"/*.whl
    fi
    PYTHON="$VENV/bin/python"
fi
# mmpretrain.models imports its multimodal (BLIP...) code only when both transformers and
# pycocotools are installed; check the import path this machine takes before timing anything
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -c 'import mmpretrain.models, hvp_mtl, mmcv; print("imports ok: mmcv", mmcv.__version__)'
exec "$PYTHON" tools/benchmark/gpu_suite.py "$@"
