#!/usr/bin/env bash
# Distributed testing with torchrun; same node layout rules as dist_train.sh.
#
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [tools/test.py arguments ...]
#
# GPUS is the total over all nodes; GPUS_PER_NODE, NNODES, NODE_RANK,
# MASTER_ADDR, PORT and PYTHON are read from the environment exactly as
# tools/dist_train.sh documents.
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py args ...]" >&2
    exit 1
fi

TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
export HVP_LAUNCH_ENTRY="${TOOLS_DIR}/test.py"
export HVP_LAUNCH_CMD="tools/dist_test.sh ${CONFIG} ${CHECKPOINT} ${GPUS}"
exec "${TOOLS_DIR}/dist_train.sh" "$CONFIG" "$GPUS" "$CHECKPOINT" "${@:4}"
