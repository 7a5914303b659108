"""A picture of what each model generates: rows = classes, one panel per model (before / after / Retrain)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from unlearnkit.checkpoint import atomic_write
from unlearnkit.data import labels_of, take
from unlearnkit.generation.task import Generation


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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(Path(path), buf.getvalue())
    return Path(path)
