#!/usr/bin/env bash
# Rebuild every benchmark table and plot from cached models (training what is missing), then
# BENCHMARKS.md. Resumable: finished runs are kept in benchmarks/results/*.jsonl and skipped.
#   bash scripts/benchmarks.sh            # fashion-mnist suite + step-overhead table
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
UK=.venv/bin/unlearnkit
R=benchmarks/results
mkdir -p "$R"
$UK bench benchmarks/fashion.toml --out $R/fashion.jsonl --report $R/fashion.md --plot $R/fashion.png
$UK overhead --dataset fashion-mnist --train-size 10000 --forget random:0.1 --widths 8,16,32 \
  --out $R/overhead.md
.venv/bin/python benchmarks/compose.py > BENCHMARKS.md.tmp && mv BENCHMARKS.md.tmp BENCHMARKS.md
