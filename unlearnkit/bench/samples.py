"""The sample grid of a generation benchmark: what the original, Retrain and every method of a
grid generate for each class, from the same noise (one seed; methods re-run from the cache's
original, so no model has to be stored)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from unlearnkit.bench.report import save_figure
from unlearnkit.bench.runner import reference
from unlearnkit.bench.scenarios import Scenario, prepare
from unlearnkit.data import labels_of, take
from unlearnkit.generation.task import Generation
from unlearnkit.method import METHODS, build


def sample_grid(jobs: list[tuple[str, dict[str, Any], Scenario, int]], path: Path, seed: int = 0,
                per_class: int = 6, cache: Path | None = None) -> Path:
    """Grid for the first generation scenario in `jobs` at `seed`: original, Retrain, then each
    (method, hyper-parameters) job of that scenario and seed."""
    mine = [j for j in jobs if j[2].task == "generation" and j[3] == seed]
    if not mine:
        raise ValueError(f"the grid has no generation scenario with seed {seed}")
    scenario = mine[0][2]
    prepared = prepare(scenario, seed, cache)
    models = {"original": prepared.original, "retrain": reference(prepared, cache)[0]}
    runs = [(name, hparams) for name, hparams, sc, _ in mine
            if sc == scenario and METHODS.meta(name)["family"] != "reference"]
    for name, hparams in runs:  # labelled by the hyper-parameters that differ between runs of a method
        varying = {k for n, h in runs if n == name for k in h if h[k] != hparams.get(k)}
        model = copy.deepcopy(prepared.original)
        torch.manual_seed(seed)
        label = name + "".join(f" {k}={hparams[k]}" for k in sorted(varying))
        models[label] = build(name, hparams)(model, prepared.request)
    request = prepared.request
    return save_grid(models, request.task, request.train, path, range(request.num_classes), per_class,
                     seed, marked=request.classes)


def tile(images: Tensor, rows: int, lo: float, hi: float) -> Tensor:
    """(rows·cols, C, H, W) -> one (H·rows + gaps, W·cols + gaps, C) image, [lo, hi] mapped to [0, 1]."""
    n, c, h, w = images.shape
    cols = n // rows
    x = ((images - lo) / max(hi - lo, 1e-8)).clamp(0, 1)
    x = torch.nn.functional.pad(x, (0, 1, 0, 1), value=1.0)  # white gap right and below each image
    x = x.view(rows, cols, c, h + 1, w + 1).permute(0, 3, 1, 4, 2).reshape(rows * (h + 1), cols * (w + 1), c)
    return x[:-1, :-1]


def save_grid(models: Mapping[str, nn.Module], task: Generation, train: Dataset, path: Path,
              classes: Sequence[int], per_class: int = 8, seed: int = 0,
              marked: Sequence[int] = ()) -> Path:
    """Sample `per_class` images of each class in `classes` from every model (same noise for all
    models) and save them side by side as a PNG at `path`, atomically. Rows of `marked` classes
    (e.g. the forgotten ones) are labelled with a '*'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = torch.tensor(list(classes)).repeat_interleave(per_class)
    real, _ = take(train, torch.arange(min(len(labels_of(train)), 4096)))
    lo, hi = float(real.min()), float(real.max())  # one grey scale for every panel
    fig, axes = plt.subplots(1, len(models), figsize=(1.2 + 0.45 * per_class * len(models), 0.5 * len(classes) + 0.8),
                             squeeze=False)
    for ax, (name, model) in zip(axes[0], models.items()):
        img = tile(task.generate(model, labels, train, seed), len(classes), lo, hi)
        h = img.shape[0] / len(classes)
        ax.imshow(img.squeeze(-1).numpy() if img.shape[-1] == 1 else img.numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([(i + 0.5) * h for i in range(len(classes))],
                      [f"{c}*" if c in marked else str(c) for c in classes])
    fig.suptitle(f"{task.sampler}, {task.steps} steps, guidance {task.guidance}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, Path(path), dpi=100)
