"""The sample grid of a generation benchmark: what the original, Retrain and every method of a
grid generate for each class, from the same noise (one seed; methods re-run from the cache's
original, so no model has to be stored)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from unlearnkit.bench.runner import method_from, reference
from unlearnkit.bench.scenarios import Scenario, prepare


def sample_grid(jobs: list[tuple[str, dict[str, Any], Scenario, int]], path: Path, seed: int = 0,
                per_class: int = 6, cache: Path | None = None) -> Path:
    """Grid for the first generation scenario in `jobs` at `seed`: original, Retrain, then each
    (method, hyper-parameters) job of that scenario and seed."""
    from unlearnkit.generation.grid import save_grid

    mine = [j for j in jobs if j[2].task == "generation" and j[3] == seed]
    if not mine:
        raise ValueError(f"the grid has no generation scenario with seed {seed}")
    scenario = mine[0][2]
    prepared = prepare(scenario, seed, cache)
    models = {"original": prepared.original, "retrain": reference(prepared, cache)[0]}
    runs = [(name, hparams) for name, hparams, sc, _ in mine if sc == scenario and name not in ("retrain", "original")]
    for name, hparams in runs:  # labelled by the hyper-parameters that differ between runs of a method
        varying = {k for n, h in runs if n == name for k in h if h[k] != hparams.get(k)}
        model = copy.deepcopy(prepared.original)
        torch.manual_seed(seed)
        label = name + "".join(f" {k}={hparams[k]}" for k in sorted(varying))
        models[label] = method_from(name, hparams)(model, prepared.request)
    request = prepared.request
    return save_grid(models, request.task, request.train, path, range(request.num_classes), per_class,
                     seed, marked=request.classes)
