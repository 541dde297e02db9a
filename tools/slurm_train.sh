#!/usr/bin/env bash
# Submit (or run inside an allocation) a training job with Slurm's srun.
#
#   [GPUS=64] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#       tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args ...]
#
# One task per GPU: srun starts GPUS tasks, GPUS_PER_NODE per node, and
# tools/train.py initialises torch.distributed from the SLURM_* variables
# (`--launcher slurm`). GPUS is the total over all nodes, as for
# tools/dist_train.sh. The paper's run: GPUS=64 GPUS_PER_NODE=8 (8 nodes).
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
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
PY_ARGS=("${@:5}")

if [ "$GPUS" -gt "$GPUS_PER_NODE" ] && [ $((GPUS % GPUS_PER_NODE)) -ne 0 ]; then
    echo "$(basename "$0"): error: GPUS=${GPUS} is not a multiple of GPUS_PER_NODE=${GPUS_PER_NODE}" >&2
    exit 1
fi

WORK_DIR_ARGS=()
if [ -n "$WORK_DIR" ]; then
    WORK_DIR_ARGS=(--work-dir="$WORK_DIR")
fi

export PYTHONPATH="${TOOLS_DIR}/..${PYTHONPATH:+:${PYTHONPATH}}"
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
