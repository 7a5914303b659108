"""What a method is allowed to see: the training data, the ids to forget, and batch iterators.

A method never sees the test set. `UnlearnRequest` validates the ids once, so every method can
trust them, and hands out forget / retain batches that are deterministic under `seed`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from unlearnkit.data import Augment, labels_of, take
from unlearnkit.distributed import shard
from unlearnkit.loop import notify
from unlearnkit.tasks import Classification, Forward, Task

Split = Literal["forget", "retain", "all"]  # "all": forget and retain together (never `excluded`)


class RequestError(ValueError):
    """A deletion request that cannot be honoured as written (bad ids, bad spec, ...)."""


@dataclass(frozen=True)
class Batch:
    x: Tensor
    y: Tensor
    idx: Tensor  # positions in the training set
    target: Tensor | None = None  # labels to map the samples to (random-label methods), if any
    whole: int | None = None  # under torchrun: the size of the whole batch this is one process's shard of

    def to(self, device: torch.device | str) -> "Batch":
        target = None if self.target is None else self.target.to(device)
        return Batch(self.x.to(device, non_blocking=True), self.y.to(device), self.idx, target, self.whole)

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Pair:
    """A forget batch and a retain batch drawn together."""

    forget: Batch
    retain: Batch

    def to(self, device: torch.device | str) -> "Pair":
        return Pair(self.forget.to(device), self.retain.to(device))


@dataclass(frozen=True, eq=False)
class UnlearnRequest:
    """A trained model's training data and the part of it to forget.

    Args:
        train: the dataset the model was trained on (any Dataset of `(x, y)`).
        forget: LongTensor of positions in `train` to forget.
        num_classes: the model's number of outputs.
        val: optional held-out data (never the test set), for methods with a stopping rule.
        excluded: positions forgotten by earlier requests; neither forget nor retain.
        augment: batch augmentation used when a method asks for augmented batches.
        seed: seeds every batch order this request hands out.
        recipe: how the original model was trained (Retrain reuses it), if known.
        classes: the classes forgotten whole, when the request is class-wise.
        task: what the model does, and so its loss (default: classification).
        callbacks: observers told of every batch handed out, every update and every stopping
            check (`loop.Callback`; benchmarks time and count with them). Methods pass them on.
    """

    train: Dataset
    forget: Tensor
    num_classes: int
    val: Dataset | None = None
    excluded: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    augment: Augment | None = None
    seed: int = 0
    recipe: Any = None
    classes: tuple[int, ...] = ()
    task: Task = field(default_factory=Classification)
    callbacks: tuple = ()

    def __post_init__(self) -> None:
        n = len(self.train)  # type: ignore[arg-type]
        forget = as_ids(self.forget).long()
        object.__setattr__(self, "forget", forget)
        object.__setattr__(self, "excluded", torch.as_tensor(self.excluded).long())
        bad = forget[(forget < 0) | (forget >= n)]
        if len(bad):
            raise RequestError(f"forget ids out of range [0, {n}): {bad[:5].tolist()}")
        if len(forget.unique()) != len(forget):
            values, counts = torch.unique(forget, return_counts=True)
            raise RequestError(f"forget ids appear more than once (e.g. {values[counts > 1][:5].tolist()})")
        ex = self.excluded
        if len(ex) and (ex.min() < 0 or ex.max() >= n or len(ex.unique()) != len(ex)):
            raise RequestError(f"excluded ids must be distinct and in [0, {n})")
        if torch.isin(forget, self.excluded).any():
            raise RequestError("some forget ids were already forgotten by an earlier request")
        if len(forget) + len(self.excluded) >= n:
            raise RequestError("the forget set covers the whole training set: nothing would remain")
        if self.num_classes < 2:
            raise RequestError(f"num_classes must be at least 2, got {self.num_classes}")

    @cached_property
    def labels(self) -> Tensor:
        return labels_of(self.train)

    @cached_property
    def retain(self) -> Tensor:
        """Positions that stay: everything not forgotten now or earlier, in stored order."""
        keep = torch.ones(len(self.labels), dtype=torch.bool)
        keep[self.forget] = False
        keep[self.excluded] = False
        return keep.nonzero().flatten()

    def indices(self, split: Split) -> Tensor:
        if split not in ("forget", "retain", "all"):
            raise RequestError(f"split must be 'forget', 'retain' or 'all', got {split!r}")
        if split == "all":
            return torch.cat([self.forget, self.retain]).sort().values
        return self.forget if split == "forget" else self.retain

    def loss(self, forward: Forward, b: Batch, target: Tensor | None = None, reduction: str = "mean") -> Tensor:
        """The task's loss of `forward` (the model, or the model at other parameters) on `b`; with a
        `target` (default `b.target`), the loss that maps `b`'s samples to those labels instead
        (classification: cross-entropy against `target`; generation: label `b.y` made to act like
        `target`)."""
        return self.task.loss(forward, b.x, b.y, reduction, target if target is not None else b.target)

    def then(self, forget: Tensor) -> "UnlearnRequest":
        """The next request in a sequence: earlier forget ids become excluded."""
        excluded = torch.cat([self.excluded, self.forget])
        return replace(self, forget=forget, excluded=excluded, classes=())  # validated as a new request's ids

    def generator(self, salt: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + salt)

    def split_generator(self, split: Split, salt: int = 0) -> torch.Generator:
        """The generator `batches(split, ..., salt=salt)` shuffles and augments with (no two
        (salt, split) pairs share one)."""
        return self.generator(2 * salt + {"retain": 0, "forget": 1, "all": 2 * 10**9}[split])

    def batch(self, idx: Tensor, augment: bool = False, gen: torch.Generator | None = None) -> Batch:
        """The samples at `idx`, augmented if asked; under torchrun this process's shard of them
        (the whole batch is augmented first, so every process draws what one process would)."""
        x, y = take(self.train, idx)
        if augment and self.augment is not None:
            x = self.augment(x, gen if gen is not None else self.generator(7))
        notify(self.callbacks, "on_batch", len(idx))  # the whole batch, on every process
        rows = shard(torch.arange(len(idx)))
        if len(rows) == len(idx):
            return Batch(x, y, idx)
        return Batch(x[rows], y[rows], idx[rows], whole=len(idx))

    def batches(self, split: Split, batch_size: int, epochs: int = 1, shuffle: bool = True,
                augment: bool = True, salt: int = 0) -> Iterator[Batch]:
        """`epochs` passes over one split in (shuffled) batches."""
        idx = self.indices(split)
        gen = self.split_generator(split, salt)
        for _ in range(epochs):
            order = idx[torch.randperm(len(idx), generator=gen)] if shuffle else idx
            for chunk in order.split(batch_size):
                yield self.batch(chunk, augment, gen)

    def stream(self, split: Split, batch_size: int, augment: bool = True, salt: int = 0) -> Iterator[Batch]:
        """An endless stream of shuffled batches from one split (reshuffled every pass)."""
        while True:
            yield from self.batches(split, batch_size, 1, True, augment, salt)
            salt += 1_000

    def pairs(self, batch_size: int, epochs: int = 1, anchor: Split = "forget",
              augment: bool = True, other_batch_size: int | None = None) -> Iterator[Pair]:
        """Each `anchor` batch (for `epochs` passes) with a batch from the other split's stream."""
        other: Split = "retain" if anchor == "forget" else "forget"
        partner = self.stream(other, other_batch_size or batch_size, augment, salt=5)
        for b in self.batches(anchor, batch_size, epochs, True, augment, salt=3):
            p = next(partner)
            yield Pair(b, p) if anchor == "forget" else Pair(p, b)


def as_ids(forget: Any) -> Tensor:
    """Forget ids as a 1-D LongTensor: a tensor, array or sequence of integers, never empty,
    never bools or floats (1.5 is not an id, nor is True)."""
    if isinstance(forget, Tensor) or hasattr(forget, "dtype"):
        ids = torch.as_tensor(forget)
    else:
        values = list(forget)
        if not values:
            raise RequestError("the forget set is empty: nothing to unlearn")
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in values):
            raise RequestError(f"forget ids must be integers, got {[v for v in values if not isinstance(v, int)][:3]}")
        ids = torch.as_tensor(values)
    if ids.dim() != 1:
        raise RequestError(f"forget ids must be a 1-D list of sample ids, got shape {tuple(ids.shape)}")
    if len(ids) == 0:
        raise RequestError("the forget set is empty: nothing to unlearn")
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8) or ids.dtype == torch.bool:
        raise RequestError(f"forget ids must be integers, got a tensor of {ids.dtype}")
    return ids


def parse_forget(spec: str, labels: Tensor, seed: int = 0,
                 groups: Sequence[str] | None = None) -> tuple[Tensor, tuple[int, ...]]:
    """Forget ids from a spec: `random:0.1` (a fraction), `random:200` (a count), `class:3`,
    `class:3,5`, `subclass:3:0.5`, `ids:FILE`, or `group:NAME` (every sample whose group, e.g. a
    review's source, is NAME).

    Returns the ids and the classes forgotten whole (empty unless the spec is class-wise).
    An ids file holds integers separated by spaces, commas or newlines, or a JSON list.
    """
    kind, _, arg = spec.partition(":")
    gen = torch.Generator().manual_seed(seed)
    classes = sorted(set(labels.tolist()))
    try:
        if kind == "random":
            if arg.isdigit():  # a count: random:200
                n = int(arg)
                if not 0 < n < len(labels):
                    raise RequestError(f"random count must be in [1, {len(labels)}), got {n}")
                return torch.randperm(len(labels), generator=gen)[:n].sort().values, ()
            frac = float(arg)
            if not 0 < frac < 1:
                raise RequestError(f"random fraction must be in (0, 1), got {arg}")
            n = max(1, round(frac * len(labels)))
            return torch.randperm(len(labels), generator=gen)[:n].sort().values, ()
        if kind == "class":
            wanted = tuple(int(c) for c in arg.split(","))
            _check_classes(wanted, classes)
            return torch.isin(labels, torch.tensor(wanted)).nonzero().flatten(), wanted
        if kind == "subclass":
            c, _, frac_s = arg.partition(":")
            _check_classes((int(c),), classes)
            frac = float(frac_s)
            if not 0 < frac <= 1:
                raise RequestError(f"subclass fraction must be in (0, 1], got {frac_s}")
            members = (labels == int(c)).nonzero().flatten()
            n = max(1, round(frac * len(members)))
            return members[torch.randperm(len(members), generator=gen)[:n]].sort().values, ()
        if kind in ("ids", "file"):
            return read_ids(Path(arg)), ()
        if kind == "group":
            return _group_ids(arg, groups), ()
    except ValueError as e:
        if isinstance(e, RequestError):
            raise
        raise RequestError(f"cannot parse forget spec {spec!r}: {e}") from None
    raise RequestError(
        f"unknown forget spec {spec!r}; use random:F, class:C[,C], subclass:C:F, ids:FILE or group:NAME")


def _group_ids(name: str, groups: Sequence[str] | None) -> Tensor:
    if groups is None:
        raise RequestError("forget spec group:NAME needs a dataset with groups (e.g. a review's source)")
    known = sorted(set(str(g) for g in groups))
    if name not in known:
        raise RequestError(f"unknown group {name!r}; the dataset has groups {known}")
    return torch.as_tensor((np.asarray(groups) == name).nonzero()[0], dtype=torch.long)


def _check_classes(wanted: tuple[int, ...], known: list[int]) -> None:
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise RequestError(f"unknown class {unknown}; the dataset has classes {known}")


def read_ids(path: Path) -> Tensor:
    """Integer ids from a file: separated by spaces, commas or newlines, or a JSON list. Anything
    else (1.5, true, "3", nested lists) is refused, never rounded."""
    if path.is_dir():
        raise RequestError(f"ids file {path} is a directory")
    if not path.is_file():
        raise RequestError(f"ids file not found: {path}")
    text = path.read_text().strip()
    try:
        values = json.loads(text) if text.startswith("[") else [int(t) for t in text.replace(",", " ").split()]
    except ValueError as e:
        raise RequestError(f"ids file {path} must hold integers: {e}") from None
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int)]
    if bad:
        raise RequestError(f"ids file {path} must hold integers, found {bad[:3]}")
    return torch.tensor(values, dtype=torch.long)
