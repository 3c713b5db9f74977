#!/usr/bin/env bash
# unio-train under torchrun: one process per GPU, on one node or many (c10d rendezvous).
#
#   scripts/launch/torchrun.sh 8 dist=fsdp model=base run_dir=runs/base            # one node, 8 GPUs
#   NNODES=4 NODE_RANK=0 MASTER_ADDR=node01 scripts/launch/torchrun.sh 8 dist=fsdp run_dir=runs/big
#   (the same command on every node, with its own NODE_RANK; MASTER_ADDR is node 0's address)
#   scripts/launch/torchrun.sh 2 dist=ddp trainer.device=cpu run_dir=runs/cpu2     # 2 CPU processes (gloo)
#
# Pass a fixed run_dir: every rank must write into one directory (unio picks one on rank 0 when it
# is omitted, but a fixed one is what lets a restarted job resume). Extra arguments are Hydra overrides.
set -euo pipefail
NPROC_PER_NODE=${1:?usage: torchrun.sh NPROC_PER_NODE [overrides...]}
shift
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
if [ "$NNODES" -gt 1 ]; then
  RDZV=(--nnodes "$NNODES" --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv-id "${RDZV_ID:-unio}")
else
  RDZV=(--standalone)
fi
# OMP threads per process: the cores of the node shared by its processes.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / NPROC_PER_NODE > 0 ? $(nproc) / NPROC_PER_NODE : 1 ))}
exec "$PYTHON" -m torch.distributed.run "${RDZV[@]}" --nproc-per-node "$NPROC_PER_NODE" --node-rank "$NODE_RANK" \
  -m scripts.train "$@"
