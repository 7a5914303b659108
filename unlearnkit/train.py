"""Ordinary supervised training: how the original model and the Retrain reference are made."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from unlearnkit import transforms as T
from unlearnkit.data import Augment, random_flip, take
from unlearnkit.distributed import shard
from unlearnkit.loop import fit
from unlearnkit.request import Batch
from unlearnkit.tasks import Classification, Task


@dataclass(frozen=True)
class Recipe:
    """A training recipe: SGD with momentum (or AdamW), cosine learning rate, crop/flip if the data has it.

    `label_smoothing` applies to classification only.
    """

    epochs: int = 30
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    label_smoothing: float = 0.0
    optimizer: str = "sgd"  # "sgd" (momentum, weight_decay), "adam" or "adamw" (weight_decay; momentum unused)
    augment: str = "default"  # "default" (the dataset's own, e.g. crop+flip for CIFAR), "flip" or "none"

    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"recipe {name} must be an integer >= {low}, got {value!r}")
        for name in ("lr", "momentum", "weight_decay", "label_smoothing"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"recipe {name} must be a finite number >= 0, got {value!r}")
        if self.lr == 0 or self.momentum >= 1 or self.label_smoothing >= 1:
            raise ValueError(f"recipe needs lr > 0, momentum < 1 and label_smoothing < 1, got {self}")
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise ValueError(f"optimizer must be 'sgd', 'adam' or 'adamw', got {self.optimizer!r}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")

    def augmentation(self, default: Augment | None) -> Augment | None:
        """The batch augmentation this recipe trains with, given the dataset's `default` one
        ("flip" and "none" apply to image data only; data without augmentation keeps none)."""
        if default is None or self.augment == "none":
            return None
        return default if self.augment == "default" else random_flip()


AUGMENTS = ("default", "flip", "none")


def reinitialize(model: nn.Module, seed: int) -> nn.Module:
    """Fresh weights in every layer that can reset itself (the start of Retrain). A parameter held by
    a module without `reset_parameters` (a raw `nn.Parameter`, e.g. a learned position embedding)
    cannot be re-drawn here: it keeps its trained value, and a warning names it (give that module a
    `reset_parameters` for a true Retrain)."""
    torch.manual_seed(seed)
    stale = []
    for name, m in model.named_modules():
        if hasattr(m, "reset_parameters") and m is not model:
            m.reset_parameters()  # type: ignore[operator]
        else:  # the model itself is not reset (only its layers): its own parameters are left as they are
            stale += [f"{name}.{p}" if name else p for p, _ in m.named_parameters(recurse=False)]
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
    if stale:
        warnings.warn(f"Retrain could not re-initialise {stale[:5]}{' …' if len(stale) > 5 else ''} (held by a "
                      "module without reset_parameters, or by the model itself): they start from their trained "
                      "values", stacklevel=2)
    return model


def epoch_batches(dataset: Dataset, idx: Tensor, batch_size: int, epochs: int, seed: int,
                  augment: Augment | None = None):
    """Shuffled `(x, y)` batches of `dataset[idx]` for `epochs` passes, deterministic in `seed`."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for chunk in idx[torch.randperm(len(idx), generator=gen)].split(batch_size):
            x, y = take(dataset, chunk)
            x = augment(x, gen) if augment else x
            rows = shard(torch.arange(len(chunk)))  # this process's part under torchrun (after augmenting the whole)
            yield Batch(x[rows], y[rows], chunk[rows])


def train_model(model: nn.Module, dataset: Dataset, idx: Tensor, recipe: Recipe, seed: int = 0,
                augment: Augment | None = None, task: Task | None = None, callbacks: Iterable[Any] = ()) -> nn.Module:
    """Train `model` on `dataset[idx]` with `recipe` for `task` (default classification).
    Mutates and returns `model`; `callbacks` (`loop.Callback`) are told of every update."""
    steps = recipe.epochs * -(-len(idx) // recipe.batch_size)
    lr = T.Cosine(recipe.lr, steps)
    tx = T.optimizer(recipe.optimizer, lr, recipe.momentum, recipe.weight_decay)
    task = task or Classification()

    def loss(b):
        if recipe.label_smoothing and isinstance(task, Classification):
            return F.cross_entropy(model(b.x), b.y, label_smoothing=recipe.label_smoothing)
        return task.loss(model, b.x, b.y)

    torch.manual_seed(seed)
    return fit(model, epoch_batches(dataset, idx, recipe.batch_size, recipe.epochs, seed, augment), loss, tx,
               callbacks=callbacks)
