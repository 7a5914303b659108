"""Per-step cost of each method against a plain fine-tune step, measured in one run.

Every method's every update goes through `loop.fit`, which tells the request's callbacks; a
`StepTimer` among them times the gaps between consecutive updates. The time before the first update
is the method's one-off set-up (saliency mask, Fisher diagonals, PGU's subspaces ...), reported
separately.

Evaluations a method marks with `loop.checking` (PGU's per-epoch accuracies, ∇τ's held-out loss)
happen between updates; their time is taken out of the gap they fall in, and the ratio with them
left in is reported beside the step's.

The samples a step consumes are counted from the batches the request hands out (a NegGrad+, ∇τ or
LUR step takes a forget and a retain batch, an LTU step four batches), and each step is also
compared with a plain fine-tune step on as many samples: "on the same batch".
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import torch

from unlearnkit.bench.runner import clear_warm_caches
from unlearnkit.bench.scenarios import Prepared
from unlearnkit.method import build


class _Enough(Exception):
    pass


class StepTimer:
    """A `loop.Callback` that stamps every update (stopping after `steps` + 1 of them), and keeps
    the samples handed out and the seconds spent in stopping checks at each stamp."""

    def __init__(self, steps: int) -> None:
        self.steps, self.stamps, self.drawn, self.checked = steps, [], [], []
        self.samples, self.check_seconds = 0, 0.0

    def on_batch(self, size: int) -> None:
        self.samples += size

    def on_check(self, seconds: float) -> None:
        self.check_seconds += seconds

    def on_update(self, step: int) -> None:
        self.stamps.append(time.perf_counter())
        self.drawn.append(self.samples)
        self.checked.append(self.check_seconds)
        if len(self.stamps) > self.steps + 1:
            raise _Enough


def time_steps(name: str, hparams: dict[str, Any], prepared: Prepared, steps: int = 30) -> dict[str, float]:
    """Set-up seconds, mean and median seconds per update over `steps` updates (after one warm-up
    update) without and (mean) with the stopping checks between them, and the median number of
    samples the request handed out per update."""
    method = build(name, hparams)
    timer = StepTimer(steps)
    request = dataclasses.replace(prepared.request, callbacks=(timer,))
    clear_warm_caches(method)  # each row pays its own set-up (a second PGU row would reuse the first's statistics)
    torch.manual_seed(0)
    start = time.perf_counter()
    try:
        method(prepared.original, request)
    except _Enough:
        pass
    stamps = timer.stamps
    if len(stamps) < 3:
        raise RuntimeError(f"{name} made only {len(stamps)} updates; cannot time a step")
    walls = [b - a for a, b in zip(stamps[1:], stamps[2:])]
    gaps = [w - (cb - ca) for w, ca, cb in zip(walls, timer.checked[1:], timer.checked[2:])]
    samples = statistics.median([b - a for a, b in zip(timer.drawn[1:], timer.drawn[2:])])
    return {"setup_s": max(0.0, stamps[0] - start - gaps[0]), "step_s": statistics.fmean(gaps),
            "step_median_s": statistics.median(gaps), "with_checks_s": statistics.fmean(walls),
            "steps": len(gaps), "samples": int(samples)}


def overhead_table(variants: list[tuple[str, str, dict[str, Any]]], prepared: Prepared, batch_size: int = 128,
                   steps: int = 30) -> tuple[str, list[dict[str, Any]]]:
    """Time `variants` (label, method, hparams) and plain FT at the same batch size; FT is timed
    before and after the others and the mean of the two is the reference. Then FT is timed once
    more at every other per-step sample count a method showed, for the same-samples ratio."""
    def with_batch(name: str, hp: dict[str, Any]) -> dict[str, Any]:
        fields = {f.name for f in dataclasses.fields(build(name))}
        return {**({"batch_size": batch_size} if "batch_size" in fields else {}), **hp}

    ft_first = time_steps("ft", with_batch("ft", {}), prepared, steps)
    rows = [dict(label=label, method=name, **time_steps(name, with_batch(name, hp), prepared, steps))
            for label, name, hp in variants]
    ft_last = time_steps("ft", with_batch("ft", {}), prepared, steps)
    ft = {batch_size: {k: (ft_first[k] + ft_last[k]) / 2 for k in ("step_s", "step_median_s")}}
    for n in sorted({r["samples"] for r in rows} - set(ft) - {0}):
        ft[n] = time_steps("ft", {"batch_size": n}, prepared, steps)
    lines = [f"Plain fine-tune step (batch {batch_size}): {1000 * ft[batch_size]['step_s']:.1f} ms "
             f"(timed before: {1000 * ft_first['step_s']:.1f} ms, after: {1000 * ft_last['step_s']:.1f} ms); "
             + ", ".join(f"batch {n}: {1000 * t['step_s']:.1f} ms" for n, t in sorted(ft.items()) if n != batch_size)
             + ".", "",
             f"| method | samples / step | step (ms) | × FT step (batch {batch_size}) | × FT step on the same samples "
             "| median, same samples | with stopping checks, same samples | one-off set-up (s) | steps timed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        same = ft.get(r["samples"], ft[batch_size])
        r["ratio"] = r["step_s"] / ft[batch_size]["step_s"]
        r["same_ratio"], r["same_median_ratio"] = r["step_s"] / same["step_s"], r["step_median_s"] / same["step_median_s"]
        r["checks_ratio"] = r["with_checks_s"] / same["step_s"]
        lines.append(f"| {r['label']} | {r['samples']} | {1000 * r['step_s']:.1f} | {r['ratio']:.2f}× | "
                     f"{r['same_ratio']:.2f}× | {r['same_median_ratio']:.2f}× | {r['checks_ratio']:.2f}× | "
                     f"{r['setup_s']:.2f} | {r['steps']} |")
    return "\n".join(lines) + "\n", rows


def statistics_scaling(scenario_fn, widths: tuple[int, ...], seed: int = 0) -> str:
    """PGU's one-off full-data statistics pass, timed at several model widths (same data)."""
    from unlearnkit.bench.scenarios import prepare
    from unlearnkit.subspace import full_statistics

    lines = ["| model width | parameters | statistics pass (s) | largest layer input d |", "|---|---|---|---|"]
    for w in widths:
        prepared = prepare(scenario_fn(w), seed)
        start = time.perf_counter()
        stats = full_statistics(prepared.original, prepared.request.train, batch_size=256)
        seconds = time.perf_counter() - start
        n = sum(p.numel() for p in prepared.original.parameters())
        lines.append(f"| {w} | {n:,} | {seconds:.2f} | {max(c.shape[0] for c in stats.values())} |")
    return "\n".join(lines) + "\n"
