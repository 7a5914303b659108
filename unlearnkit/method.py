"""What a method is, and how its hyper-parameters are declared, checked and searched.

A method is a frozen dataclass whose fields are its hyper-parameters, with
`__call__(model, request) -> model`: it returns the unlearned model and leaves the model it was
given untouched. A field declares its valid range and, optionally, its search range next to its
default with `hp(...)`; registering the class (`@METHODS.register(...)`) makes its constructor
check every field, so a registered method cannot be built with an out-of-range, non-finite or
ill-typed value. `unlearnkit.testing.check_method` is the whole contract as a test.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Protocol

from unlearnkit.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from unlearnkit.request import UnlearnRequest

Optimizer = Literal["sgd", "adam", "adamw"]  # torch.optim.SGD, Adam (L2 decay), AdamW (decoupled decay)
FAMILIES = ("reference", "baseline", "reproduced")  # in the order tables list them


class Method(Protocol):
    """A frozen dataclass of hyper-parameters; calling it unlearns. Optionally it also has
    `check(request)` (raise ValueError for a request it cannot serve; see `check_request`) and
    `prepare(model, request)` (one-off work of the trained model, timed apart by the runner)."""

    def __call__(self, model: "nn.Module", request: "UnlearnRequest") -> "nn.Module":
        """The unlearned model. `model` itself is left untouched."""


@dataclass(frozen=True)
class Range:
    """A search range for a numeric hyper-parameter (`log`: sample on a log scale)."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class Bounds:
    """Where a numeric hyper-parameter is valid: gt < v, ge <= v, v < lt, v <= le (None: no bound)."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def violation(self, v: float) -> str | None:
        for bound, ok, word in ((self.gt, lambda b: v > b, ">"), (self.ge, lambda b: v >= b, ">="),
                                (self.lt, lambda b: v < b, "<"), (self.le, lambda b: v <= b, "<=")):
            if bound is not None and not ok(bound):
                return f"{word} {bound:g}"
        return None


def hp(default: Any, *, gt: float | None = None, ge: float | None = None, lt: float | None = None,
       le: float | None = None, search: Range | tuple | None = None) -> Any:
    """A hyper-parameter field: its default, its valid range and, for `unlearnkit tune`, the range
    (or the tuple of choices) to search."""
    return dataclasses.field(default=default, metadata={"bounds": Bounds(gt, ge, lt, le), "search": search})


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_fields(method: Any) -> None:
    """ValueError unless every field of `method` has its declared type, is finite when it is a
    number, and lies in its declared bounds. Lists given for tuple fields become tuples."""
    cls = type(method)
    hints = _hints(cls)
    for f in dataclasses.fields(method):
        if not f.init:
            continue
        value = getattr(method, f.name)
        fixed = _checked(f"{f.name}", value, hints[f.name], f.metadata.get("bounds"))
        if fixed is not value:
            object.__setattr__(method, f.name, fixed)


def _checked(name: str, value: Any, hint: Any, bounds: Bounds | None) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return value
        options = [a for a in args if a is not type(None)]
        hint = options[0] if len(options) == 1 else Any
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{name} must be one of {list(args)}, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if hint in (int, float):
        integer = hint is int
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        problem = bounds.violation(value) if bounds is not None else None
        if problem:
            raise ValueError(f"{name} must be {problem}, got {value!r}")
        return value
    if hint is str and not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    if origin is tuple:
        if isinstance(value, Mapping):  # {key: value} for a tuple of pairs: its sorted items
            return tuple(sorted(value.items()))
        if not isinstance(value, (tuple, list)):
            raise ValueError(f"{name} must be a sequence, got {value!r}")
        return tuple(value)
    return value


def bounds_of(cls: type) -> dict[str, Bounds]:
    """{field: Bounds} for the fields declared with `hp(...)`."""
    return {f.name: f.metadata["bounds"] for f in dataclasses.fields(cls) if "bounds" in f.metadata}


def search_space(cls: type) -> dict[str, Range | tuple]:
    """{field: Range or tuple of choices} for the fields that declare a search range."""
    return {f.name: f.metadata["search"] for f in dataclasses.fields(cls) if f.metadata.get("search") is not None}


def validated(cls: type) -> type:
    """Make the dataclass `cls` check every field (`check_fields`) whenever it is built, before its
    own `__post_init__` (so a cross-field check there sees well-typed, finite values). Registering
    a method does this; use it directly for a method you do not register."""
    post = getattr(cls, "__post_init__", None)  # its own or inherited (a subclass may check twice: harmless)
    if post is not None:
        def __post_init__(self: Any) -> None:
            check_fields(self)
            post(self)

        cls.__post_init__ = __post_init__  # type: ignore[attr-defined]
        return cls
    init = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        check_fields(self)

    cls.__init__ = __init__  # type: ignore[misc]
    return cls


def check_value(cls: type, name: str, value: Any) -> Any:
    """ValueError unless `value` is valid for the field `name` of `cls` (its type and bounds; the
    value, converted as `check_fields` would)."""
    field = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if field is None:
        raise ValueError(f"{cls.__name__} has no field {name!r}")
    return _checked(name, value, _hints(cls)[name], field.metadata.get("bounds"))


class MethodRegistry(Registry[type]):
    """Methods, with metadata every table and check reads: `family` ("reference": Retrain and
    Original; "baseline"; "reproduced": the five methods whose papers unlearnkit reproduces and
    tests), `paper` (the citation), `tasks` (what it runs on) and `defaults` (where its default
    values come from: a paper, official code, or our choice and why). Registering a method also makes
    its constructor validate every field (`check_fields`)."""

    def register(self, name: str, *, family: str, paper: str = "",  # type: ignore[override]
                 tasks: tuple[str, ...] = ("classification",), defaults: str = "") -> Callable[[type], type]:
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        add = super().register(name, family=family, paper=paper, tasks=tuple(tasks), defaults=defaults)

        def decorator(cls: type) -> type:
            if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):  # type: ignore[attr-defined]
                raise TypeError(f"method {name!r} must be a frozen dataclass (its fields are its hyper-parameters)")
            return add(validated(cls))

        return decorator

    def ordered(self) -> list[str]:
        """Names by family (reference rows, baselines, reproduced methods), Retrain first, then alphabetically."""
        return sorted(self._items, key=lambda n: (FAMILIES.index(self._meta[n]["family"]), n != "retrain", n))


METHODS = MethodRegistry("method")


def build(name: str, hparams: dict[str, Any] | None = None) -> Any:
    """The registered method `name` with `hparams`; an unknown field is a clear error."""
    cls = METHODS[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(hparams or {}) - known
    if unknown:
        raise ValueError(f"{name} has no hyper-parameter {sorted(unknown)}; it has {sorted(known)}")
    return cls(**(hparams or {}))


def supported_tasks(method: Any) -> tuple[str, ...]:
    """The tasks a method runs on: its registry metadata, else a `tasks` attribute, else classification."""
    name = METHODS.name_of(method)
    if name is not None:
        return METHODS.meta(name)["tasks"]
    return tuple(getattr(method, "tasks", ("classification",)))


def check_supported(method: Any, task: str) -> None:
    """ValueError unless `method` runs on the task named `task`."""
    if task not in supported_tasks(method):
        name = METHODS.name_of(method) or type(method).__name__
        raise ValueError(f"method {name} does not support the {task} task; it supports {list(supported_tasks(method))}")


def check_request(method: Any, request: Any) -> None:
    """ValueError unless `method` can serve `request`: it runs on the request's task, and its optional
    `check(request)` (what it needs of a request, e.g. ∇τ's held-out data) passes. Callers run this
    before any costly work (the benchmark runner: before it trains Retrain)."""
    check_supported(method, request.task.name)
    if hasattr(method, "check"):
        method.check(request)
