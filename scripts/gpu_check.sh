#!/usr/bin/env bash
# The GPU check: on one GPU, within about 8 minutes, train the full-width CIFAR-10 ResNet-18
# original, run Retrain and the five reproduced methods on random 10% forgetting, and write a
# benchmark record (benchmarks/results/gpu_check.jsonl) and a Markdown table with throughput
# (benchmarks/results/gpu_check.md). Commit both, with the hardware the records name.
#   bash scripts/gpu_check.sh          # needs CUDA; uses .venv's python, else python3
#   bash scripts/gpu_check.sh --tiny   # the same steps on a CPU in seconds (what the tests run)
# The CIFAR-10 archive (cifar10-jpeg.npz, 56 MB) is found as every run finds it: $UNLEARNKIT_CIFAR10
# or ../shared/data. On a lent device machine only the checkout travels: copy the archive into an
# ignored folder of the repository and set UNLEARNKIT_CIFAR10 to it (see the device tool's notes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if [ "${1:-}" = "--tiny" ]; then
  GRID=benchmarks/gpu_check_tiny.toml DEVICE=cpu DIR=${GPU_CHECK_OUT:-runs/gpu_check_tiny}
else
  GRID=benchmarks/gpu_check.toml DEVICE=cuda DIR=${GPU_CHECK_OUT:-benchmarks/results}
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: torch sees no CUDA device here')"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$DIR"
"$PY" -m unlearnkit bench "$GRID" --device "$DEVICE" --out "$DIR/gpu_check.jsonl" --report "$DIR/gpu_check.md"
"$PY" -m unlearnkit report "$DIR/gpu_check.jsonl" --throughput >> "$DIR/gpu_check.md"
cat "$DIR/gpu_check.md"
