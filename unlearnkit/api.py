"""The one-call Python API: any `nn.Module` and any `Dataset` of `(x, y)`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from unlearnkit.data import labels_of, take
from unlearnkit.method import Method, build, check_request
from unlearnkit.request import UnlearnRequest
from unlearnkit.tasks import Classification, Task


def make_request(model: nn.Module, train: Dataset, forget: Any, num_classes: int | None = None,
                 val: Dataset | None = None, seed: int = 0, **kwargs: Any) -> UnlearnRequest:
    """A validated request; also checks that the model's output size fits the labels."""
    labels = labels_of(train)
    if len(labels) and int(labels.min()) < 0:
        raise ValueError(f"labels must be class indices >= 0, got {int(labels.min())}")
    classes = num_classes if num_classes is not None else int(labels.max()) + 1
    if int(labels.max()) >= classes:
        raise ValueError(f"the data has labels up to {int(labels.max())} but num_classes is {classes}")
    request = UnlearnRequest(train, forget, classes, val=val, seed=seed, **kwargs)
    request.task.check_model(model, take(train, torch.tensor([0]))[0], classes)
    return request


def unlearn(model: nn.Module, train: Dataset, forget: Any, method: str | Method = "salun", *,
            val: Dataset | None = None, num_classes: int | None = None, seed: int = 0, task: Task | None = None,
            **hparams: Any) -> nn.Module:
    """A copy of `model` that has forgotten `train[forget]` by `method` (a registered name, with
    `hparams` as its fields, or a method object); `model` itself is left untouched.

    Example: `unlearn(net, trainset, [3, 17, 42], "ft", epochs=5)`.
    """
    if isinstance(method, str):
        method = build(method, hparams)
    elif hparams:
        raise ValueError("give hyper-parameters as the method object's fields, not as keyword arguments")
    request = make_request(model, train, forget, num_classes, val, seed, task=task or Classification())
    check_request(method, request)
    torch.manual_seed(seed)
    return method(model, request)
