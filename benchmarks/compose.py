"""Compose BENCHMARKS.md from the files `scripts/benchmarks.sh` writes. No number here is typed by
hand: every figure comes from benchmarks/results/*, which that script regenerates."""

from __future__ import annotations

import json
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def first_env() -> dict:
    line = (RESULTS / "fashion.jsonl").read_text().splitlines()[0]
    return json.loads(line)["env"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    env = first_env()
    grid = (ROOT / "fashion.toml").read_text()
    protocol = "\n".join(line[2:] for line in grid.splitlines() if line.startswith("# "))
    print(f"""# Benchmarks

Regenerate everything on this page with one command (resumable; trained models are cached):

```bash
bash scripts/benchmarks.sh
```

It runs `unlearnkit bench benchmarks/fashion.toml` (records in `benchmarks/results/fashion.jsonl`),
`unlearnkit overhead` (the step-cost table) and `benchmarks/compose.py` (this page).

Machine: {cpu_name()}, {env['threads']} torch threads, device {env['device']}; torch {env['torch']},
Python {env['python']}. Times are wall-clock seconds measured in the same run as Retrain's
training, reported as RTE = method seconds / Retrain seconds (Retrain = 1.00).

## Fashion-MNIST, small CNN

{protocol}

Metrics (README, "Verification"): UA = 100 − forget accuracy, RA, TA (class-wise: without the
forgotten class), MIA = MIA-Efficacy (SVC on confidence, fitted on at most 2,500 members and
2,500 non-members), Avg. Gap = mean |Δ| to Retrain over those four, on the same request and seed;
mean ± std over 3 seeds. Bold: the smallest Avg. Gap. A method label with `(lr=…)` marks a
learning-rate variant run side by side. One-off set-up that belongs to the trained model rather
than to the request (PGU's full-data statistics) is paid on every run here (no warm caches) and
included in RTE; the step-cost section below reports it separately.

{(RESULTS / "fashion.md").read_text()}
![Avg. Gap vs time](benchmarks/results/fashion.png)

## Cost of one unlearning step

Time of one update of each method divided by the time of one plain fine-tune step on the same
model, data and batch size, measured in the same run (`unlearnkit overhead`). A step is whatever
the method does between two parameter updates, so a method that also processes a retain batch,
takes a lookahead step or evaluates a stopping rule pays for it here. Set-up is the time before
the first update (saliency masks, Fisher diagonals, MI heads, PGU's statistics and bases). The
mean includes periodic work between updates (PGU's per-epoch stopping-rule evaluation, ∇τ's τ
refresh); the median step ratio leaves it out. FT's step processes one batch; NegGrad+, ∇τ, LUR
and LTU process a forget and a retain batch per update.

{(RESULTS / "overhead.md").read_text()}
## Not yet measured here

CIFAR-10 / ResNet-18 tables, scaling curves and throughput (issue "benchmark suite on real
CIFAR-10") are not produced by this command yet.
""")


if __name__ == "__main__":
    main()
