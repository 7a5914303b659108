"""The one training loop and the few helpers every method is built from.

`fit` minimises a loss over batches and shapes every gradient with a transform chain. A loss may
return one tensor, or a dict of named objectives that a combiner at the head of the chain merges.
Whoever runs a method may observe it through `Callback`s passed in with the request.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol

import torch
from torch import Tensor, nn
from torch.func import functional_call

from unlearnkit import distributed
from unlearnkit.distributed import average, broadcast_model
from unlearnkit.models import device_of
from unlearnkit.transforms import Grads, Params, Transform

Loss = Callable[[Any], "Tensor | Mapping[str, Tensor]"]


def trainable(model: nn.Module) -> Params:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def grads_of(losses: Tensor | Mapping[str, Tensor], params: Params, create_graph: bool = False) -> Any:
    """d loss / d params as Grads; for a dict of losses, one Grads per name (graph kept between)."""
    if isinstance(losses, Mapping):
        names = list(losses)
        return {n: _grad(losses[n], params, retain=i < len(names) - 1, create_graph=create_graph)
                for i, n in enumerate(names)}
    return _grad(losses, params, retain=False, create_graph=create_graph)


def _grad(loss: Tensor, params: Params, retain: bool, create_graph: bool) -> Grads:
    gs = torch.autograd.grad(loss, list(params.values()), retain_graph=retain or create_graph,
                             create_graph=create_graph, allow_unused=True)
    return {k: torch.zeros_like(p) if g is None else g for (k, p), g in zip(params.items(), gs)}


class Callback(Protocol):
    """An observer passed in by whoever runs a method (benchmarks time updates and count samples).
    Every hook is optional; none may change what it observes."""

    def on_batch(self, size: int) -> None:
        """A batch of `size` samples was handed out by the request (under torchrun: the whole batch,
        of which this process holds a shard)."""

    def on_update(self, step: int) -> None:
        """`fit` applied update number `step` to the model."""

    def on_check(self, seconds: float) -> None:
        """A method spent `seconds` evaluating between updates to decide when to stop or to set a
        target (PGU's per-epoch accuracies, ∇τ's held-out loss): not part of any update."""


def notify(callbacks: Iterable[Any], event: str, *args: Any) -> None:
    for callback in callbacks:
        hook = getattr(callback, event, None)
        if hook is not None:
            hook(*args)


@contextmanager
def checking(callbacks: Iterable[Any]) -> Iterator[None]:
    """Mark an evaluation a method runs between updates (reported to `Callback.on_check`)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        notify(callbacks, "on_check", time.perf_counter() - start)


@contextmanager
def in_mode(model: nn.Module, train: bool) -> Iterator[nn.Module]:
    """`model` in train or eval mode inside the block; every module's own flag is restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.train(train)
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def frozen_batchnorm(model: nn.Module) -> None:
    """Train mode (Dropout active) with every BatchNorm in eval mode (running statistics frozen)."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def autocast(device: torch.device) -> Any:
    """bf16 autocast on a CUDA device (the fast path; weights, gradients and updates stay float32),
    nothing elsewhere. UNLEARNKIT_AUTOCAST=0 turns it off."""
    on = device.type == "cuda" and os.environ.get("UNLEARNKIT_AUTOCAST", "1") != "0"
    return torch.autocast("cuda", dtype=torch.bfloat16) if on else nullcontext()


def to_device(batch: Any, device: torch.device) -> Any:
    """`batch.to(device)`, or each item of a tuple moved (a method's batches may carry extras)."""
    if isinstance(batch, tuple):
        return tuple(to_device(b, device) for b in batch)
    return batch.to(device) if hasattr(batch, "to") else batch


@torch.no_grad()
def apply_updates(params: Params, updates: Grads) -> None:
    """p += u for every parameter with an update."""
    for k, u in updates.items():
        params[k].add_(u)


def fit(model: nn.Module, batches: Iterable[Any], loss: Loss, tx: Transform,
        train_mode: bool | Callable[[nn.Module], None] = True,
        on_step: Callable[[int, Any], bool | None] | None = None, callbacks: Iterable[Any] = ()) -> nn.Module:
    """Minimise `loss` over `batches`, shaping every gradient with `tx`: the one update step every
    method and the training of originals go through. Mutates and returns `model`.

    `train_mode`: True / False, or a function that sets the modes (e.g. `frozen_batchnorm`).
    `on_step(step, losses)` runs after each update; returning True stops early. `callbacks`
    (usually `request.callbacks`) are told of every update.
    """
    params = trainable(model)
    broadcast_model(model)  # under torchrun every process starts from rank 0's weights
    state = tx.init(params)
    if callable(train_mode):
        train_mode(model)
    else:
        model.train(train_mode)
    device = device_of(model)
    for step, batch in enumerate(batches):
        with autocast(device):
            losses = loss(to_device(batch, device))
        grads = grads_of(losses, params)
        grads = {n: average(g) for n, g in grads.items()} if isinstance(losses, Mapping) else average(grads)
        updates, state = tx.update(grads, state, params)
        apply_updates(params, updates)
        notify(callbacks, "on_update", step)
        if on_step is not None and on_step(step, losses):
            break
    return model


def grad_sum(model: nn.Module, batches: Iterable[Any], loss: Loss, square: bool = False,
             train_mode: bool = False) -> Grads:
    """Sum over batches of d loss / d params (or of its square, for an empirical Fisher)."""
    params = trainable(model)
    total = {k: torch.zeros_like(p) for k, p in params.items()}
    model.train(train_mode)
    device = device_of(model)
    for batch in batches:
        g = average(grads_of(loss(batch.to(device)), params))  # the global batch's gradient under torchrun
        for k in total:
            total[k] += g[k] ** 2 if square else g[k]
    return total


def virtual_step(loss: Tensor, params: Params, lr: float, first_order: bool = False) -> Params:
    """θ' = θ − lr ∇loss, differentiable through the gradient unless `first_order`. The graph of
    `loss` is kept, so an objective may still use `loss` itself afterwards."""
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=not first_order, retain_graph=True,
                                allow_unused=True)
    if distributed.active():  # the global batch's gradient, still differentiable
        grads = tuple(None if g is None else distributed.total(g) / distributed.world() for g in grads)
    return {k: p if g is None else p - lr * (g.detach() if first_order else g)
            for (k, p), g in zip(params.items(), grads)}


def call(model: nn.Module, params: Params, *inputs: Tensor) -> Tensor:
    """The model's output at `params` (e.g. a lookahead θ'). Buffers are copied, so BatchNorm
    running statistics of the real model are never touched by these forwards."""
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    return functional_call(model, {**buffers, **params}, inputs)


def at(model: nn.Module, params: Params) -> Callable[..., Tensor]:
    """`model` as a function evaluated at `params` (for `request.loss(at(model, fast), batch)`)."""
    return lambda *inputs: call(model, params, *inputs)
