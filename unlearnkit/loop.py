"""The one training loop and the few helpers every method is built from.

`fit` minimises a loss over batches and shapes every gradient with a transform chain. A loss may
return one tensor, or a dict of named objectives that a combiner at the head of the chain merges.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call

from unlearnkit.transforms import Grads, Params, Transform

Loss = Callable[[Any], "Tensor | Mapping[str, Tensor]"]


def trainable(model: nn.Module) -> Params:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


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


STEP_HOOKS: list[Callable[[Params], None]] = []  # called after every update (benchmarks time steps)
CHECK_HOOKS: list[Callable[[float], None]] = []  # told the seconds of every `stopping_check` block


@contextmanager
def stopping_check() -> Iterator[None]:
    """Mark an evaluation a method runs between updates to decide when to stop or to set a target
    (PGU's per-epoch accuracies, ∇τ's held-out loss): not part of an update, so the step benchmark
    (`unlearnkit overhead`) reports its time apart from the step's."""
    start = time.perf_counter()
    try:
        yield
    finally:
        for hook in CHECK_HOOKS:
            hook(time.perf_counter() - start)


@torch.no_grad()
def apply_updates(params: Params, updates: Grads) -> None:
    """p += u for every parameter with an update; every method's every step goes through here."""
    for k, u in updates.items():
        params[k].add_(u)
    for hook in STEP_HOOKS:
        hook(params)


def fit(model: nn.Module, batches: Iterable[Any], loss: Loss, tx: Transform, train_mode: bool = True,
        on_step: Callable[[int, Any], bool | None] | None = None) -> nn.Module:
    """Minimise `loss` over `batches`, shaping every gradient with `tx`. Mutates and returns `model`.

    `on_step(step, losses)` runs after each update; returning True stops early.
    """
    params = trainable(model)
    state = tx.init(params)
    model.train(train_mode)
    device = device_of(model)
    for step, batch in enumerate(batches):
        losses = loss(batch.to(device))
        updates, state = tx.update(grads_of(losses, params), state, params)
        apply_updates(params, updates)
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
        g = grads_of(loss(batch.to(device)), params)
        for k in total:
            total[k] += g[k] ** 2 if square else g[k]
    return total


def virtual_step(loss: Tensor, params: Params, lr: float, first_order: bool = False) -> Params:
    """θ' = θ − lr ∇loss, differentiable through the gradient unless `first_order`. The graph of
    `loss` is kept, so an objective may still use `loss` itself afterwards."""
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=not first_order, retain_graph=True,
                                allow_unused=True)
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


EVAL_BATCH = {"cpu": 256, "cuda": 1024}  # per-device chunk of an evaluation forward (see `outputs`)


@torch.no_grad()
def outputs(model: nn.Module, x: Tensor, batch_size: int | None = None) -> Tensor:
    """Eval-mode logits for a tensor of inputs, in chunks of `batch_size` (default: EVAL_BATCH of
    the model's device). On a CPU, chunks of 256 keep activations in cache: measured on the 2-core
    machine, the CIFAR ResNet-18 (width 16) and the small CNN evaluate 1.5–2× faster per sample
    than in chunks of 1024, an MLP the same; a GPU wants large chunks."""
    modes = [(m, m.training) for m in model.modules()]  # restored per module (e.g. BN kept in eval)
    model.eval()
    device = device_of(model)
    batch_size = batch_size or EVAL_BATCH.get(device.type, 256)
    out = torch.cat([model(c.to(device)).float().cpu() for c in x.split(batch_size)]) if len(x) else torch.empty(0)
    for m, mode in modes:
        m.training = mode
    return out
