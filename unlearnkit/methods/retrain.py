"""Retrain: the gold standard of exact unlearning. Fresh initialisation, trained on the retain set only."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import ClassVar

from torch import nn

from unlearnkit.tasks import LOSS_BASED

from unlearnkit.registry import METHODS
from unlearnkit.request import UnlearnRequest
from unlearnkit.train import Recipe, reinitialize, train_model


@METHODS.register("retrain")
@dataclass(frozen=True)
class Retrain:
    """Re-initialise the model and train it on the retain set with the original recipe.

    Every field left at None is taken from `request.recipe` (how the original was trained), or
    from `Recipe()` when the request does not say.

    Args:
        epochs: training epochs.
        lr: peak SGD learning rate (cosine schedule).
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        batch_size: batch size.
    """

    epochs: int | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    batch_size: int | None = None
    tasks: ClassVar = LOSS_BASED

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        base = request.recipe if isinstance(request.recipe, Recipe) else Recipe()
        overrides = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        recipe = replace(base, **overrides)
        reinitialize(model, request.seed)
        return train_model(model, request.train, request.retain, recipe, request.seed, request.augment, request.task)
