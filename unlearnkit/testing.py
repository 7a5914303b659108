"""`check_method`: the method contract as one call, for our methods and for yours.

    from unlearnkit.testing import check_method
    check_method(MyMethod)                       # raises ContractError naming the broken clause

A method (see `unlearnkit.method`) is a frozen dataclass of hyper-parameters whose
`__call__(model, request)` returns the unlearned model. `check_method` holds it to these clauses,
each with a name you can `skip` (say why where you do):

- "fields": a frozen dataclass, every field documented under `Args:` in its docstring.
- "validates": building it with an invalid field raises ValueError (or TypeError): every declared bound
  (`hp(gt=..., ge=..., lt=..., le=...)`) crossed, NaN and ±inf for every number, 1.5 for an
  integer, an unknown choice for a `Literal`.
- "untouched": the model it is given and the request's data are bit-identical afterwards.
- "shape": it returns a module with the same parameter and buffer names and shapes, all finite.
- "deterministic": the same seed gives bit-identical weights twice.
- "forgets": on a small class-forgetting problem, the forget set's mean loss rises by more than
  the loss on the other classes' test samples does (a method that changes nothing fails).
- "useful": test accuracy on the other classes keeps at least half of its margin over chance (a
  method that destroys the model fails).

The problems are tiny and made here (Gaussian blobs with an MLP; scikit-learn's 8×8 digits with
a BatchNorm CNN), trained in a second or two and cached for the process.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import typing
from dataclasses import dataclass
from typing import Any, Iterable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.data import ArrayDataset, holdout
from unlearnkit.method import bounds_of
from unlearnkit.metrics import accuracy, predict
from unlearnkit.models import build_model
from unlearnkit.request import UnlearnRequest, parse_forget
from unlearnkit.train import Recipe, train_model

CLAUSES = ("fields", "validates", "untouched", "shape", "deterministic", "forgets", "useful")
Toy = Literal["mlp", "cnn"]


class ContractError(AssertionError):
    """A method broke a clause of the contract; the message names the clause."""


@dataclass(frozen=True)
class Problem:
    """A trained model, a class-forgetting request on its training data, and a test set."""

    model: nn.Module
    request: UnlearnRequest
    test: ArrayDataset


def blobs(n: int, seed: int, classes: int = 4, dim: int = 8) -> ArrayDataset:
    """Overlapping Gaussian blobs: learnable, but not perfectly."""
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(1234)) * 1.5
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    return ArrayDataset(centres[y] + torch.randn(n, dim, generator=g), y, "blobs")


@functools.lru_cache(maxsize=2)
def problem(kind: Toy = "mlp") -> Problem:
    """"mlp": an MLP on 4-class blobs, class 0 forgotten; "cnn": a BatchNorm CNN on the 8×8
    digits, class 3 forgotten. Each has held-out data (`request.val`) and a recipe."""
    if kind == "mlp":
        train, val, test, classes = blobs(400, 1), blobs(100, 3), blobs(200, 2), 4
        model, recipe, spec = build_model("mlp", (8,), 4, width=32), Recipe(epochs=20, lr=0.05, batch_size=32), "class:0"
    elif kind == "cnn":
        from unlearnkit.datasets import digits

        data = digits()
        (train, val), test, classes = holdout(data.train, 0.1), data.test, 10
        model, recipe, spec = build_model("cnn", (1, 8, 8), 10, width=8), Recipe(epochs=8, lr=0.05, batch_size=64), "class:3"
    else:
        raise ValueError(f"unknown toy problem {kind!r}; use 'mlp' or 'cnn'")
    torch.manual_seed(0)
    train_model(model, train, torch.arange(len(train)), recipe, seed=0)
    ids, forgotten = parse_forget(spec, train.y)
    return Problem(model, UnlearnRequest(train, ids, classes, val=val, recipe=recipe, classes=forgotten), test)


def check_method(cls: type, hparams: dict[str, Any] | None = None, *, toys: Iterable[Toy] = ("mlp",),
                 skip: Iterable[str] = ()) -> None:
    """Hold the method class `cls`, built with `hparams`, to the contract (module docstring) on
    each of `toys`; raise ContractError at the first broken clause. `skip` names clauses that do
    not apply (e.g. "forgets" for a reference row that by design changes nothing)."""
    skip = set(skip)
    unknown = skip - set(CLAUSES)
    if unknown:
        raise ValueError(f"unknown clauses {sorted(unknown)}; the clauses are {CLAUSES}")
    if "fields" not in skip:
        _check_fields(cls)
    if "validates" not in skip:
        _check_validates(cls, hparams or {})
    method = cls(**(hparams or {}))
    for kind in toys:
        _check_run(method, problem(kind), skip)


def _fail(clause: str, message: str) -> None:
    raise ContractError(f"{clause}: {message}")


def _check_fields(cls: type) -> None:
    if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        _fail("fields", f"{cls.__name__} must be a frozen dataclass (its fields are its hyper-parameters)")
    doc = cls.__doc__ or ""
    if "Args:" not in doc:
        _fail("fields", f"{cls.__name__}'s docstring has no 'Args:' section")
    missing = [f.name for f in dataclasses.fields(cls) if f.init and f"{f.name}:" not in doc]
    if missing:
        _fail("fields", f"{cls.__name__}'s docstring does not document {missing} under Args:")


def invalid_values(cls: type) -> list[tuple[str, Any]]:
    """(field, value) pairs that a method must refuse, from its fields' types and declared bounds."""
    hints, bounds, out = typing.get_type_hints(cls), bounds_of(cls), []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if typing.get_origin(hint) is not Literal and len(args) == 1:
            hint = args[0]  # Optional[X] -> X
        if typing.get_origin(hint) is Literal:
            out.append((f.name, "__not_a_choice__"))
        elif hint is float or hint is int:
            out += [(f.name, math.nan), (f.name, math.inf), (f.name, -math.inf)]
            if hint is int:
                out.append((f.name, 1.5))
            b = bounds.get(f.name)
            if b is not None:
                out += [(f.name, v) for v in (b.gt, None if b.ge is None else b.ge - 1, b.lt,
                                              None if b.le is None else b.le + 1) if v is not None]
        elif hint is bool:
            out.append((f.name, "yes"))
    return out


def _check_validates(cls: type, hparams: dict[str, Any]) -> None:
    for name, value in invalid_values(cls):
        try:
            cls(**{**hparams, name: value})
        except (ValueError, TypeError):
            continue
        _fail("validates", f"{cls.__name__}({name}={value!r}) was accepted; it must raise ValueError")


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _run(method: Any, p: Problem, model: nn.Module) -> nn.Module:
    torch.manual_seed(p.request.seed)
    return method(model, p.request)


def _check_run(method: Any, p: Problem, skip: set[str]) -> None:
    name = type(method).__name__
    given = copy.deepcopy(p.model)
    before, data = _state(given), [t.clone() for t in (p.request.train.x, p.request.train.y)]
    out = _run(method, p, given)
    if "untouched" not in skip:
        if not _same(_state(given), before):
            _fail("untouched", f"{name} changed the model it was given; it must return a new one")
        if not all(torch.equal(a, b) for a, b in zip(data, (p.request.train.x, p.request.train.y))):
            _fail("untouched", f"{name} changed the request's training data")
    if "shape" not in skip:
        if not isinstance(out, nn.Module):
            _fail("shape", f"{name} returned {type(out).__name__}, not an nn.Module")
        got, want = out.state_dict(), p.model.state_dict()
        if got.keys() != want.keys() or any(got[k].shape != want[k].shape for k in want):
            _fail("shape", f"{name} returned a model with other parameter or buffer names or shapes")
        if not all(torch.isfinite(t).all() for t in got.values() if t.is_floating_point()):
            _fail("shape", f"{name} returned non-finite weights")
    if "deterministic" not in skip and not _same(_state(_run(method, p, copy.deepcopy(p.model))), _state(out)):
        _fail("deterministic", f"{name} gave other weights on a second run with the same seed")
    if "forgets" not in skip or "useful" not in skip:
        _check_effect(name, p, out, skip)


def _check_effect(name: str, p: Problem, out: nn.Module, skip: set[str]) -> None:
    r = p.request
    kept = (~torch.isin(p.test.y, torch.tensor(r.classes))).nonzero().flatten()

    def losses(model: nn.Module) -> tuple[float, float]:
        f, t = predict(model, r.train, r.forget), predict(model, p.test, kept)
        return (F.cross_entropy(f.logits.double(), f.labels).item(), F.cross_entropy(t.logits.double(), t.labels).item())

    (f0, t0), (f1, t1) = losses(p.model), losses(out)
    if "forgets" not in skip and not f1 - f0 > t1 - t0:
        _fail("forgets", f"{name}: the forget-set loss moved {f1 - f0:+.3g}, the other classes' test loss "
                         f"{t1 - t0:+.3g}: it forgot nothing in particular")
    chance = 100.0 / r.num_classes
    acc0, acc1 = accuracy(predict(p.model, p.test, kept)), accuracy(predict(out, p.test, kept))
    if "useful" not in skip and not acc1 - chance >= 0.5 * (acc0 - chance):
        _fail("useful", f"{name}: accuracy on the other classes fell from {acc0:.1f}% to {acc1:.1f}% "
                        f"(chance {chance:.1f}%): the model is no longer useful")
