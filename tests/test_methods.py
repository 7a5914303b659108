"""One contract for every registered method (timm / scikit-learn style): add a method file and
these tests pick it up from the registry."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from unlearnkit import METHODS
from unlearnkit.eval.metrics import accuracy, predict


def run(name: str, toy) -> torch.nn.Module:
    torch.manual_seed(0)
    return METHODS[name]()(toy.fresh(), toy.request)


@pytest.mark.parametrize("name", METHODS.names())
@pytest.mark.parametrize("which", ["toy", "toy_cnn"])
def test_method_contract(name, which, request):
    toy = request.getfixturevalue(which)
    method = METHODS[name]()
    assert dataclasses.is_dataclass(method) and method.__dataclass_params__.frozen, "hyper-parameters are frozen fields"
    assert dataclasses.asdict(method) == dataclasses.asdict(copy.deepcopy(method))
    assert type(method).__doc__ and "Args:" in type(method).__doc__, "document every field under Args:"
    before = predict(toy.model, toy.request.train, toy.request.forget)
    model = run(name, toy)
    assert model.state_dict().keys() == toy.model.state_dict().keys()
    assert all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())
    after = predict(model, toy.request.train, toy.request.forget)
    assert accuracy(after) <= accuracy(before) + 1e-9, "forget accuracy must not rise"
    again = run(name, toy)
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), f"{name} is not deterministic under a fixed seed ({k})"


@pytest.mark.parametrize("name", METHODS.names())
def test_method_leaves_input_checkpoint_of_request_untouched(name, toy):
    snapshot = copy.deepcopy(toy.model.state_dict())
    run(name, toy)
    for k, v in toy.model.state_dict().items():
        assert torch.equal(v, snapshot[k])
