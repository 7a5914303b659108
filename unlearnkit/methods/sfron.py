"""SFR-on: saliency-masked adaptive gradient ascent interleaved with retain fine-tuning.

Huang et al., "Unified Gradient-Based Machine Unlearning with Remain Geometry Enhancement",
NeurIPS 2024 (arXiv 2409.19732); follows the official `K1nght/Unified-Unlearning-w-Remain-Geometry`
`Classification/unlearn/sfron.py` (specs/sfron-nablatau.md §1.2), CIFAR-10 10% settings.

Stage A (once): empirical Fisher diagonals from squared mini-batch-mean CE gradients in eval mode,
F_f over the forget set and F_r over the retain set; mask M = 1[(F_f + 1e-15)/(F_r + 1e-15) ≥ γ]
on every parameter. Stage B: T iterations with ONE SGD state (momentum, weight decay, cosine lr
over T). Every k-th iteration a forget step: per-sample losses ℓ_i, detached weights
w_i ∝ ℓ_i^(−λ) summing to 1, loss −α_t Σ w_i ℓ_i with α_t = α0 (1 + cos(π t/T))/2, gradient
masked by M, then clipped to global norm `clip`; then, every iteration, a plain retain CE step.

Choices, each as in the official code unless said otherwise:
- Only the forget gradient is masked and clipped; momentum and weight decay act on every weight
  on both kinds of step (spec §1.6.3), so masked weights still move. Train mode in Stage B.
- Batches use `request.augment` (training augmentation), also for the Fisher, as the code does.
- "Fast-slow update": in the official code this is the interleaving itself (its EMA has β = 1, a
  no-op, and is dropped here). `slow_alpha` adds an explicit Lookahead (slow ← slow + α(fast −
  slow), synchronised every k iterations) as an opt-in ablation; None (default) is the official
  behaviour.
- The Fisher diagonals are cached in-process (`FISHER_CACHE`, two entries) keyed by the weights'
  digest, the data and the forget / excluded ids, as the official code caches them on disk. Clear
  it before timing runs that should include Stage A. `retain_fisher_batches` optionally subsamples
  D_r for F_r (None = one full pass, faithful).
- The authors report no class-wise classification run; class-wise requests use the same defaults.
  Defaults were tuned for CIFAR-10 at 10% random; other settings may need α0, T, k re-tuned (§1.6.10).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar, Iterable

import torch
from torch import Tensor, nn

from unlearnkit import transforms as T
from unlearnkit.loop import apply_updates, device_of, grad_sum, grads_of, trainable
from unlearnkit.registry import METHODS
from unlearnkit.request import Batch, UnlearnRequest
from unlearnkit.tasks import LOSS_BASED
from unlearnkit.transforms import Grads, Params

FISHER_CACHE: OrderedDict[tuple, tuple[Grads, Grads]] = OrderedDict()
PER_REQUEST_CACHES = (FISHER_CACHE,)  # cleared by the benchmark runner before each timed run


@METHODS.register("sfr-on")
@dataclass(frozen=True)
class SFROn:
    """Fisher-ratio-masked, loss-weighted ascent on forget batches, interleaved with retain descent.

    Args:
        iterations: T, number of retain steps (one per iteration).
        forget_every: k, a forget step precedes the retain step of every k-th iteration.
        lr: initial SGD learning rate, cosine-decayed to 0 over T iterations.
        momentum: SGD momentum (one buffer shared by forget and retain steps).
        weight_decay: SGD weight decay (acts on all weights, on both kinds of step).
        alpha: α0, initial forget-loss weight, cosine-decayed over T iterations.
        temperature: λ, adaptive weights w_i ∝ ℓ_i^(−λ) (0 = plain gradient ascent).
        threshold: γ, a weight is salient when F_forget / F_retain ≥ γ.
        clip: global-norm clip of the masked forget gradient (after α-scaling).
        batch_size: batch size of forget, retain and Fisher batches.
        retain_fisher_batches: retain batches used for F_retain (None = a full pass).
        slow_alpha: opt-in Lookahead slow-weight step size, synced every k iterations (None = off).
    """

    iterations: int = 1500
    forget_every: int = 5
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    alpha: float = 25.0
    temperature: float = 0.5
    threshold: float = 1.0
    clip: float = 7.0
    batch_size: int = 128
    retain_fisher_batches: int | None = None
    slow_alpha: float | None = None
    tasks: ClassVar = LOSS_BASED

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.forget_every < 1 or self.batch_size < 1:
            raise ValueError("iterations, forget_every and batch_size must be >= 1")
        if self.lr <= 0 or self.clip <= 0 or self.alpha < 0 or self.temperature < 0 or self.threshold < 0:
            raise ValueError("lr and clip must be > 0; alpha, temperature and threshold >= 0")
        if self.retain_fisher_batches is not None and self.retain_fisher_batches < 1:
            raise ValueError(f"retain_fisher_batches must be >= 1 or None, got {self.retain_fisher_batches}")
        if self.slow_alpha is not None and not 0 < self.slow_alpha <= 1:
            raise ValueError(f"slow_alpha must be in (0, 1] or None, got {self.slow_alpha}")

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        f_forget, f_retain = self.fishers(model, request)
        device = device_of(model)
        keep = {k: m.to(device) for k, m in fisher_ratio_mask(f_forget, f_retain, self.threshold).items()}
        params = trainable(model)
        lr, alpha = T.Cosine(self.lr, self.iterations), T.Cosine(self.alpha, self.iterations)
        state = T.sgd(self.lr, self.momentum, self.weight_decay).init(params)
        slow = T.lookahead(self.forget_every, self.slow_alpha) if self.slow_alpha is not None else None
        slow_state = slow.init(params) if slow is not None else None
        forget = request.stream("forget", self.batch_size)
        retain = request.stream("retain", self.batch_size)
        model.train()
        for t in range(self.iterations):
            opt = T.sgd(lr(t), self.momentum, self.weight_decay)  # one shared state, lr set per iteration
            if t % self.forget_every == 0:
                grads = forget_grads(model, request, params, next(forget).to(device), alpha(t), self.temperature,
                                     keep, self.clip)
                updates, state = opt.update(grads, state, params)
                apply_updates(params, updates)
            b = next(retain).to(device)
            updates, state = opt.update(grads_of(request.loss(model, b), params), state, params)
            if slow is not None:
                updates, slow_state = slow.update(updates, slow_state, params)
            apply_updates(params, updates)
        return model

    def fishers(self, model: nn.Module, request: UnlearnRequest) -> tuple[Grads, Grads]:
        """(F_forget, F_retain), from FISHER_CACHE when this model, data and split were seen."""
        key = (weights_digest(model), id(request.train), request.forget.numpy().tobytes(),
               request.excluded.numpy().tobytes(), request.seed, self.batch_size, self.retain_fisher_batches)
        if key not in FISHER_CACHE:
            retain = itertools.islice(request.batches("retain", self.batch_size, salt=11),
                                      self.retain_fisher_batches)
            # A stochastic loss (diffusion noise) draws from the global RNG: fork it, so the Fisher
            # depends only on model, data and seed, and a cache hit leaves the stream unchanged.
            with torch.random.fork_rng(devices=[] if device_of(model).type == "cpu" else [device_of(model)]):
                torch.manual_seed(request.seed)
                FISHER_CACHE[key] = (fisher_diagonal(model, request,
                                                     request.batches("forget", self.batch_size, salt=11)),
                                     fisher_diagonal(model, request, retain))
            while len(FISHER_CACHE) > 2:
                FISHER_CACHE.popitem(last=False)
        return FISHER_CACHE[key]


def adaptive_weights(losses: Tensor, temperature: float) -> Tensor:
    """w_i = ℓ_i^(−λ) / Σ_j ℓ_j^(−λ), detached: the best-remembered samples get the most ascent."""
    inv = 1 / (losses.detach() ** temperature + 1e-15)
    return inv / inv.sum()


def forget_grads(model: nn.Module, request: UnlearnRequest, params: Params, batch: Batch, alpha: float,
                 temperature: float, keep: Grads, clip: float) -> Grads:
    """Gradient of −α Σ w_i ℓ_i on one forget batch, masked by `keep`, then clipped to norm `clip`."""
    losses = request.loss(model, batch, reduction="none")
    loss = -alpha * (adaptive_weights(losses, temperature) * losses).sum()
    edit = T.chain(T.mask(keep), T.clip_by_global_norm(clip))
    return edit.update(grads_of(loss, params), edit.init(params), params)[0]


def fisher_diagonal(model: nn.Module, request: UnlearnRequest, batches: Iterable[Batch]) -> Grads:
    """Mean over batches of the squared gradient of the batch-mean loss, in eval mode, on the CPU."""
    n = 0

    def loss(b: Batch) -> Tensor:
        nonlocal n
        n += 1
        return request.loss(model, b)

    total = grad_sum(model, batches, loss, square=True)
    return {k: (v / max(1, n)).cpu() for k, v in total.items()}


def fisher_ratio_mask(forget: Grads, retain: Grads, threshold: float) -> Grads:
    """1 where (F_forget + 1e-15) / (F_retain + 1e-15) ≥ γ, else 0."""
    return {k: ((forget[k] + 1e-15) / (retain[k] + 1e-15) >= threshold).float() for k in forget}


def weights_digest(model: nn.Module) -> str:
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()

