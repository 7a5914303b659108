#!/usr/bin/env bash
# Rebuild every benchmark table and plot from the committed and cached models (training what is
# missing), then BENCHMARKS.md. Resumable: finished runs, trials and audit pools are kept and skipped.
#   bash scripts/benchmarks.sh            # every suite below, then BENCHMARKS.md
#   bash scripts/benchmarks.sh --gpu      # the GPU check (scripts/gpu_check.sh), then BENCHMARKS.md
# Ctrl-C once lets the run in progress finish and be recorded, then stops the script; rerun to resume.
# The step-cost and scaling measurements are kept once written (delete their .md to measure again):
# each is one timed session, not a set of runs that can be resumed. Every run uses one torch thread
# (OMP_NUM_THREADS=1): the models are small, and on a shared 2-core machine two OpenMP threads
# stall whenever the other core is busy; two suites can then run side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
UK=.venv/bin/unlearnkit
R=benchmarks/results
T=benchmarks/tuned
M=benchmarks/models
mkdir -p "$R" "$T"
once() { local out=$1; shift; [ -s "$out" ] && { echo "benchmarks: keeping $out (delete it to measure again)"; return 0; }; "$@" --out "$out"; }
compose() { .venv/bin/python benchmarks/compose.py > BENCHMARKS.md.tmp && mv BENCHMARKS.md.tmp BENCHMARKS.md; }
if [ "${1:-}" = "--gpu" ]; then
  bash scripts/gpu_check.sh
  compose
  exit 0
fi
# Digits (the quick job's grid): the same search for every method on random 10% and class 3 (16
# trials, 600 s cap), the grid with its tuned rows, its gold audits (16 models per kind).
$UK tune --grid benchmarks/quick.toml --only random:0.1,class:3 --trials 16 --timeout 600 --out $T/digits.jsonl
$UK bench benchmarks/quick.toml --out $R/digits.jsonl --report $R/digits.md --plot $R/digits.png --store-models $M
$UK audit benchmarks/quick.toml --models 16 --out $R/digits_audit.jsonl
$UK report $R/digits.jsonl --audit $R/digits_audit.jsonl --out $R/digits.md --plot $R/digits.png
# Fashion-MNIST: the same search for every method on random 10% and class 3 (16 trials, 600 s cap),
# then the grid with its tuned rows, then the gold audits of those two requests (8 models per kind).
$UK tune --grid benchmarks/fashion.toml --only random:0.1,class:3 --trials 16 --timeout 600 --out $T/fashion.jsonl
$UK bench benchmarks/fashion.toml --out $R/fashion.jsonl --plot $R/fashion.png --histograms $R/fashion_hist.png \
  --store-models $M
$UK audit benchmarks/fashion.toml --only random:0.1,class:3 --models 8 --out $R/fashion_audit.jsonl
$UK report $R/fashion.jsonl --audit $R/fashion_audit.jsonl --out $R/fashion.md
# CIFAR-10 / ResNet-18 width 16 on the CPU: many hours (a Retrain takes 20-30 minutes).
$UK bench benchmarks/cifar10.toml --out $R/cifar10.jsonl --report $R/cifar10.md --plot $R/cifar10.png \
  --histograms $R/cifar10_hist.png --store-models $M
once $R/overhead_cifar10.md $UK overhead --dataset cifar10 --train-size 20000 --methods nabla-tau,sfr-on,pgu,ltu,lur \
  --steps 40
once $R/overhead.md $UK overhead --dataset fashion-mnist --train-size 10000 --forget random:0.1 --widths 8,16,32 \
  --steps 64
# Movie reviews: the same search for every method on random 10% (both models), then the grid.
$UK tune --grid benchmarks/text.toml --only random:0.1 --trials 16 --timeout 600 --out $T/text.jsonl
$UK bench benchmarks/text.toml --out $R/text.jsonl --report $R/text.md --plot $R/text.png --histograms $R/text_hist.png
$UK bench benchmarks/generation.toml --out $R/generation.jsonl --report $R/generation.md --plot $R/generation.png
$UK samples benchmarks/generation.toml --out $R/generation_samples.png --seed 0
once $R/scaling.md $UK scaling --dataset fashion-mnist --train-size 10000 --fractions 0.01,0.05,0.1,0.3 \
  --train-sizes 2500,5000,10000 --forget-count 250 --methods ft,ga,rl,salun,sfr-on,nabla-tau,pgu,lur,ltu \
  --set sfr-on.iterations=300 --set ft.epochs=3 --set rl.epochs=3 --set salun.epochs=3 --set rl.lr=0.001 \
  --set salun.lr=0.001 --plot $R/scaling.png
compose
