#!/usr/bin/env bash
# The main job: set up (idempotent), then a quick benchmark of every method on scikit-learn's
# bundled digits (random 10%, random 30%, class-wise and half-of-a-class forgetting, 3 seeds, and the
# tuned rows of benchmarks/tuned/digits.jsonl), printing the table and writing
# the records, the Markdown report and the plot under runs/quick/. Resumable: rerun to continue.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/unlearnkit bench benchmarks/quick.toml --out runs/quick/results.jsonl \
  --report runs/quick/report.md --plot runs/quick/gap_vs_time.png "$@"
