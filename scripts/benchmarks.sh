#!/usr/bin/env bash
# Rebuild every benchmark table and plot from cached models (training what is missing), then
# BENCHMARKS.md. Resumable: finished runs are kept in benchmarks/results/*.jsonl and skipped.
#   bash scripts/benchmarks.sh            # every suite below, then BENCHMARKS.md
#   bash scripts/benchmarks.sh --gpu      # the CIFAR-10 suite at the papers' full width (64) on CUDA,
#                                         # into cifar10_w64.*, then BENCHMARKS.md (needs a CUDA build of torch)
# Ctrl-C once lets the run in progress finish and be recorded, then stops the script; rerun to resume.
# The step-cost and scaling measurements are kept once written (delete their .md to measure again):
# each is one timed session, not a set of runs that can be resumed.
# The text, generation and scaling runs use one torch thread (OMP_NUM_THREADS=1): their models are
# small, and on a shared 2-core machine two OpenMP threads stall whenever the other core is busy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
UK=.venv/bin/unlearnkit
R=benchmarks/results
mkdir -p "$R"
once() { local out=$1; shift; [ -s "$out" ] && { echo "benchmarks: keeping $out (delete it to measure again)"; return 0; }; "$@" --out "$out"; }
compose() { .venv/bin/python benchmarks/compose.py > BENCHMARKS.md.tmp && mv BENCHMARKS.md.tmp BENCHMARKS.md; }
if [ "${1:-}" = "--gpu" ]; then
  .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: --gpu needs a GPU and a CUDA build of torch in .venv')"
  $UK bench benchmarks/cifar10.toml --width 64 --device cuda --out $R/cifar10_w64.jsonl --report $R/cifar10_w64.md \
    --plot $R/cifar10_w64.png --histograms $R/cifar10_w64_hist.png
  compose
  exit 0
fi
# CIFAR-10 / ResNet-18 width 16 on the CPU: many hours (the original and every Retrain take over half an hour each).
$UK bench benchmarks/cifar10.toml --out $R/cifar10.jsonl --report $R/cifar10.md --plot $R/cifar10.png \
  --histograms $R/cifar10_hist.png
$UK bench benchmarks/cifar10_random30.toml --out $R/cifar10_random30.jsonl --report $R/cifar10_random30.md \
  --plot $R/cifar10_random30.png --histograms $R/cifar10_random30_hist.png
once $R/overhead_cifar10.md $UK overhead --dataset cifar10 --methods nabla-tau,sfr-on,pgu,ltu,lur --steps 40
$UK bench benchmarks/quick.toml --out $R/digits.jsonl --report $R/digits.md --plot $R/digits.png
$UK bench benchmarks/fashion.toml --out $R/fashion.jsonl --report $R/fashion.md --plot $R/fashion.png
once $R/overhead.md $UK overhead --dataset fashion-mnist --train-size 10000 --forget random:0.1 --widths 8,16,32 \
  --steps 64
OMP_NUM_THREADS=1 $UK bench benchmarks/text.toml --out $R/text.jsonl --report $R/text.md --plot $R/text.png \
  --histograms $R/text_hist.png
OMP_NUM_THREADS=1 $UK bench benchmarks/generation.toml --out $R/generation.jsonl --report $R/generation.md \
  --plot $R/generation.png
OMP_NUM_THREADS=1 $UK samples benchmarks/generation.toml --out $R/generation_samples.png --seed 0
OMP_NUM_THREADS=1 once $R/scaling.md $UK scaling --dataset fashion-mnist --train-size 10000 --fractions 0.01,0.05,0.1,0.3 \
  --train-sizes 2500,5000,10000 --forget-count 250 --methods ft,ga,rl,salun,sfr-on,nabla-tau,pgu,lur,ltu \
  --set sfr-on.iterations=300 --set ft.epochs=3 --set rl.epochs=3 --set salun.epochs=3 --set rl.lr=0.001 \
  --set salun.lr=0.001 --plot $R/scaling.png
compose
