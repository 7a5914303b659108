"""Audit pools: for one request (a scenario at its first seed), N originals of different training
seeds, N models retrained without the forget set, a second N retrained ones (the Retrain row: how
close two pools of exact unlearning come), and N unlearned models per method. Only each model's
per-sample statistic φ (`metrics.logit_scaled_confidence`) on the audited points is kept, as .npy
files under `cache_dir()/pools/`, so an interrupted pool resumes and every audit reads one pool.
The trained originals and Retrains are cached like the benchmark's (member 0 of the pool is the
benchmark's own original; the Retrain of the request's seed is the benchmark's own Retrain).

Audited points: the whole forget set, and up to `POINTS` retain and `POINTS` held-out samples
(fixed random draws), the three groups KLOM reports.
"""

from __future__ import annotations

import dataclasses
import io
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from unlearnkit.audit import klom, klom_bins, klom_summary, ulira
from unlearnkit.bench.runner import append_record, environment, read_records, record_key, stop_after_current_run
from unlearnkit.bench.scenarios import Prepared, Scenario, cached_training, original_key, prepare
from unlearnkit.checkpoint import atomic_write, cache_dir, digest
from unlearnkit.method import build
from unlearnkit.methods.reference import Retrain
from unlearnkit.metrics import logit_scaled_confidence, predict
from unlearnkit.train import train_model

POINTS = 2000  # retain and held-out samples audited (each), besides the whole forget set


@dataclass
class Pool:
    """The models of one audit pool, built on demand and cached (module docstring)."""

    prepared: Prepared
    models: int
    cache: Path | None = None

    def __post_init__(self) -> None:
        r = self.prepared.request
        if r.val is None:
            raise ValueError("an audit needs held-out data (the scenario's validation split) for KLOM's third group")
        gen = torch.Generator().manual_seed(12345)
        retain = r.retain[torch.randperm(len(r.retain), generator=gen)[:POINTS]].sort().values
        val = torch.randperm(len(r.val), generator=gen)[:POINTS].sort().values  # type: ignore[arg-type]
        self.groups = {"forget": np.arange(len(r.forget)),
                       "retain": len(r.forget) + np.arange(len(retain)),
                       "val": len(r.forget) + len(retain) + np.arange(len(val))}
        self.points = (r.forget, retain, val)
        self.dir = (self.cache or cache_dir()) / "pools" / digest(self.prepared.scenario.as_dict(), r.seed, r.forget,
                                                                   retain, val)

    def phi(self, model: nn.Module) -> np.ndarray:
        r = self.prepared.request
        forget, retain, val = self.points
        outs = [predict(model, r.train, forget), predict(model, r.train, retain), predict(model, r.val, val)]
        return np.concatenate([logit_scaled_confidence(o).numpy() for o in outs]).astype(np.float32)

    def stored(self, label: str, i: int, make: Callable[[], nn.Module]) -> np.ndarray:
        path = self.dir / f"{label}-{i}.npy"
        if path.is_file():
            return np.load(path)
        values = self.phi(make())
        buf = io.BytesIO()
        np.save(buf, values)
        atomic_write(path, buf.getvalue())
        return values

    def has(self, label: str, i: int) -> bool:
        return (self.dir / f"{label}-{i}.npy").is_file()

    def original(self, i: int) -> nn.Module:
        """Member i's original: the benchmark's original for i = 0, else the same recipe from seed i."""
        p = self.prepared
        if i == 0:
            return p.original
        torch.manual_seed(i)
        model = p.new_model()
        r = p.request
        cached_training(model, "original", digest(original_key(p.scenario), "pool", i), self.cache,
                        lambda m, cb: train_model(m, r.train, torch.arange(len(r.train)), p.scenario.train_recipe, i,
                                                  r.augment, r.task, cb))
        return model

    def retrained(self, i: int) -> nn.Module:
        """A Retrain of the request with seed i (the benchmark's own Retrain when i is its seed)."""
        p = self.prepared
        request = replace(p.request, seed=i)
        key = digest(original_key(p.scenario), p.scenario.checkpoint, request.forget, i)
        model = p.new_model()
        cached_training(model, "retrain", key, self.cache, lambda m, cb: Retrain()(m, replace(request, callbacks=cb)))
        return model

    def column(self, label: str, make: Callable[[int], nn.Module], first: int = 0) -> np.ndarray:
        """[models, points]: φ of members first..first+models−1 of `label`."""
        return np.stack([self.stored(label, first + i, lambda i=i: make(first + i)) for i in range(self.models)])

    def unlearned(self, name: str, hparams: dict[str, Any]) -> np.ndarray:
        method = build(name, hparams)
        if name == "original":
            return self.column("original", self.original)
        if method == Retrain():
            return self.column("retrain", self.retrained, first=self.models)  # a second, independent pool

        def run(i: int) -> nn.Module:
            torch.manual_seed(i)
            return method(self.original(i), replace(self.prepared.request, seed=i))

        return self.column(f"{name}-{record_key(name, hparams, self.prepared.scenario, 0)}", run)

    def audit(self, name: str, hparams: dict[str, Any]) -> dict[str, float]:
        """U-LiRA on the forget set and KLOM (95th percentile) on each group, against the oracle pool."""
        oracle, unlearned = self.column("retrain", self.retrained), self.unlearned(name, hparams)
        bad = int((~np.isfinite(unlearned)).any(1).sum())
        if bad:  # a diverged member: the audit is not defined, and the record says so
            return {"diverged": bad}
        f = self.groups["forget"]
        u = ulira(unlearned[:, f], oracle[:, f])
        k = klom_summary(klom(unlearned, oracle), self.groups)
        return {"ULiRA": u["acc"], "ULiRA_auc": u["auc"], "ULiRA_p10": u["acc_p10"], "ULiRA_p90": u["acc_p90"],
                **{f"KLOM_{g}": v for g, v in k.items()}}


def missing(pool: Pool, jobs: list[tuple[str, dict[str, Any]]]) -> tuple[int, int, int]:
    """(originals, Retrains, unlearning runs) the pool still has to compute for `jobs`."""
    n = pool.models
    originals = sum(not pool.has("original", i) for i in range(1, n))
    retrains = sum(not pool.has("retrain", i) for i in range(n))
    runs = 0
    for name, hp in jobs:
        if build(name, hp) == Retrain():
            retrains += sum(not pool.has("retrain", n + i) for i in range(n))
        elif name != "original":
            runs += sum(not pool.has(f"{name}-{record_key(name, hp, pool.prepared.scenario, 0)}", i) for i in range(n))
    return originals, retrains, runs


def audit(grid: list[tuple[str, dict[str, Any], Scenario, int]], out: Path, models: int = 16,
          cache: Path | None = None, device: str | None = None) -> list[dict[str, Any]]:
    """Audit every (method, hyper-parameters) of the grid on each scenario's first seed, with a
    pool of `models` models per kind; append one record per method to `out` (resumable: finished
    audits are skipped, computed pool members are reused). Prints the cost before it starts."""
    if models < 3:
        raise ValueError(f"an audit pool needs at least 3 models per kind, got {models}")
    scenarios: dict[str, tuple[Scenario, int, list[tuple[str, dict[str, Any]]]]] = {}
    for name, hp, scenario, seed in grid:
        key = scenario.name
        if key not in scenarios:
            scenarios[key] = (scenario, seed, [])
        if seed == scenarios[key][1]:
            scenarios[key][2].append((name, hp))
    done = {r["key"] for r in read_records(out)}
    with stop_after_current_run() as stopping:
        for scenario, seed, jobs in scenarios.values():
            todo = [(n, hp) for n, hp in jobs if audit_key(n, hp, scenario, seed, models) not in done]
            if not todo or stopping.is_set():
                continue
            pool = Pool(prepare(scenario, seed, cache, device), models, cache)
            originals, retrains, runs = missing(pool, todo)
            one = pool.prepared.original_meta.get("seconds")
            cost = f"≈ {(originals + retrains) * one / 60:.0f} min of training" if one else "training time unknown"
            print(f"unlearnkit audit: {scenario.name} seed {seed}, {models} models per kind: {originals} originals and "
                  f"{retrains} Retrains to train (one took {one or float('nan'):.0f} s: {cost}), then {runs} unlearning "
                  f"runs for {len(todo)} methods", file=sys.stderr, flush=True)
            for name, hp in todo:
                if stopping.is_set():
                    break
                start = time.perf_counter()
                result = pool.audit(name, hp)
                append_record(out, {
                    "key": audit_key(name, hp, scenario, seed, models), "kind": "audit", "method": name,
                    "hparams": dataclasses.asdict(build(name, hp)), "scenario": scenario.name,
                    "scenario_spec": scenario.as_dict(), "seed": seed, "audit": result,
                    "pool": {"models": models, "bins": klom_bins(models),
                             "points": {g: len(v) for g, v in pool.groups.items()}},
                    "seconds": time.perf_counter() - start, "env": environment(torch.device(device or "cpu"))})
                summary = (f"{result['diverged']} of {models} models diverged (non-finite outputs), no audit"
                           if "diverged" in result else
                           f"U-LiRA {result['ULiRA']:.1f}%, KLOM forget {result['KLOM_forget']:.2f}")
                print(f"unlearnkit audit: {name}: {summary} ({time.perf_counter() - start:.0f} s)", file=sys.stderr,
                      flush=True)
    return read_records(out)


def audit_key(name: str, hparams: dict[str, Any], scenario: Scenario, seed: int, models: int) -> str:
    return digest("audit", record_key(name, hparams, scenario, seed), models)
