#!/usr/bin/env bash
# Rebuild every benchmark table and plot from cached models (training what is missing), then
# BENCHMARKS.md. Resumable: finished runs are kept in benchmarks/results/*.jsonl and skipped.
#   bash scripts/benchmarks.sh            # every suite below, then BENCHMARKS.md
# The text, generation and scaling runs use one torch thread (OMP_NUM_THREADS=1): their models are
# small, and on a shared 2-core machine two OpenMP threads stall whenever the other core is busy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
UK=.venv/bin/unlearnkit
R=benchmarks/results
mkdir -p "$R"
# CIFAR-10 / ResNet-18 width 16 on the CPU: many hours (the original and every Retrain take over half an hour each);
# on a GPU add `--width 64 --device cuda` (and another --out) for the papers' full width.
$UK bench benchmarks/cifar10.toml --out $R/cifar10.jsonl --report $R/cifar10.md --plot $R/cifar10.png \
  --histograms $R/cifar10_hist.png
$UK overhead --dataset cifar10 --methods nabla-tau,sfr-on,ltu,lur --steps 10 --out $R/overhead_cifar10.md
$UK bench benchmarks/fashion.toml --out $R/fashion.jsonl --report $R/fashion.md --plot $R/fashion.png
$UK overhead --dataset fashion-mnist --train-size 10000 --forget random:0.1 --widths 8,16,32 --steps 64 \
  --out $R/overhead.md
OMP_NUM_THREADS=1 $UK bench benchmarks/text.toml --out $R/text.jsonl --report $R/text.md --plot $R/text.png \
  --histograms $R/text_hist.png
OMP_NUM_THREADS=1 $UK bench benchmarks/generation.toml --out $R/generation.jsonl --report $R/generation.md \
  --plot $R/generation.png
OMP_NUM_THREADS=1 $UK samples benchmarks/generation.toml --out $R/generation_samples.png --seed 0
OMP_NUM_THREADS=1 $UK scaling --dataset fashion-mnist --train-size 10000 --fractions 0.01,0.05,0.1,0.3 \
  --train-sizes 2500,5000,10000 --forget-count 250 --methods ft,ga,rl,salun,sfr-on,nabla-tau,pgu,lur,ltu \
  --set sfr-on.iterations=300 --set ft.epochs=3 --set rl.epochs=3 --set salun.epochs=3 --set rl.lr=0.001 \
  --set salun.lr=0.001 --out $R/scaling.md --plot $R/scaling.png
.venv/bin/python benchmarks/compose.py > BENCHMARKS.md.tmp && mv BENCHMARKS.md.tmp BENCHMARKS.md
