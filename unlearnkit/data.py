"""In-memory datasets and the fast batch access every loop in unlearnkit uses.

Any `torch.utils.data.Dataset` that returns `(x, y)` works; `ArrayDataset` (tensors held in
memory) is simply faster because a batch is one indexing operation instead of a Python loop.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch.utils.data.dataloader import default_collate

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


def subset(dataset: ArrayDataset, idx: Tensor, name: str = "") -> ArrayDataset:
    return dataset.select(idx, name)


def random_crop_flip(pad: int = 4) -> Augment:
    """CIFAR-style augmentation on a batch: zero-pad, crop back at a random offset, flip half."""

    def augment(x: Tensor, gen: torch.Generator) -> Tensor:
        n, _, h, w = x.shape
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
        out = padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]
        flip = torch.rand(n, generator=gen) < 0.5
        out[flip] = out[flip].flip(-1)
        return out

    return augment
