#!/usr/bin/env bash
# Create (or reuse) the project-local virtual environment with the pinned OpenMMLab stack.
#
#   tools/setup_env.sh            set up .venv (idempotent: a second run takes about a second)
#   tools/setup_env.sh --dry-run  print how mmcv's ops would be built, change nothing
#   tools/setup_env.sh --check    report which mmcv ops the environment has (and had built)
#
# mmcv 2.1.0 is built from source with its ops. CUDA ops are built whenever nvcc is on PATH (no
# GPU is needed: a cluster's login node builds for the GPU nodes) or FORCE_CUDA=1 is preset; a
# preset FORCE_CUDA (1 or 0) and TORCH_CUDA_ARCH_LIST are always honoured. Without a visible GPU
# and without TORCH_CUDA_ARCH_LIST the arch list is chosen from nvcc's CUDA version and printed.
# An nvcc of another CUDA major version than torch's cannot build them (torch refuses): CPU ops
# then, with a warning (an error if FORCE_CUDA=1 was preset).
# The stamp file records the inputs' hash and the ops that were built; a stamp of a CPU-only
# build does not stop a CUDA rebuild. transformers is uninstalled if present (it breaks
# mmpretrain's imports when pycocotools is installed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HVP_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
STAMP="$VENV/.hvp_mtl_stamp"
MODE=install
case "${1:-}" in
  '') ;;
  --dry-run) MODE=dry-run ;;
  --check) MODE=check ;;
  -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "setup_env.sh: unknown argument '$1' (use --dry-run, --check or no argument)" >&2
     exit 2 ;;
esac
say() { echo "[setup_env] $*"; }

hash_inputs() {
  cat "$ROOT"/requirements/*.txt "$ROOT/tools/setup_env.sh" "$ROOT/setup.py" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1
}
stamp_get() { [[ -f "$STAMP" ]] && sed -n "s/^$1=//p" "$STAMP" | head -n1 || true; }
venv_python() { [[ -x "$VENV/bin/python" ]] && echo "$VENV/bin/python" || true; }

# The arch list for a build without a visible GPU, from nvcc's CUDA version (major.minor).
default_arch_list() {
  local major="${1%%.*}" minor="${1#*.}"
  if (( major > 12 || (major == 12 && minor >= 8) )); then echo '7.0;7.5;8.0;8.6;8.9;9.0;10.0;12.0+PTX'
  elif (( major >= 12 || (major == 11 && minor >= 8) )); then echo '7.0;7.5;8.0;8.6;8.9;9.0+PTX'
  elif (( major == 11 )); then echo '7.0;7.5;8.0;8.6+PTX'
  else echo '6.0;6.1;7.0;7.5+PTX'; fi
}

# Decide how mmcv's ops are built: sets OPS (cuda|cpu), FORCE_CUDA and TORCH_CUDA_ARCH_LIST.
decide_ops() {
  local nvcc cuda_version py torch_cuda='' gpus=''
  nvcc="$(command -v nvcc || true)"
  cuda_version=''
  if [[ -n "$nvcc" ]]; then
    cuda_version="$("$nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p' | head -n1)"
  fi
  py="$(venv_python)"
  if [[ -n "$py" ]]; then
    # torch/version.py names the CUDA of the build; read without importing torch (seconds)
    local version_py
    version_py="$(ls "$VENV"/lib/python*/site-packages/torch/version.py 2>/dev/null | head -n1)"
    if [[ -n "$version_py" ]]; then
      torch_cuda="$(sed -n 's/^cuda[^=]*= *//p' "$version_py" | head -n1 | tr -d "'\" ")"
      [[ "$torch_cuda" == None ]] && torch_cuda=none
    fi
  fi
  # torch refuses to build an extension with an nvcc of another CUDA major version
  local mismatch=''
  if [[ -n "$cuda_version" && -n "$torch_cuda" && "$torch_cuda" != none \
        && "${cuda_version%%.*}" != "${torch_cuda%%.*}" ]]; then
    mismatch="nvcc is CUDA $cuda_version but torch was built with CUDA $torch_cuda: mmcv's CUDA"
    mismatch+=" ops cannot be built against this torch (load a CUDA ${torch_cuda%%.*}.x toolkit)"
  fi
  if [[ -n "${FORCE_CUDA:-}" ]]; then
    say "FORCE_CUDA=$FORCE_CUDA preset: honoured"
  elif [[ -n "$nvcc" && -n "$mismatch" ]]; then
    FORCE_CUDA=0
    say "WARNING: $mismatch; building CPU ops only. Mask R-CNN on GPU needs CUDA ops: put a" \
        "matching nvcc first on PATH and rerun (tools/setup_env.sh --check reports the ops)"
  elif [[ -n "$nvcc" ]]; then
    FORCE_CUDA=1
    say "nvcc found ($nvcc, CUDA ${cuda_version:-unknown}): building CUDA ops (no GPU needed)"
  else
    FORCE_CUDA=0
    say "no nvcc on PATH: building CPU ops only (Mask R-CNN on GPU needs CUDA ops:" \
        "load CUDA so that nvcc is on PATH, or preset FORCE_CUDA=1)"
  fi
  export FORCE_CUDA
  if [[ "$FORCE_CUDA" != 1 ]]; then OPS=cpu; say "decision: OPS=cpu FORCE_CUDA=$FORCE_CUDA"; return; fi
  OPS=cuda
  if [[ -z "$nvcc" ]]; then
    echo "setup_env.sh: FORCE_CUDA=1 but no nvcc on PATH: load the CUDA toolkit first" >&2
    exit 3
  fi
  if [[ "$torch_cuda" == none ]]; then
    echo "setup_env.sh: CUDA ops need a CUDA build of torch; $VENV has a CPU-only torch" >&2
    exit 3
  fi
  if [[ -n "$mismatch" ]]; then
    echo "setup_env.sh: FORCE_CUDA=1, but $mismatch" >&2
    exit 3
  fi
  if [[ -z "$torch_cuda" ]]; then
    say "torch not installed yet in $VENV: its CUDA version is compared with nvcc's at install"
  else
    gpus="$("$py" -c 'import torch; print(";".join(sorted({"%d.%d" % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})))' 2>/dev/null || true)"
  fi
  if [[ -n "${TORCH_CUDA_ARCH_LIST:-}" ]]; then
    say "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST preset: honoured"
  elif [[ -n "$gpus" ]]; then
    say "TORCH_CUDA_ARCH_LIST not set: building for the visible GPU(s) ($gpus, torch's default);" \
        "preset it to build for other GPUs too"
  else
    TORCH_CUDA_ARCH_LIST="$(default_arch_list "${cuda_version:-11.0}")"
    export TORCH_CUDA_ARCH_LIST
    say "no visible GPU and TORCH_CUDA_ARCH_LIST not set: building for $TORCH_CUDA_ARCH_LIST" \
        "(CUDA ${cuda_version:-unknown}); preset TORCH_CUDA_ARCH_LIST to change it"
  fi
  say "decision: OPS=cuda FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-<visible GPUs>}"
}

# One line about the installed mmcv's ops: "<cpu|cuda|none> <details>".
probe_ops() {
  local py; py="$(venv_python)"
  [[ -z "$py" ]] && { echo "none no environment at $VENV"; return; }
  "$py" - <<'EOF' 2>/dev/null || echo "none mmcv.ops does not import"
import mmcv
import mmcv._ext as ext
from mmcv.ops import get_compiler_version, get_compiling_cuda_version
cuda = get_compiling_cuda_version()
names = [n for n in dir(ext) if not n.startswith('_')]
kind = 'cpu' if cuda == 'not available' else 'cuda'
print(kind, f'mmcv {mmcv.__version__}: {len(names)} ops in mmcv._ext, CUDA kernels '
      f'{"compiled with CUDA " + cuda if kind == "cuda" else "none"}, {get_compiler_version()};'
      f' roi_align {"yes" if hasattr(ext, "roi_align_forward") else "no"},'
      f' nms {"yes" if hasattr(ext, "nms") else "no"}')
EOF
}

if [[ "$MODE" == dry-run ]]; then
  decide_ops
  say "dry run: nothing installed (environment: $VENV)"
  exit 0
fi

if [[ "$MODE" == check ]]; then
  [[ -f "$STAMP" ]] || { echo "setup_env.sh: no stamp at $STAMP: run tools/setup_env.sh" >&2; exit 1; }
  if [[ -z "$(stamp_get mmcv_ops)" ]]; then
    say "built ops (stamp): not recorded (stamp of an older setup_env.sh)"
  else
    say "built ops (stamp): $(stamp_get mmcv_ops) — $(stamp_get mmcv_ops_detail)"
  fi
  say "build settings (stamp): FORCE_CUDA=$(stamp_get FORCE_CUDA)" \
      "TORCH_CUDA_ARCH_LIST=$(stamp_get TORCH_CUDA_ARCH_LIST) nvcc=$(stamp_get nvcc)"
  read -r live detail <<<"$(probe_ops)"
  say "installed ops (now): $live — $detail"
  py="$(venv_python)"
  if [[ "$live" != cuda ]] && "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "setup_env.sh: a GPU is visible but mmcv has no CUDA ops (RoIAlign / nms of Mask R-CNN" \
         "fail on it): rebuild with nvcc on PATH: tools/setup_env.sh" >&2
    exit 4
  fi
  exit 0
fi

WANT="$(hash_inputs)"
OPS="$(decide_ops >/dev/null; echo "$OPS")"  # quietly: decided again (and said) after torch
if [[ "$(stamp_get hash)" == "$WANT" && ( "$OPS" != cuda || "$(stamp_get mmcv_ops)" == cuda ) ]]; then
  exit 0
fi

say "setting up $VENV (a fresh machine builds mmcv from source: ~15 min on 2 cores)"
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip<25"
"${PIP[@]}" install -q -r "$ROOT/requirements/torch.txt"
"${PIP[@]}" install -q -r "$ROOT/requirements/build.txt"
decide_ops  # now with torch installed: sees the visible GPUs, if any

read -r have _ <<<"$(probe_ops)"
if [[ "$have" == none || ( "$OPS" == cuda && "$have" != cuda ) ]]; then
  say "building mmcv 2.1.0 with $OPS ops (installed now: $have)"
  EXTRA=()
  # pip's wheel cache does not know FORCE_CUDA: a cached CPU-only wheel would be reused
  [[ "$OPS" == cuda ]] && EXTRA=(--no-cache-dir --force-reinstall --no-deps)
  MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" install -q --no-build-isolation "${EXTRA[@]}" \
    -r "$ROOT/requirements/mmcv.txt"
fi

"${PIP[@]}" install -q -r "$ROOT/requirements/runtime.txt"
"${PIP[@]}" install -q -r "$ROOT/requirements/tests.txt"
"${PIP[@]}" install -q --no-build-isolation --no-deps -e "$ROOT"

if "$VENV/bin/python" -c "import transformers" >/dev/null 2>&1; then
  say "removing transformers (breaks mmpretrain imports with pycocotools present)"
  "${PIP[@]}" uninstall -q -y transformers
fi
"$VENV/bin/python" -c "import torch, mmcv, mmcv.ops, mmengine, mmpretrain, mmdet, mmseg, hvp_mtl; print('[setup_env] ok: torch', torch.__version__, 'mmcv', mmcv.__version__)"
read -r built detail <<<"$(probe_ops)"
say "mmcv ops built: $built — $detail"
{
  echo "hash=$WANT"
  echo "mmcv_ops=$built"
  echo "mmcv_ops_detail=$detail"
  echo "FORCE_CUDA=$FORCE_CUDA"
  echo "TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-}"
  echo "nvcc=$(command -v nvcc || echo none)"
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > "$STAMP"
