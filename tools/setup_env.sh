#!/usr/bin/env bash
# Create (or reuse) the project-local virtual environment with the pinned OpenMMLab stack.
#
# Idempotent: a stamp file records the hash of requirements/*.txt and this script; when it
# matches, the script exits in about a second. mmcv 2.1.0 is built from source with its ops
# (CUDA ops when nvcc and a CUDA-enabled torch are present, CPU ops otherwise).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HVP_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
STAMP="$VENV/.hvp_mtl_stamp"

hash_inputs() {
  cat "$ROOT"/requirements/*.txt "$ROOT/tools/setup_env.sh" "$ROOT/setup.py" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1
}
WANT="$(hash_inputs)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi

echo "[setup_env] setting up $VENV (a fresh machine builds mmcv from source: ~15 min on 2 cores)"
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip<25" 
"${PIP[@]}" install -q -r "$ROOT/requirements/torch.txt"
"${PIP[@]}" install -q -r "$ROOT/requirements/build.txt"

if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops" >/dev/null 2>&1; then
  if command -v nvcc >/dev/null 2>&1 && "$VENV/bin/python" -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
    export FORCE_CUDA=1
    echo "[setup_env] building mmcv 2.1.0 with CUDA ops"
  else
    export FORCE_CUDA=0
    echo "[setup_env] building mmcv 2.1.0 with CPU ops"
  fi
  MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" install -q --no-build-isolation -r "$ROOT/requirements/mmcv.txt"
fi

"${PIP[@]}" install -q -r "$ROOT/requirements/runtime.txt"
"${PIP[@]}" install -q -r "$ROOT/requirements/tests.txt"
"${PIP[@]}" install -q --no-build-isolation --no-deps -e "$ROOT"

if "$VENV/bin/python" -c "import transformers" >/dev/null 2>&1; then
  echo "[setup_env] removing transformers (breaks mmpretrain imports with pycocotools present)"
  "${PIP[@]}" uninstall -q -y transformers
fi
"$VENV/bin/python" -c "import torch, mmcv, mmcv.ops, mmengine, mmpretrain, mmdet, mmseg, hvp_mtl; print('[setup_env] ok: torch', torch.__version__, 'mmcv', mmcv.__version__)"
echo "$WANT" > "$STAMP"
