"""How a method's cost grows with what it is asked to forget and with the training set, and how
fast its loop runs against plain training of the same model (the practical ceiling).

- Forget scaling: |train| fixed, |forget| = 1%, 5%, 10%, 30% of it.
- Train scaling: |forget| fixed (a count), |train| growing (one original model per size).
- Exponent: the slope of log(seconds) against log(size), fitted over the sizes (numpy.polyfit).
  A method that touches only the forget set should show ~1 against |forget| and ~0 against |train|.
- Throughput: samples handed out by the request (counted by a callback) per second of the method,
  set-up included, against samples per second of one plain training epoch on the retain set.
No Retrain is needed: these are costs, not quality.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearnkit.bench.report import save_figure
from unlearnkit.bench.runner import SampleCounter, one_off_setup
from unlearnkit.bench.scenarios import Prepared, Scenario, prepare
from unlearnkit.checkpoint import atomic_write
from unlearnkit.method import build
from unlearnkit.train import Recipe, train_model



def timed(name: str, hparams: dict[str, Any], prepared: Prepared) -> dict[str, float]:
    """Seconds (one-off set-up included) and samples drawn by one run of the method."""
    method = build(name, hparams)
    counter = SampleCounter()
    request = replace(prepared.request, callbacks=(counter,))
    setup = one_off_setup(method, prepared.original, replace(prepared, request=request))
    torch.manual_seed(prepared.request.seed)
    start = time.perf_counter()
    method(prepared.original, request)
    seconds = time.perf_counter() - start + setup
    return {"seconds": seconds, "samples": counter.samples, "throughput": counter.samples / seconds}


def training_throughput(prepared: Prepared, batch_size: int = 128) -> float:
    """Samples per second of one plain training epoch (the original's recipe) on the retain set."""
    model = copy.deepcopy(prepared.original)
    recipe = replace(prepared.request.recipe or Recipe(), epochs=1, batch_size=batch_size)
    idx = prepared.request.retain
    start = time.perf_counter()
    train_model(model, prepared.request.train, idx, recipe, 0, prepared.request.augment, prepared.request.task)
    return len(idx) / (time.perf_counter() - start)


def exponent(sizes: list[int], seconds: list[float]) -> float:
    """d log(seconds) / d log(size), least squares."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def measure(methods: dict[str, dict[str, Any]], base: Scenario, fractions: list[float], train_sizes: list[int],
            forget_count: int, seed: int = 0, cache: Path | None = None) -> dict[str, Any]:
    """Every method at every forget fraction (|train| = base.train_size) and every train size
    (|forget| = forget_count); throughput at the base scenario with the first fraction >= 0.1."""
    by_fraction = {f: prepare(replace(base, forget=f"random:{f}"), seed, cache) for f in fractions}
    for m, hp in methods.items():  # untimed warm-up: first-call allocations and kernel selection
        timed(m, hp, by_fraction[fractions[0]])
    by_forget: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    for prepared in by_fraction.values():
        for m, hp in methods.items():
            by_forget[m].append(timed(m, hp, prepared))
    by_train: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    for n in train_sizes:
        prepared = prepare(replace(base, forget=f"random:{forget_count}", train_size=n), seed, cache)
        for m, hp in methods.items():
            by_train[m].append(timed(m, hp, prepared))
    reference = by_fraction[next((f for f in fractions if f >= 0.1), fractions[-1])]
    forget_sizes = [len(p.request.forget) for p in by_fraction.values()]
    return {"scenario": base.name.rsplit(" ", 1)[0], "fractions": fractions, "forget_sizes": forget_sizes,
            "train_sizes": train_sizes,
            "forget_count": forget_count, "by_forget": by_forget, "by_train": by_train,
            "plain_training_throughput": training_throughput(reference),
            "reference_forget_size": len(reference.request.forget)}


def markdown(result: dict[str, Any]) -> str:
    fs, ts = result["forget_sizes"], result["train_sizes"]
    plain = result["plain_training_throughput"]
    lines = [f"Scenario: {result['scenario']}. Seconds include one-off set-up.", "",
             f"Forget scaling: the scenario's training set, n_forget growing. Train scaling: n_forget = "
             f"{result['forget_count']}, n_train growing (one original model per size).", "",
             "| method | " + " | ".join(f"n_forget={n}" for n in fs) + " | exponent (forget) | "
             + " | ".join(f"n_train={n}" for n in ts) + " | exponent (train) |",
             "|---|" + "---|" * (len(fs) + len(ts) + 2)]
    for m in result["by_forget"]:
        a = [r["seconds"] for r in result["by_forget"][m]]
        b = [r["seconds"] for r in result["by_train"][m]]
        lines.append(f"| {m} | " + " | ".join(f"{s:.2f}" for s in a) + f" | {exponent(fs, a):.2f} | "
                     + " | ".join(f"{s:.2f}" for s in b) + f" | {exponent(ts, b):.2f} |")
    k = result["forget_sizes"].index(result["reference_forget_size"])
    lines += ["", f"Throughput at n_forget={result['reference_forget_size']}: samples drawn per second of the method "
              f"against plain training of the same model on the same machine ({plain:.0f} samples/s).", "",
              "| method | samples drawn | samples/s | ratio to plain training |", "|---|---|---|---|"]
    for m, runs in result["by_forget"].items():
        r = runs[k]
        lines.append(f"| {m} | {r['samples']} | {r['throughput']:.0f} | {r['throughput'] / plain:.2f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, sizes, xlabel in ((axes[0], "by_forget", result["forget_sizes"], "|forget| (|train| fixed)"),
                                   (axes[1], "by_train", result["train_sizes"],
                                    f"|train| (|forget| = {result['forget_count']})")):
        for m, runs in result[key].items():
            ax.plot(sizes, [r["seconds"] for r in runs], "o-", label=m)
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="seconds (set-up included)")
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(result["scenario"], fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def write(result: dict[str, Any], md_path, png_path=None) -> str:
    text = markdown(result)
    if md_path:
        atomic_write(md_path, text.encode())
    if png_path:
        plot(result, png_path)
    return text
