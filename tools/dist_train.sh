#!/usr/bin/env bash
# Launch distributed training with torchrun.
#
#   tools/dist_train.sh CONFIG GPUS [tools/train.py arguments ...]
#
# GPUS is the TOTAL number of GPUs (processes) of the job, on all nodes:
# `tools/dist_train.sh configs/pretrain/hvp_swin-b.py 64` on 8-GPU nodes is an
# 8-node job. (Upstream OpenMMLab's script would start 64 processes on one
# node.)
#
# Environment (all optional on a single node):
#   GPUS_PER_NODE  processes per node; default: GPUs visible on this node
#                  (CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`); on a machine
#                  without GPUs, GPUS (one node, CPU processes, gloo backend)
#   NNODES         must equal GPUS / GPUS_PER_NODE when given
#   NODE_RANK      rank of this node, 0 .. NNODES-1 (required when NNODES > 1)
#   MASTER_ADDR    address of node 0 (required when NNODES > 1; else 127.0.0.1)
#   PORT           rendezvous port on node 0 (default 29500)
#   PYTHON         python interpreter (default: python)
#
# When NNODES > 1 and NODE_RANK is not set, the script prints the command to
# run on every node and exits with status 2.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py args ...]" >&2
    exit 1
fi

TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)
CONFIG=$1
GPUS=$2
shift 2
# dist_test.sh re-uses this launcher with its own entry point and usage line.
ENTRY=${HVP_LAUNCH_ENTRY:-"${TOOLS_DIR}/train.py"}
LAUNCH_CMD=${HVP_LAUNCH_CMD:-"tools/dist_train.sh ${CONFIG} ${GPUS}"}
PYTHON=${PYTHON:-python}
PORT=${PORT:-29500}

die() {
    echo "$(basename "$0"): error: $*" >&2
    exit 1
}

is_positive_int() {
    [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ]
}

is_positive_int "$GPUS" || die "GPUS must be a positive integer (the total over all nodes), got '${GPUS}'"

# --- GPUs visible on this node -------------------------------------------
count_visible_gpus() {
    if [ -n "${CUDA_VISIBLE_DEVICES+x}" ]; then
        if [ -z "${CUDA_VISIBLE_DEVICES}" ] || [ "${CUDA_VISIBLE_DEVICES}" = "-1" ]; then
            echo 0
        else
            echo "${CUDA_VISIBLE_DEVICES}" | tr ',' '\n' | grep -c .
        fi
    elif command -v nvidia-smi > /dev/null 2>&1; then
        nvidia-smi -L 2> /dev/null | grep -c '^GPU' || true
    else
        echo 0
    fi
}

if [ -z "${GPUS_PER_NODE:-}" ]; then
    VISIBLE=$(count_visible_gpus)
    if [ "$VISIBLE" -eq 0 ]; then
        # CPU-only machine: one node, GPUS processes with the gloo backend.
        GPUS_PER_NODE=$GPUS
        echo "$(basename "$0"): no GPU visible; starting ${GPUS} CPU process(es) (gloo backend)" >&2
    else
        GPUS_PER_NODE=$VISIBLE
    fi
fi
is_positive_int "$GPUS_PER_NODE" || die "GPUS_PER_NODE must be a positive integer, got '${GPUS_PER_NODE}'"

# --- node layout ---------------------------------------------------------
if [ "$GPUS" -le "$GPUS_PER_NODE" ]; then
    DERIVED_NNODES=1
    NPROC_PER_NODE=$GPUS
else
    if [ $((GPUS % GPUS_PER_NODE)) -ne 0 ]; then
        die "GPUS=${GPUS} is not a multiple of GPUS_PER_NODE=${GPUS_PER_NODE}; \
a multi-node job needs the same number of GPUs on every node (set GPUS_PER_NODE or GPUS)"
    fi
    DERIVED_NNODES=$((GPUS / GPUS_PER_NODE))
    NPROC_PER_NODE=$GPUS_PER_NODE
fi
if [ -n "${NNODES:-}" ] && [ "$NNODES" != "$DERIVED_NNODES" ]; then
    die "NNODES=${NNODES} disagrees with GPUS/GPUS_PER_NODE = ${GPUS}/${GPUS_PER_NODE} = ${DERIVED_NNODES} node(s)"
fi
NNODES=$DERIVED_NNODES

if [ "$NNODES" -gt 1 ]; then
    if [ -z "${NODE_RANK:-}" ]; then
        ADDR=${MASTER_ADDR:-"<address-of-node-0>"}
        {
            echo "This is a ${NNODES}-node job: ${GPUS} GPUs = ${NNODES} nodes x ${GPUS_PER_NODE} GPUs."
            echo "Run on each node (node 0 first; all within the rendezvous timeout):"
            for ((rank = 0; rank < NNODES; rank++)); do
                printf '  node %d: GPUS_PER_NODE=%d NNODES=%d NODE_RANK=%d MASTER_ADDR=%s PORT=%s %s' \
                    "$rank" "$GPUS_PER_NODE" "$NNODES" "$rank" "$ADDR" "$PORT" "$LAUNCH_CMD"
                for arg in "$@"; do printf ' %q' "$arg"; done
                printf '\n'
            done
            echo "Or submit it with Slurm: GPUS=${GPUS} GPUS_PER_NODE=${GPUS_PER_NODE} tools/slurm_train.sh PARTITION JOB_NAME ${CONFIG}"
        } >&2
        exit 2
    fi
    [ -n "${MASTER_ADDR:-}" ] || die "MASTER_ADDR (the address of node 0) must be set on every node of a ${NNODES}-node job"
    if ! [[ "$NODE_RANK" =~ ^[0-9]+$ ]] || [ "$NODE_RANK" -ge "$NNODES" ]; then
        die "NODE_RANK must be in 0..$((NNODES - 1)), got '${NODE_RANK}'"
    fi
else
    NODE_RANK=${NODE_RANK:-0}
    [ "$NODE_RANK" = "0" ] || die "NODE_RANK=${NODE_RANK} given but the job has a single node"
    MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
fi

echo "$(basename "$0"): node ${NODE_RANK}/${NNODES}, ${NPROC_PER_NODE} process(es) on this node, world size ${GPUS}, master ${MASTER_ADDR}:${PORT}" >&2

export PYTHONPATH="${TOOLS_DIR}/..${PYTHONPATH:+:${PYTHONPATH}}"
# torchrun == python -m torch.distributed.run (same entry point, but this
# form uses the interpreter of $PYTHON, e.g. the project's virtualenv).
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --nproc_per_node="$NPROC_PER_NODE" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    "$ENTRY" "$CONFIG" "$@" --launcher pytorch
