"""Tiny scenarios, trained once per test session on the CPU in seconds."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from unlearnkit.data import ArrayDataset
from unlearnkit.data import holdout
from unlearnkit.datasets import digits
from unlearnkit.models import build_model
from unlearnkit.request import UnlearnRequest, parse_forget
from unlearnkit.train import Recipe, train_model

torch.set_num_threads(1)  # tiny models: one thread is as fast, and immune to OpenMP stalls when the other core is busy
os.environ.setdefault("UNLEARNKIT_MODELS", "")  # hermetic: no committed model store unless a test asks for one


@dataclass
class Toy:
    model: nn.Module
    request: UnlearnRequest
    test: ArrayDataset

    def fresh(self) -> nn.Module:
        return copy.deepcopy(self.model)


def blobs(n: int, seed: int, classes: int = 4, dim: int = 8) -> ArrayDataset:
    """Overlapping Gaussian blobs: learnable, but not perfectly, so forgetting is measurable."""
    gen = torch.Generator().manual_seed(1234)
    centres = torch.randn(classes, dim, generator=gen) * 1.5
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    return ArrayDataset(centres[y] + torch.randn(n, dim, generator=g), y, "blobs")


def make_toy(model: nn.Module, train: ArrayDataset, test: ArrayDataset, val: ArrayDataset, classes: int,
             recipe: Recipe, forget: str = "random:0.1") -> Toy:
    torch.manual_seed(0)
    train_model(model, train, torch.arange(len(train)), recipe, seed=0)
    ids, forgotten = parse_forget(forget, train.y, seed=0)
    return Toy(model, UnlearnRequest(train, ids, classes, val=val, recipe=recipe, classes=forgotten), test)


@pytest.fixture(scope="session")
def toy() -> Toy:
    """A 2-hidden-layer MLP on 4-class blobs; 10% random forgetting."""
    recipe = Recipe(epochs=20, lr=0.05, batch_size=32)
    torch.manual_seed(0)
    return make_toy(build_model("mlp", (8,), 4, width=32), blobs(400, 1), blobs(200, 2), blobs(100, 3), 4, recipe)


@pytest.fixture(scope="session")
def toy_cnn() -> Toy:
    """A small CNN with BatchNorm on scikit-learn's 8x8 digits; class 3 forgotten."""
    data = digits()
    train, val = holdout(data.train, 0.1)
    recipe = Recipe(epochs=8, lr=0.05, batch_size=64)
    torch.manual_seed(0)
    return make_toy(build_model("cnn", (1, 8, 8), 10, width=8), train, data.test, val, 10, recipe, "class:3")
