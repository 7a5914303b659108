"""In-memory datasets, the fast batch access every loop in unlearnkit uses, and `load_data`.

Any `torch.utils.data.Dataset` that returns `(x, y)` works; `ArrayDataset` (tensors held in
memory) is simply faster because a batch is one indexing operation instead of a Python loop.
"""

from __future__ import annotations

import os
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch.utils.data.dataloader import default_collate

from unlearnkit.checkpoint import digest
from unlearnkit.registry import DATASETS, FORMATS

Augment = Callable[[Tensor, torch.Generator], Tensor]


class ArrayDataset(Dataset):
    """A dataset held as two tensors: inputs `x` (n, ...) and integer labels `y` (n,).

    `groups` optionally names where each sample came from (a review's source, a user id); the
    forget spec `group:NAME` selects by it.
    """

    def __init__(self, x: Tensor, y: Tensor, name: str = "", groups: Sequence[str] | None = None) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        if groups is not None and len(groups) != len(y):
            raise ValueError(f"groups has {len(groups)} entries but y has {len(y)}")
        self.x, self.y, self.name = x, y.long(), name
        self.groups = None if groups is None else np.asarray(groups, dtype=str)
        self.resident: Tensor | None = None  # a copy of x on an accelerator (`preload`); labels stay on the CPU

    def preload(self, device: torch.device | str) -> "ArrayDataset":
        """Keep a copy of the inputs on `device`, so batches are cut there instead of being copied
        over each time (the labels, and every index, stay on the CPU). Returns self."""
        if torch.device(device).type != "cpu" and (self.resident is None or self.resident.device != torch.device(device)):
            self.resident = self.x.to(device)
        return self

    def select(self, idx: Tensor, name: str = "") -> "ArrayDataset":
        """The samples at positions `idx` (groups kept)."""
        groups = None if self.groups is None else self.groups[idx.numpy()]
        return ArrayDataset(self.x[idx], self.y[idx], name or self.name, groups)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.x[i], self.y[i]

    @property
    def targets(self) -> Tensor:
        return self.y


def take(dataset: Dataset, idx: Tensor) -> tuple[Tensor, Tensor]:
    """The inputs and labels of `dataset` at positions `idx`, as two batched tensors."""
    if isinstance(dataset, ArrayDataset):
        if dataset.resident is not None:
            return dataset.resident[idx.to(dataset.resident.device)], dataset.y[idx]
        return dataset.x[idx], dataset.y[idx]
    x, y = default_collate([dataset[int(i)] for i in idx])
    return x, torch.as_tensor(y).long()


def labels_of(dataset: Dataset) -> Tensor:
    """All labels of `dataset` as a LongTensor, read without touching the inputs when possible."""
    for attr in ("targets", "labels", "y"):
        labels = getattr(dataset, attr, None)
        if labels is not None and not callable(labels):
            return torch.as_tensor(labels).long()
    return torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))]).long()  # type: ignore[arg-type]


def fingerprint(dataset: Dataset) -> str:
    """A short digest that tells datasets apart: the length, every label and a few inputs (cheap:
    it never reads the whole dataset)."""
    labels = labels_of(dataset)
    probe = torch.linspace(0, max(len(labels) - 1, 0), 8).long().unique()
    return digest(len(labels), labels, take(dataset, probe)[0] if len(labels) else [])


def random_crop_flip(pad: int = 4) -> Augment:
    """CIFAR-style augmentation on a batch: zero-pad, crop back at a random offset, flip half."""

    def augment(x: Tensor, gen: torch.Generator) -> Tensor:
        n, _, h, w = x.shape
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)  # drawn on the CPU generator
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
        ar = partial(torch.arange, device=x.device)
        rows = (dy[:, None] + ar(h))[:, None, :, None]
        cols = (dx[:, None] + ar(w))[:, None, None, :]
        out = padded[ar(n)[:, None, None, None], ar(x.shape[1])[None, :, None, None], rows, cols]
        flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        out[flip] = out[flip].flip(-1)
        return out

    return augment


def random_flip() -> Augment:
    """Horizontal flip of half the batch (no crop): the weakest image augmentation."""

    def augment(x: Tensor, gen: torch.Generator) -> Tensor:
        flip = (torch.rand(len(x), generator=gen) < 0.5).to(x.device)
        out = x.clone()
        out[flip] = out[flip].flip(-1)
        return out

    return augment


class DatasetNotFound(FileNotFoundError):
    pass


@dataclass(frozen=True)
class Data:
    """A train/test pair with what models need to know about it."""

    name: str
    train: ArrayDataset
    test: ArrayDataset
    num_classes: int
    augment: Augment | None = None
    model_kwargs: dict = field(default_factory=dict)  # what a model needs from the data (e.g. vocab_size)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])


def split_indices(n: int, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.RandomState(seed).permutation(n)
    k = int(round(n * test_fraction))
    return np.sort(perm[k:]), np.sort(perm[:k])


def find_file(what: str, candidates: list[Path], hint: str) -> Path:
    for c in candidates:
        if c.exists():
            return c
    looked = ", ".join(str(c) for c in candidates)
    raise DatasetNotFound(f"{what} not found (looked in: {looked}). {hint}")


def env_paths(*names: str) -> list[Path]:
    return [Path(os.environ[n]) for n in names if os.environ.get(n)]


def holdout(data: ArrayDataset, fraction: float, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """Split a training set into (train, val), stratified by nothing but a fixed seed."""
    tr, va = split_indices(len(data), fraction, seed)
    t, v = torch.as_tensor(tr), torch.as_tensor(va)
    return data.select(t), data.select(v)


def load_data(spec: str) -> Data:
    """A built-in name (`digits`, `fashion-mnist`, ...) or `FORMAT:PATH` for a user's own data."""
    fmt, sep, path = spec.partition(":")
    if sep and fmt in FORMATS:
        return FORMATS[fmt](Path(path).expanduser())
    return DATASETS[spec]()
