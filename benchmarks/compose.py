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
    protocol = protocol_of("fashion.toml")
    print(f"""# Benchmarks

Regenerate everything on this page with one command (resumable; trained models are cached):

```bash
bash scripts/benchmarks.sh
```

It runs `unlearnkit bench` on `benchmarks/fashion.toml`, `text.toml` and `generation.toml`
(records in `benchmarks/results/*.jsonl`), `unlearnkit overhead` (the step-cost table),
`unlearnkit samples` (the generation grid), `unlearnkit scaling` and `benchmarks/compose.py`
(this page). Each record also stores the torch thread count it ran with.

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
{optional_sections()}
## Not yet measured here

CIFAR-10 / ResNet-18 tables (issue "benchmark suite on real CIFAR-10") are not produced by this
command yet: on 2 CPU cores the original and six Retrain models alone need hours.
""")


def protocol_of(toml: str) -> str:
    """The leading comment block of a grid file: its protocol, written once, next to the settings."""
    return "\n".join(line[2:] for line in (ROOT / toml).read_text().splitlines() if line.startswith("# "))


def optional_sections() -> str:
    """Text, generation and scaling sections, each present once its results exist."""
    parts = []
    if (RESULTS / "text.md").is_file():
        parts.append(f"""## Movie reviews (text): bag-of-embeddings model and a head on a pretrained sentence encoder

`unlearnkit bench benchmarks/text.toml` (records in `benchmarks/results/text.jsonl`).

{protocol_of("text.toml")}

{(RESULTS / "text.md").read_text()}
![Avg. Gap vs time](benchmarks/results/text.png)

Per-sample loss on the forget set after each method (blue) and after Retrain (black), and on the
test set after the method (red, dashed), seeds pooled: a method whose blue matches the black
leaves a loss-threshold attacker nothing to find.

![loss histograms](benchmarks/results/text_hist.png)
""")
    if (RESULTS / "generation.md").is_file():
        parts.append(f"""## Class-conditional generation: forgetting a Fashion-MNIST class in a DDPM

`unlearnkit bench benchmarks/generation.toml` and `unlearnkit samples benchmarks/generation.toml`.

{protocol_of("generation.toml")}

{(RESULTS / "generation.md").read_text()}
Samples per class (rows; the forgotten class marked `*`) from the same noise, seed 0:

![samples](benchmarks/results/generation_samples.png)
""")
    if (RESULTS / "scaling.md").is_file():
        parts.append(f"""## Scaling and throughput

`unlearnkit scaling` (arguments in `scripts/benchmarks.sh`): each method's time (one-off set-up
included) as the forget set grows at a fixed training set, and as the training set grows at a fixed
forget set (one original per size); the exponent is the least-squares slope of log time against
log size. A method whose cost follows what it touches shows ~1 against what it iterates over and
~0 against the rest. Throughput counts the samples a method draws from the request per second,
against plain training of the same model on the same machine.

{(RESULTS / "scaling.md").read_text()}
![scaling](benchmarks/results/scaling.png)
""")
    return "\n".join(parts)


if __name__ == "__main__":
    main()
