#!/usr/bin/env bash
# One command for a machine with one NVIDIA GPU and no network (docs/PERFORMANCE.md, "GPU suite"):
#
#   bash tools/perf/gpu_suite.sh [--device cpu] [--results DIR] [--no-compile] ...
#
# If PYTHON (default python3) cannot import mmpretrain, a venv with --system-site-packages (torch,
# numpy, timm... of the machine) is created next to the repository and the wheels of
# prepare_gpu_wheels.sh (WHEELS, default ../hvp_mtl_wheels) are installed into it offline
# (without a venv module: into ../hvp_mtl_suite_site, put first on PYTHONPATH).
# Results: DIR/gpu_suite.json (default gpu_suite_results) and `SUITE key=value` lines.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-"$ROOT/../hvp_mtl_wheels"}
VENV=${VENV:-"$ROOT/../hvp_mtl_suite_venv"}
SITE="$ROOT/../hvp_mtl_suite_site"
install() {  # $1: python; $2...: extra pip arguments
    local py=$1; shift
    "$py" -m pip install --no-index --find-links "$WHEELS" --no-deps "$@" "$WHEELS"/*.whl
}
if ! "$PYTHON" -c 'import mmpretrain, mmengine' 2>/dev/null; then
    [ -d "$WHEELS" ] || { echo "no mmpretrain and no wheel folder $WHEELS" >&2; exit 2; }
    if [ -x "$VENV/bin/python" ] || { "$PYTHON" -m venv --system-site-packages "$VENV" \
            && install "$VENV/bin/python"; }; then
        PYTHON="$VENV/bin/python"
    else  # no venv module on this Python: a plain folder ahead on PYTHONPATH
        rm -rf "$VENV"
        [ -d "$SITE" ] || install "$PYTHON" --target "$SITE"
        export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
# mmpretrain.models imports its multimodal (BLIP...) code only when both transformers and
# pycocotools are installed; check the import path this machine takes before timing anything
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -c 'import mmpretrain.models, hvp_mtl, mmcv; print("imports ok: mmcv", mmcv.__version__)'
exec "$PYTHON" tools/perf/gpu_suite.py "$@"
