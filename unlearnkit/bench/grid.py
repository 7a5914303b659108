"""Benchmark grids (TOML, see benchmarks/*.toml) read into jobs: (method, fields, scenario, seed).
`bench`, `tune`, `audit` and `samples` all take their work from here, and `benchmarks/compose.py`
reads which records a grid's tables use (`grid_keys`)."""

from __future__ import annotations

import dataclasses
import tomllib
from itertools import product
from pathlib import Path
from typing import Any

from unlearnkit.bench.runner import record_key, tuned_copy_key
from unlearnkit.bench.scenarios import Scenario
from unlearnkit.bench.tune import tuned_search
from unlearnkit.method import METHODS
from unlearnkit.train import Recipe

Job = tuple[str, dict[str, Any], Scenario, int]


def grid_jobs(path: Path) -> list[Job]:
    """methods × hyper-parameter lists × scenarios × seeds from a TOML grid (see benchmarks/*.toml).

    `[defaults]` (top level, or inside a scenario) sets a field for every method that has it;
    `[methods.NAME]` sets or sweeps (lists) a method's fields; a scenario's `[scenario.methods.NAME]`
    (or `."NAME@class"`, `."NAME@random"` for one kind of forget rule) overrides for that scenario.
    A table with `skip = true` leaves the method out of that scenario."""
    if not path.is_file():
        raise FileNotFoundError(f"grid file not found: {path}")
    grid = tomllib.loads(path.read_text())
    seeds = grid.get("seeds", [0])
    jobs = []
    for sc in grid.get("scenario", []):
        sc = dict(sc)
        overrides = sc.pop("methods", {})
        sc_defaults = sc.pop("defaults", {})
        if "recipe" in sc:
            sc["recipe"] = Recipe(**sc["recipe"])
        forgets = sc.pop("forget", ["random:0.1"])
        for forget in [forgets] if isinstance(forgets, str) else forgets:
            scenario = Scenario(forget=forget, **sc)
            for name, hp in grid.get("methods", {}).items():
                fields = {f.name for f in dataclasses.fields(METHODS[name])}
                shared = {k: v for k, v in {**grid.get("defaults", {}), **sc_defaults}.items()
                          if k in fields and name != "retrain"}  # the reference keeps the original's recipe
                hp = {**shared, **hp, **overrides.get(name, {}), **overrides.get(f"{name}@{forget.split(':')[0]}", {})}
                if hp.pop("skip", False):
                    continue
                keys = list(hp)
                for values in product(*[hp[k] if isinstance(hp[k], list) else [hp[k]] for k in keys]):
                    for seed in seeds:
                        jobs.append((name, dict(zip(keys, values)), scenario, seed))
    return jobs


def tuned_jobs(path: Path, jobs: list[Job]
               ) -> tuple[list[Job], dict[str, dict[str, Any]]]:
    """The grid's jobs plus, when the grid names a `tuned` file (relative to the grid), one tuned
    variant of every method and scenario that file has a search for (the grid's fields, the
    searched ones replaced by the best values found); and, per tuned job's record key, what its
    record gains: {"variant": "tuned", "tuning": {trials, seconds, ratio to the validation Retrain}}.
    Where the best values are a grid job's own (the defaults won), no job is added: that job's
    record is copied into the tuned row (`runner.tuned_copy_key`, the entry gains "copy": True)."""
    name = tomllib.loads(path.read_text()).get("tuned")
    if not name:
        return jobs, {}
    own = {record_key(*job) for job in jobs}
    extra, variants, seen = [], {}, set()
    for method, hp, scenario, seed in jobs:
        if (method, scenario.name) in seen:
            continue
        seen.add((method, scenario.name))
        search = tuned_search(path.parent / name, method, scenario)
        if search is None:
            continue
        tuning = {"trials": search["trials"], "seconds": search["seconds"],
                  "rte": search["seconds"] / search["retrain_seconds"], "objective": search["objective"]}
        for s in sorted({j[3] for j in jobs if j[2] == scenario}):
            job = (method, {**hp, **search["best"]}, scenario, s)
            key = record_key(*job)
            variants[key] = {"variant": "tuned", "tuning": tuning, **({"copy": True} if key in own else {})}
            if key not in own:
                extra.append(job)
    return jobs + extra, variants


def grid_keys(path: Path) -> set[str]:
    """The record keys a grid's tables read: its jobs', its tuned jobs' and their copies'."""
    jobs, variants = tuned_jobs(path, grid_jobs(path))
    return {record_key(*job) for job in jobs} | {tuned_copy_key(k) for k, v in variants.items() if v.get("copy")}


def check_names(flag: str, given: set[str], known: set[str]) -> None:
    """ValueError naming what `flag` gave that the grid does not have."""
    unknown = sorted(given - known)
    if unknown:
        raise ValueError(f"{flag}: not in the grid: {', '.join(unknown)} (it has {', '.join(sorted(known))})")


def grid_selection(grid: Path, methods: str, only: str) -> tuple[list[Job],
                                                                set[str]]:
    """The grid's jobs of the forget rules in `only` (comma-separated; empty: all) and the methods
    named in `methods` (a set; empty: all); a name the grid does not have is refused."""
    chosen = {m for m in methods.split(",") if m}
    rules = {r for r in only.split(",") if r}
    all_jobs = grid_jobs(grid)
    check_names("--methods", chosen, {j[0] for j in all_jobs})
    check_names("--only", rules, {j[2].forget for j in all_jobs})
    return [j for j in all_jobs if not rules or j[2].forget in rules], chosen
