#!/usr/bin/env bash
# CI step: the pre-training-only install path, from nothing, then a few pre-training iterations.
#
#   tools/ci_pretrain_only.sh [ITERS]     (make smoke-pretrain-only; .ci/run runs it after the tests)
#
# A fresh virtual environment gets `pip install .[pretrain]` (torch, mmengine, mmpretrain and
# mmcv-lite: no compiler, no mmcv ops, no mmdet / mmseg), then tools/train.py runs ITERS
# (default 4) iterations of the demo pre-training config on a small generated world, with the
# configs' own visualizer (local scalars + TensorBoard). It fails if any step fails, if the
# environment has mmcv ops (the path must not need them), or if no log / TensorBoard event file
# / checkpoint was written. Everything lives in a temporary directory that is removed at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
ITERS="${1:-4}"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/hvp_pretrain_only.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
say() { echo "[pretrain-only] $*"; }
start=$SECONDS

"$PYTHON" -m venv "$TMP/venv"
PY="$TMP/venv/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q "pip<25"
# a copy of the tree: the build writes nothing into the checkout
mkdir "$TMP/src"
tar -C "$ROOT" --exclude=./.venv --exclude=./work_dirs --exclude=./data --exclude=./.git \
  -cf - . | tar -C "$TMP/src" -xf -
"${PIP[@]}" install -q "$TMP/src[pretrain]"
installed=$SECONDS
say "installed .[pretrain] in $((installed - start)) s"

if "$PY" -c 'import mmcv.ops' >/dev/null 2>&1; then
  echo "pretrain-only: mmcv ops are importable: this is not the mmcv-lite path" >&2; exit 1
fi
for pkg in mmdet mmseg; do
  if "$PY" -c "import $pkg" >/dev/null 2>&1; then
    echo "pretrain-only: $pkg is installed: the path must not need it" >&2; exit 1
  fi
done

cd "$TMP"  # tools run from outside the checkout: the installed package is what imports
"$PY" "$ROOT/tools/dataset_converters/make_demo_data.py" --out "$TMP/data" --num-pretrain 64 \
  --num-cls 8 --num-det 4 --num-seg 4
OMP_NUM_THREADS=1 "$PY" "$ROOT/tools/train.py" "$ROOT/configs/demo/hvp_swin-demo_pretrain.py" \
  --work-dir "$TMP/work" --cfg-options \
  "train_dataloader.dataset.data_root=$TMP/data/pretrain/" train_dataloader.batch_size=8 \
  train_dataloader.num_workers=0 train_dataloader.persistent_workers=False \
  "train_cfg.max_iters=$ITERS" default_hooks.logger.interval=1 custom_hooks=[] \
  > "$TMP/train.log" 2>&1 || { tail -n 60 "$TMP/train.log"; exit 1; }

scalars="$(find "$TMP/work" -name scalars.json | head -n1)"
events="$(find "$TMP/work" -name 'events.out.tfevents.*' | head -n1)"
[[ -n "$scalars" && "$(wc -l < "$scalars")" -ge "$ITERS" ]] || {
  tail -n 60 "$TMP/train.log"; echo "pretrain-only: no scalars.json with $ITERS lines" >&2; exit 1; }
[[ -n "$events" ]] || { echo "pretrain-only: no TensorBoard event file" >&2; exit 1; }
[[ -f "$TMP/work/iter_$ITERS.pth" ]] || { echo "pretrain-only: no iter_$ITERS.pth" >&2; exit 1; }
say "last logged iteration: $(tail -n1 "$scalars")"
say "ok: install $((installed - start)) s, data + $ITERS iterations $((SECONDS - installed)) s," \
    "total $((SECONDS - start)) s"
