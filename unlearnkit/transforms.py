"""Composable gradient transforms, in the shape of optax: `init(params)` and `update(updates, state, params)`.

Every gradient edit a method makes (combine objectives, harmonise conflicts, mask, project out a
subspace, clip, an optimiser step, fast/slow weights) is one of these values, and a method states
its semantics by the order of a `chain`. Example: `chain(sgd(...), mask(keep))` masks the *final*
update, after momentum and weight decay, so frozen weights stay bit-identical.

Updates are the amounts added to the parameters (`p += u`), so optimisers return `-lr * direction`.
Transforms are frozen dataclasses: they print their hyper-parameters and compare by value.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Union

import torch
from torch import Tensor

Params = dict[str, Tensor]
Grads = dict[str, Tensor]
Objectives = dict[str, Grads]  # named per-objective gradients, the input of a combiner
Schedule = Union[float, Callable[[int], float]]


class Transform(Protocol):
    def init(self, params: Params) -> Any: ...
    def update(self, updates: Any, state: Any, params: Params) -> tuple[Any, Any]: ...


def value_at(schedule: Schedule, step: int) -> float:
    return schedule(step) if callable(schedule) else float(schedule)


@dataclass(frozen=True)
class Cosine:
    """Cosine decay from `value` to `final` over `steps` (then flat)."""

    value: float
    steps: int
    final: float = 0.0

    def __call__(self, step: int) -> float:
        t = min(step, self.steps) / max(1, self.steps)
        return self.final + (self.value - self.final) * (1 + math.cos(math.pi * t)) / 2


@dataclass(frozen=True)
class Linear:
    """Linear interpolation from `value` to `final` over `steps` (then flat)."""

    value: float
    steps: int
    final: float = 0.0

    def __call__(self, step: int) -> float:
        t = min(step, self.steps) / max(1, self.steps)
        return self.value + (self.final - self.value) * t


@dataclass(frozen=True)
class PerEpoch:
    """A schedule of the epoch rather than of the step: `schedule(e)` throughout epoch e, where
    epoch e is `lengths[e]` steps long (epochs of unequal length: SCRUB's max-passes, SFR-on's
    iterations with and without a forget step). Past the last epoch it stays at the last value."""

    schedule: Schedule
    lengths: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ends", tuple(itertools.accumulate(self.lengths)))

    def __call__(self, step: int) -> float:
        epoch = min(bisect.bisect_right(self._ends, step), len(self.lengths) - 1)  # type: ignore[attr-defined]
        return value_at(self.schedule, epoch)


@dataclass(frozen=True)
class Chain:
    transforms: tuple[Transform, ...]

    def init(self, params: Params) -> tuple:
        return tuple(t.init(params) for t in self.transforms)

    def update(self, updates: Any, state: tuple, params: Params) -> tuple[Any, tuple]:
        new_state = []
        for t, s in zip(self.transforms, state):
            updates, s = t.update(updates, s, params)
            new_state.append(s)
        return updates, tuple(new_state)


def chain(*transforms: Transform) -> Chain:
    return Chain(tuple(transforms))


class Stateless:
    def init(self, params: Params) -> None:
        return None


# ---- combiners: named objectives in, one Grads (or edited objectives) out -------------------

@dataclass(frozen=True)
class Weighted:
    """Sum named objectives' gradients with fixed weights (a weight may be a schedule)."""

    weights: dict[str, Schedule]

    def update(self, updates: Objectives, state: Any, params: Params) -> tuple[Grads, Any]:
        step = state or 0
        missing = set(self.weights) - set(updates)
        if missing:
            raise KeyError(f"weighted: the loss returned no objective named {sorted(missing)}")
        names = list(self.weights)
        out = {k: sum(value_at(self.weights[n], step) * updates[n][k] for n in names) for k in updates[names[0]]}
        return out, step + 1

    def init(self, params: Params) -> int:
        return 0


def weighted(**weights: Schedule) -> Weighted:
    return Weighted(dict(weights))


def _dot(a: Grads, b: Grads) -> Tensor:
    return sum((a[k] * b[k]).sum() for k in a)  # type: ignore[return-value]


@dataclass(frozen=True)
class Harmonize(Stateless):
    """PCGrad-style gradient harmonisation between two objectives.

    When ⟨g_other, g_protect⟩ < 0, remove from g_other its component along g_protect. With
    `symmetric`, g_protect is likewise projected onto the normal plane of the original g_other.
    `per_layer` decides conflicts per parameter tensor instead of on the whole flattened model.
    Output: the same two objectives, edited (follow with `weighted`).
    """

    protect: str = "retain"
    other: str = "forget"
    symmetric: bool = False
    per_layer: bool = False
    eps: float = 1e-12

    def update(self, updates: Objectives, state: Any, params: Params) -> tuple[Objectives, Any]:
        p, o = updates[self.protect], updates[self.other]
        groups = [[k] for k in p] if self.per_layer else [list(p)]
        new_p, new_o = dict(p), dict(o)
        for keys in groups:
            gp, go = {k: p[k] for k in keys}, {k: o[k] for k in keys}
            dot = _dot(gp, go)
            if dot < 0:
                for k in keys:
                    new_o[k] = o[k] - dot / (_dot(gp, gp) + self.eps) * p[k]
                    if self.symmetric:
                        new_p[k] = p[k] - dot / (_dot(go, go) + self.eps) * o[k]
        return {**updates, self.protect: new_p, self.other: new_o}, state


def harmonize(protect: str = "retain", other: str = "forget", symmetric: bool = False,
              per_layer: bool = False) -> Harmonize:
    return Harmonize(protect, other, symmetric, per_layer)


@dataclass(frozen=True)
class Edit:
    """Apply `transform` to the objective `name` when this step's loss returned it, and pass the
    other objectives on unchanged (e.g. mask and clip only the forget gradient)."""

    name: str
    transform: Transform

    def init(self, params: Params) -> Any:
        return self.transform.init(params)

    def update(self, updates: Objectives, state: Any, params: Params) -> tuple[Objectives, Any]:
        if self.name not in updates:
            return updates, state
        edited, state = self.transform.update(updates[self.name], state, params)
        return {**updates, self.name: edited}, state


def edit(name: str, *transforms: Transform) -> Edit:
    return Edit(name, chain(*transforms))


@dataclass(frozen=True)
class Total(Stateless):
    """The sum of whichever named objectives this step's loss returned (one Grads out)."""

    def update(self, updates: Objectives, state: Any, params: Params) -> tuple[Grads, Any]:
        grads = list(updates.values())
        return {k: sum(g[k] for g in grads) for k in grads[0]}, state


def total() -> Total:
    return Total()


# ---- edits ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mask(Stateless):
    """Multiply each update by `keep` (0/1 or soft); parameters not in `keep` pass unchanged."""

    keep: Grads

    def update(self, updates: Grads, state: Any, params: Params) -> tuple[Grads, Any]:
        return {k: u * self.keep[k] if k in self.keep else u for k, u in updates.items()}, state


def mask(keep: Grads) -> Mask:
    return Mask(keep)


@dataclass(frozen=True)
class ProjectOut(Stateless):
    """Per weight: G ← G − G U Uᵀ, G the update viewed as (out, in·k·k), U (d, k) orthonormal.

    A layer y = W x then keeps W x unchanged for every x in span(U). Parameters without a
    basis pass unchanged (use `mask` to freeze them).
    """

    bases: Grads

    def update(self, updates: Grads, state: Any, params: Params) -> tuple[Grads, Any]:
        out = dict(updates)
        for k, basis in self.bases.items():
            g = updates[k].reshape(updates[k].shape[0], -1)
            out[k] = (g - (g @ basis) @ basis.T).reshape(updates[k].shape)
        return out, state


def project_out(bases: Grads) -> ProjectOut:
    return ProjectOut(bases)


@dataclass(frozen=True)
class ClipByGlobalNorm(Stateless):
    """Scale all updates down together so their joint L2 norm is at most `max_norm`."""

    max_norm: float

    def update(self, updates: Grads, state: Any, params: Params) -> tuple[Grads, Any]:
        norm = torch.sqrt(sum((u.double() ** 2).sum() for u in updates.values()))  # type: ignore[arg-type]
        scale = min(1.0, self.max_norm / (float(norm) + 1e-6))
        return {k: u * scale for k, u in updates.items()}, state


def clip_by_global_norm(max_norm: float) -> ClipByGlobalNorm:
    return ClipByGlobalNorm(max_norm)


@dataclass(frozen=True)
class Scale:
    """Multiply updates by a constant or a schedule of the step."""

    factor: Schedule

    def init(self, params: Params) -> int:
        return 0

    def update(self, updates: Grads, state: int, params: Params) -> tuple[Grads, int]:
        f = value_at(self.factor, state)
        return {k: u * f for k, u in updates.items()}, state + 1


def scale(factor: Schedule) -> Scale:
    return Scale(factor)


# ---- optimisers as transforms (match torch.optim numerically) ------------------------------

@dataclass(frozen=True)
class SGD:
    """torch.optim.SGD as a transform: L2 weight decay, (Nesterov) momentum, lr (or schedule)."""

    lr: Schedule
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False

    def init(self, params: Params) -> dict:
        return {"step": 0, "buf": {}}

    def update(self, updates: Grads, state: dict, params: Params) -> tuple[Grads, dict]:
        lr, out = value_at(self.lr, state["step"]), {}
        for k, g in updates.items():
            if self.weight_decay:
                g = g + self.weight_decay * params[k].detach()
            if self.momentum:
                buf = state["buf"].get(k)
                buf = g.clone() if buf is None else buf.mul_(self.momentum).add_(g)
                state["buf"][k] = buf
                g = g + self.momentum * buf if self.nesterov else buf
            out[k] = -lr * g
        state["step"] += 1
        return out, state


def sgd(lr: Schedule, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False) -> SGD:
    return SGD(lr, momentum, weight_decay, nesterov)


@dataclass(frozen=True)
class Adam:
    """torch.optim.Adam (L2 decay) or, with `decoupled`, torch.optim.AdamW, as a transform."""

    lr: Schedule = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    decoupled: bool = False

    def init(self, params: Params) -> dict:
        zeros = {k: torch.zeros_like(p) for k, p in params.items()}
        return {"step": 0, "m": zeros, "v": {k: z.clone() for k, z in zeros.items()}}

    def update(self, updates: Grads, state: dict, params: Params) -> tuple[Grads, dict]:
        t, lr, out = state["step"] + 1, value_at(self.lr, state["step"]), {}
        c1, c2 = 1 - self.b1**t, 1 - self.b2**t
        for k, g in updates.items():
            p = params[k].detach()
            if self.weight_decay and not self.decoupled:
                g = g + self.weight_decay * p
            m = state["m"][k].mul_(self.b1).add_(g, alpha=1 - self.b1)
            v = state["v"][k].mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            out[k] = -(lr / c1) * m / (v.sqrt() / math.sqrt(c2) + self.eps)
            if self.weight_decay and self.decoupled:
                out[k] = out[k] - lr * self.weight_decay * p
        state["step"] = t
        return out, state


def adam(lr: Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         weight_decay: float = 0.0) -> Adam:
    return Adam(lr, b1, b2, eps, weight_decay)


def adamw(lr: Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 1e-2) -> Adam:
    return Adam(lr, b1, b2, eps, weight_decay, decoupled=True)


def optimizer(kind: str, lr: Schedule, momentum: float = 0.0, weight_decay: float = 0.0) -> SGD | Adam:
    """By name, as in torch.optim: "sgd" = sgd(lr, momentum, weight_decay); "adam" = Adam with L2
    decay; "adamw" = AdamW (decoupled decay). `momentum` is SGD's only (Adam's β1 = 0.9)."""
    if kind == "sgd":
        return sgd(lr, momentum, weight_decay)
    if kind == "adam":
        return adam(lr, weight_decay=weight_decay)
    if kind == "adamw":
        return adamw(lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd', 'adam' or 'adamw', got {kind!r}")


# ---- fast/slow weights ---------------------------------------------------------------------

@dataclass(frozen=True)
class Lookahead:
    """Lookahead (Zhang et al. 2019): every `every` steps the fast weights jump to
    slow + alpha·(fast − slow), and that point becomes the new slow weights. Place it last."""

    every: int = 5
    alpha: float = 0.5

    def init(self, params: Params) -> dict:
        return {"step": 0, "slow": {k: p.detach().clone() for k, p in params.items()}}

    def update(self, updates: Grads, state: dict, params: Params) -> tuple[Grads, dict]:
        state["step"] += 1
        if state["step"] % self.every:
            return updates, state
        out = {}
        for k, u in updates.items():
            slow = state["slow"][k]
            target = slow + self.alpha * (params[k].detach() + u - slow)
            out[k] = target - params[k].detach()
            state["slow"][k] = target
        return out, state


def lookahead(every: int = 5, alpha: float = 0.5) -> Lookahead:
    return Lookahead(every, alpha)
