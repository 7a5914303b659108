"""The method contract (`unlearnkit.testing.check_method`): every registered method passes it, and
five broken methods each fail it at the clause they break."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from unlearnkit import transforms as T
from unlearnkit.loop import fit
from unlearnkit.method import METHODS, hp, validated
from unlearnkit.request import UnlearnRequest
from unlearnkit.testing import ContractError, check_method


@pytest.mark.parametrize("name", METHODS.ordered())
def test_every_registered_method_keeps_the_contract(name):
    # The `original` reference row returns the model unchanged by design: it is held to every
    # clause but "forgets" (it forgets nothing, and is in the tables to show how far the others moved).
    skip = ("forgets",) if name == "original" else ()
    check_method(METHODS[name], toys=("mlp", "cnn"), skip=skip)
    meta = METHODS.meta(name)
    assert meta["defaults"].strip(), f"{name}: say where its default values come from (register(defaults=...))"
    assert meta["family"] == "reference" or meta["paper"].strip(), f"{name}: cite its paper"


def fine_tune(model: nn.Module, request: UnlearnRequest, lr: float) -> nn.Module:
    tx = T.sgd(lr, 0.9)
    return fit(model, request.batches("retain", 32, 3), lambda b: request.loss(model, b), tx)


@dataclass(frozen=True)
class ZeroesWeights:
    """Sets every weight to zero: it "forgets" everything, and is no longer a model.

    Args:
        (none): no hyper-parameters.
    """

    def __call__(self, model, request):
        model = copy.deepcopy(model)
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
        return model


@validated
@dataclass(frozen=True)
class ReturnsUnchanged:
    """Returns a copy of the model as it came: it forgets nothing.

    Args:
        lr: unused.
    """

    lr: float = hp(0.01, gt=0)

    def __call__(self, model, request):
        return copy.deepcopy(model)


@validated
@dataclass(frozen=True)
class MutatesCallersModel:
    """Fine-tunes the model it was given in place instead of a copy.

    Args:
        lr: SGD learning rate.
    """

    lr: float = hp(0.05, gt=0)

    def __call__(self, model, request):
        return fine_tune(model, request, self.lr)


@validated
@dataclass(frozen=True)
class IgnoresItsSeed:
    """Fine-tunes, then adds noise drawn from the operating system's entropy: never the same twice.

    Args:
        lr: SGD learning rate.
    """

    lr: float = hp(0.05, gt=0)

    def __call__(self, model, request):
        model = fine_tune(copy.deepcopy(model), request, self.lr)
        gen = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little"))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1e-4 * torch.randn(p.shape, generator=gen))
        return model


@dataclass(frozen=True)
class AcceptsInvalidFields:
    """Fine-tunes, but never checks its fields (neither registered nor `validated`).

    Args:
        lr: SGD learning rate.
    """

    lr: float = 0.05

    def __call__(self, model, request):
        return fine_tune(copy.deepcopy(model), request, self.lr)


@pytest.mark.parametrize("broken, clause", [(ZeroesWeights, "useful"), (ReturnsUnchanged, "forgets"),
                                            (MutatesCallersModel, "untouched"), (IgnoresItsSeed, "deterministic"),
                                            (AcceptsInvalidFields, "validates")])
def test_check_method_fails_each_broken_method_at_its_clause(broken, clause):
    with pytest.raises(ContractError, match=f"^{clause}:"):
        check_method(broken)


def test_check_method_names_the_clauses_it_can_skip():
    check_method(ReturnsUnchanged, skip=("forgets",))  # every other clause holds
    with pytest.raises(ValueError, match="unknown clauses"):
        check_method(ReturnsUnchanged, skip=("forget",))


def test_registration_makes_every_field_checked():
    @dataclass(frozen=True)
    class Plain:
        """A method with two bounded fields.

        Args:
            lr: step size.
            epochs: passes.
        """

        lr: float = hp(0.1, gt=0)
        epochs: int = hp(1, ge=1)

        def __call__(self, model, request):
            return copy.deepcopy(model)

    Plain(lr=float("nan"))  # a plain dataclass checks nothing ...
    registered = METHODS.register("_test_plain", family="baseline")(Plain)
    try:  # ... a registered one checks every field
        for bad in ({"lr": float("nan")}, {"lr": 0.0}, {"lr": float("inf")}, {"epochs": 0}, {"epochs": 2.0},
                    {"lr": True}):
            with pytest.raises(ValueError):
                registered(**bad)
        assert registered(lr=1, epochs=3).lr == 1  # an int is a number
    finally:
        METHODS._items.pop("_test_plain"), METHODS._meta.pop("_test_plain")
