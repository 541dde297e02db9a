#!/usr/bin/env bash
# Download the wheels tools/perf/gpu_suite.sh installs on a GPU machine without network.
#
#   bash tools/perf/prepare_gpu_wheels.sh [DIR]      # default: ../hvp_mtl_wheels
#
# Run it on any machine with network; copy DIR next to the repository copy on the GPU machine.
# The target has Python 3.12, torch, torchvision, numpy, pillow, pyyaml (timm/transformers) but
# not the OpenMMLab stack: mmengine, mmpretrain, and mmcv-lite (pure Python, no compiled ops:
# pre-training needs none), plus the pure-Python or binary packages they import at import time.
# Wheels only, no dependencies resolved by pip (the list below is the closure).
set -euo pipefail
DIR=${1:-"$(cd "$(dirname "$0")/../.." && pwd)/../hvp_mtl_wheels"}
PY=${PY_VERSION:-3.12}
mkdir -p "$DIR"
WHEELS=(
  mmengine==0.10.7 mmpretrain==1.2.0 mmcv-lite==2.1.0
  # mmengine: config, logging, file io, visualisation (imported by the Runner)
  addict yapf platformdirs termcolor rich markdown-it-py mdurl pygments
  "opencv-python-headless<5" matplotlib contourpy cycler fonttools kiwisolver pyparsing
  python-dateutil six
  # mmengine.utils.package_utils uses pkg_resources (mmpretrain:: base configs)
  "setuptools<70"
  # mmpretrain
  einops mat4py modelindex model-index ordered-set markdown click importlib-metadata zipp
  lazy-importer tzdata
)
pip download --no-deps --only-binary=:all: --python-version "$PY" \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --platform any -d "$DIR" "${WHEELS[@]}"
echo "wheels in $DIR:"; ls "$DIR"
