"""The two reference rows of every table: Retrain (the gold standard of exact unlearning) and
Original (doing nothing: how far each method moved from where it started)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields, replace

from torch import nn

from unlearnkit.method import METHODS, hp
from unlearnkit.request import UnlearnRequest
from unlearnkit.tasks import LOSS_BASED
from unlearnkit.train import Recipe, reinitialize, train_model


@METHODS.register("retrain", family="reference", paper="exact unlearning: training again without the forget set",
                  tasks=LOSS_BASED, defaults="the original's own recipe, on the retain set, from a fresh initialisation")
@dataclass(frozen=True)
class Retrain:
    """Re-initialise the model and train it on the retain set with the original recipe.

    Every field left at None is taken from `request.recipe` (how the original was trained), or
    from `Recipe()` when the request does not say.

    Args:
        epochs: training epochs.
        lr: peak learning rate (cosine schedule).
        momentum: SGD momentum.
        weight_decay: weight decay.
        batch_size: batch size.
    """

    epochs: int | None = hp(None, ge=1)
    lr: float | None = hp(None, gt=0)
    momentum: float | None = hp(None, ge=0, lt=1)
    weight_decay: float | None = hp(None, ge=0)
    batch_size: int | None = hp(None, ge=1)

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        base = request.recipe if isinstance(request.recipe, Recipe) else Recipe()
        overrides = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        recipe = replace(base, **overrides)
        model = reinitialize(copy.deepcopy(model), request.seed)
        return train_model(model, request.train, request.retain, recipe, request.seed, request.augment, request.task,
                           callbacks=request.callbacks)


@METHODS.register("original", family="reference", paper="no unlearning: the trained model as it stands",
                  tasks=LOSS_BASED, defaults="no hyper-parameters")
@dataclass(frozen=True)
class Original:
    """Return a copy of the model unchanged (a reference row: how much each method moved the metrics).

    Args:
        (none): this method has no hyper-parameters.
    """

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        return copy.deepcopy(model)
