#!/usr/bin/env bash
# Submit (or run inside an allocation) a training job with Slurm's srun.
#
#   [GPUS=64] [GPUS_PER_NODE=8] [CPUS_PER_TASK=N] [SRUN_ARGS=...] \
#       tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args ...]
#
# One task per GPU: srun starts GPUS tasks, GPUS_PER_NODE per node, and
# tools/train.py initialises torch.distributed from the SLURM_* variables
# (`--launcher slurm`). GPUS is the total over all nodes, as for
# tools/dist_train.sh. The paper's run: GPUS=64 GPUS_PER_NODE=8 (8 nodes).
#
# CPUs per task: each task runs the training process and the config's
# train_dataloader.num_workers loader workers (after any --cfg-options), so
# CPUS_PER_TASK defaults to num_workers + 1. A smaller CPUS_PER_TASK is
# refused (the workers would share too few cores and starve the GPU); set
# ALLOW_FEWER_CPUS=1 to submit anyway.
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args ...]" >&2
    exit 1
fi

TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=${4:-}
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$((GPUS < 8 ? GPUS : 8))}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
PY_ARGS=("${@:5}")

if [ "$GPUS" -gt "$GPUS_PER_NODE" ] && [ $((GPUS % GPUS_PER_NODE)) -ne 0 ]; then
    echo "$(basename "$0"): error: GPUS=${GPUS} is not a multiple of GPUS_PER_NODE=${GPUS_PER_NODE}" >&2
    exit 1
fi

export PYTHONPATH="${TOOLS_DIR}/..${PYTHONPATH:+:${PYTHONPATH}}"
# the loader workers one task starts, read from the config (+ --cfg-options)
WORKERS=$("$PYTHON" - "$CONFIG" "${PY_ARGS[@]}" <<'PY'
import argparse
import sys

from mmengine.config import Config, DictAction

parser = argparse.ArgumentParser()
parser.add_argument('config')
parser.add_argument('--cfg-options', nargs='+', action=DictAction)
args, _ = parser.parse_known_args(sys.argv[1:])
cfg = Config.fromfile(args.config, import_custom_modules=False)
if args.cfg_options:
    cfg.merge_from_dict(args.cfg_options)
print(int(cfg.train_dataloader.get('num_workers', 0)))
PY
)
NEEDED_CPUS=$((WORKERS + 1))
CPUS_PER_TASK=${CPUS_PER_TASK:-$NEEDED_CPUS}
if [ "$CPUS_PER_TASK" -lt "$NEEDED_CPUS" ] && [ "${ALLOW_FEWER_CPUS:-0}" != 1 ]; then
    echo "$(basename "$0"): error: CPUS_PER_TASK=${CPUS_PER_TASK} but ${CONFIG} starts" \
        "${WORKERS} loader workers per GPU (train_dataloader.num_workers) plus the" \
        "training process: set CPUS_PER_TASK>=${NEEDED_CPUS}, lower num_workers with" \
        "--cfg-options train_dataloader.num_workers=N, or set ALLOW_FEWER_CPUS=1" >&2
    exit 1
fi
echo "$(basename "$0"): ${GPUS} tasks, ${CPUS_PER_TASK} CPUs each (${WORKERS} loader workers + 1)" >&2

WORK_DIR_ARGS=()
if [ -n "$WORK_DIR" ]; then
    WORK_DIR_ARGS=(--work-dir="$WORK_DIR")
fi

# shellcheck disable=SC2086  # SRUN_ARGS is a list of words on purpose
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    --gres=gpu:"${GPUS_PER_NODE}" \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "${TOOLS_DIR}/train.py" "${CONFIG}" "${WORK_DIR_ARGS[@]}" --launcher="slurm" "${PY_ARGS[@]}"
