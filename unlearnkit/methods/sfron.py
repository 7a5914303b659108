"""SFR-on: saliency-masked adaptive gradient ascent interleaved with retain fine-tuning.

Huang et al., "Unified Gradient-Based Machine Unlearning with Remain Geometry Enhancement",
NeurIPS 2024 (arXiv 2409.19732); follows the official K1nght/Unified-Unlearning-w-Remain-Geometry
at 36bb7f6: `Classification/unlearn/sfron.py` (CIFAR-10 10% settings, the defaults here) and, for
class-conditional diffusion, `DDPM/runners/diffusion.py: sfron_forget` with
`configs/cifar10_sfron.yml` (the generation recipe below).

Stage A (once): empirical Fisher diagonals from squared mini-batch-mean loss gradients in eval
mode, F_f over the forget set and F_r over the retain set; mask M = 1[(F_f + 1e-15)/(F_r + 1e-15)
≥ γ] on every parameter. Stage B: T iterations with ONE optimiser state (SGD with momentum and
weight decay, cosine lr over T, for classification). Every k-th iteration a forget step: per-sample
losses ℓ_i, detached weights w_i ∝ ℓ_i^(−λ) summing to 1, loss −α_t Σ w_i ℓ_i with
α_t = α0 (1 + cos(π t/T))/2, gradient masked by M, then clipped to global norm `clip`; then,
every iteration, a plain retain step (its gradient clipped to `retain_clip` when set).

The official DDPM recipe (`diffusion.py` l.1038-1208, `cifar10_sfron.yml`) differs in values and
in three mechanisms, each a field here: `optimizer="adam"` (Adam, lr 1e-4, no weight decay) with
`schedule="constant"`, `forget_every=1`, `alpha=10`, `clip=1` and `retain_clip=1` (both steps
clipped at 1), `pixel_sum=True` (the denoising loss summed over pixels, not averaged: the clip
thresholds are set for that scale), and a Fisher on the classifier-free-guided output
(`fisher_guidance=2`, ε̂ = 3ε(c) − 2ε(∅)) with each batch's gradient clipped to norm 1 before
squaring (`fisher_clip=1`). `benchmarks/generation.toml` runs that recipe; the config's
n_iters is 150, the paper's abstract claims forgetting "in just 50 steps". Left out: antithetic
timesteps (t and T−t−1 paired in a batch) and the 1e-8 (not 1e-15) in the weights' denominator.

Choices, each as in the official code unless said otherwise:
- Only the forget gradient is masked; momentum and weight decay act on every weight on both kinds
  of step, so masked weights still move. Train mode in Stage B.
- Batches use `request.augment` (training augmentation), also for the Fisher, as the code does.
- "Fast-slow update": in the official code this is the interleaving itself (its EMA has β = 1, a
  no-op, and is dropped here). `slow_alpha` adds an explicit Lookahead (slow ← slow + α(fast −
  slow), synchronised every k iterations) as an opt-in ablation; None (default) is the official
  behaviour.
- The Fisher diagonals are cached in-process (`FISHER_CACHE`, two entries) keyed by the weights'
  and the data's fingerprints, the forget / excluded ids and the Fisher's settings, as the official
  code caches them on disk. `retain_fisher_batches` optionally subsamples D_r for F_r (None = one
  full pass, faithful).
- The authors report no class-wise classification run; class-wise requests use the same defaults.
  Defaults were tuned for CIFAR-10 at 10% random; the authors' issue #1 advises raising α0 or
  lowering k when forgetting is too weak.
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Literal

import torch
from torch import Tensor, nn

from unlearnkit import distributed
from unlearnkit import transforms as T
from unlearnkit.checkpoint import digest
from unlearnkit.data import fingerprint
from unlearnkit.loop import fit, grads_of, trainable
from unlearnkit.method import METHODS, Optimizer, Range, hp
from unlearnkit.models import device_of, weights_fingerprint
from unlearnkit.request import Batch, UnlearnRequest
from unlearnkit.tasks import LOSS_BASED
from unlearnkit.transforms import Grads

FISHER_CACHE: OrderedDict[str, tuple[Grads, Grads]] = OrderedDict()
PER_REQUEST_CACHES = (FISHER_CACHE,)  # cleared by the benchmark runner before each timed run


@METHODS.register("sfr-on", family="reproduced", paper="Huang et al., NeurIPS 2024 (SFR-on)", tasks=LOSS_BASED,
                  defaults="the official CIFAR-10 10% settings (K1nght/Unified-Unlearning-w-Remain-Geometry 36bb7f6, "
                           "Classification/unlearn/sfron.py): 1500 iterations, a forget step every 5, SGD lr 0.01 "
                           "cosine, momentum 0.9, wd 5e-4, alpha0 25, lambda 0.5, gamma 1, clip 7, batch 128")
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
        optimizer: "sgd" (classification), "adam" (the DDPM recipe) or "adamw".
        schedule: "cosine" lr decay over T (classification) or "constant" (the DDPM recipe).
        retain_clip: global-norm clip of every retain gradient (None = off; the DDPM recipe: 1).
        pixel_sum: sum each sample's loss over its input elements instead of averaging (the DDPM
            code's scale; generation only).
        fisher_guidance: estimate the Fisher on the classifier-free-guided output at this scale
            (generation only; None = the plain loss; the DDPM recipe: 2).
        fisher_clip: clip each batch's gradient to this global norm before squaring it into the
            Fisher (None = off; the DDPM recipe: 1).
    """

    iterations: int = hp(1500, ge=1, search=Range(100, 2000, log=True))
    forget_every: int = hp(5, ge=1, search=Range(1, 10))
    lr: float = hp(0.01, gt=0, search=Range(1e-3, 1e-1, log=True))
    momentum: float = hp(0.9, ge=0, lt=1)
    weight_decay: float = hp(5e-4, ge=0)
    alpha: float = hp(25.0, ge=0, search=Range(0.5, 50, log=True))
    temperature: float = hp(0.5, ge=0, search=Range(0.0, 1.0))
    threshold: float = hp(1.0, ge=0)
    clip: float = hp(7.0, gt=0)
    batch_size: int = hp(128, ge=1)
    retain_fisher_batches: int | None = hp(None, ge=1)
    slow_alpha: float | None = hp(None, gt=0, le=1)
    optimizer: Optimizer = "sgd"
    schedule: Literal["cosine", "constant"] = "cosine"
    retain_clip: float | None = hp(None, gt=0)
    pixel_sum: bool = False
    fisher_guidance: float | None = hp(None, ge=0)
    fisher_clip: float | None = hp(None, gt=0)

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        if (self.pixel_sum or self.fisher_guidance is not None) and not hasattr(request.task, "guided_loss"):
            raise ValueError("pixel_sum and fisher_guidance apply to the generation task only")
        model = copy.deepcopy(model)
        f_forget, f_retain = self.fishers(model, request)
        device = device_of(model)
        keep = {k: m.to(device) for k, m in fisher_ratio_mask(f_forget, f_retain, self.threshold).items()}
        steps_per_iteration = tuple(2 if t % self.forget_every == 0 else 1 for t in range(self.iterations))
        lr = T.PerEpoch(T.Cosine(self.lr, self.iterations), steps_per_iteration) if self.schedule == "cosine" \
            else self.lr
        alpha = T.Cosine(self.alpha, self.iterations)
        slow = [T.lookahead(self.forget_every + 1, self.slow_alpha)] if self.slow_alpha is not None else []
        retain_edit = [T.edit("retain", T.clip_by_global_norm(self.retain_clip))] if self.retain_clip else []
        tx = T.chain(T.edit("forget", forget_edit(keep, self.clip)), *retain_edit, T.total(),
                     T.optimizer(self.optimizer, lr, self.momentum, self.weight_decay), *slow)
        scale = request.train[0][0].numel() if self.pixel_sum else 1  # per-sample loss summed over elements
        forget = request.stream("forget", self.batch_size)
        retain = request.stream("retain", self.batch_size)

        def steps():
            for t in range(self.iterations):
                if t % self.forget_every == 0:
                    yield "forget", t, next(forget)
                yield "retain", t, next(retain)

        def loss(step: tuple) -> dict[str, Tensor]:
            kind, t, b = step
            if kind == "forget":
                losses = request.loss(model, b, reduction="none") * scale
                return {"forget": weighted_ascent(losses, alpha(t), self.temperature)}
            return {"retain": request.loss(model, b) * scale}

        return fit(model, steps(), loss, tx, callbacks=request.callbacks)

    def fishers(self, model: nn.Module, request: UnlearnRequest) -> tuple[Grads, Grads]:
        """(F_forget, F_retain), from FISHER_CACHE when this model, data and split were seen."""
        key = digest(weights_fingerprint(model), fingerprint(request.train), request.forget, request.excluded,
                     request.seed, self.batch_size, self.retain_fisher_batches, self.fisher_guidance, self.fisher_clip,
                     self.pixel_sum)
        if key not in FISHER_CACHE:
            retain = itertools.islice(request.batches("retain", self.batch_size, salt=11),
                                      self.retain_fisher_batches)
            # A stochastic loss (diffusion noise) draws from the global RNG: fork it, so the Fisher
            # depends only on model, data and seed, and a cache hit leaves the stream unchanged.
            with torch.random.fork_rng(devices=[] if device_of(model).type == "cpu" else [device_of(model)]):
                torch.manual_seed(request.seed)
                forget = request.batches("forget", self.batch_size, salt=11)
                FISHER_CACHE[key] = (self.fisher_diagonal(model, request, forget),
                                     self.fisher_diagonal(model, request, retain))
            while len(FISHER_CACHE) > 2:
                FISHER_CACHE.popitem(last=False)
        return FISHER_CACHE[key]

    def fisher_diagonal(self, model: nn.Module, request: UnlearnRequest, batches: Iterable[Batch]) -> Grads:
        """`fisher_diagonal` with this method's loss: guided and pixel-summed as set, each batch's
        gradient clipped to `fisher_clip`."""
        scale = request.train[0][0].numel() if self.pixel_sum else 1

        def loss(b: Batch) -> Tensor:
            if self.fisher_guidance is not None:
                return request.task.guided_loss(model, b.x, b.y, self.fisher_guidance) * scale
            return request.loss(model, b) * scale

        return fisher_diagonal(model, batches, loss, self.fisher_clip)


def forget_edit(keep: Grads, clip: float) -> T.Transform:
    """The edit of every forget gradient: masked by `keep`, then clipped to global norm `clip`."""
    return T.chain(T.mask(keep), T.clip_by_global_norm(clip))


def weighted_ascent(losses: Tensor, alpha: float, temperature: float) -> Tensor:
    """−α Σ w_i ℓ_i with the adaptive weights w (`adaptive_weights`): the forget step's loss. Under
    torchrun each process holds part of the sum; it is scaled by the number of processes, so the
    averaged gradient is the whole sum's."""
    return -alpha * (adaptive_weights(losses, temperature) * losses).sum() * distributed.world()


def adaptive_weights(losses: Tensor, temperature: float) -> Tensor:
    """w_i = ℓ_i^(−λ) / Σ_j ℓ_j^(−λ), detached, normalised over the whole batch (all processes'
    shards under torchrun): the best-remembered samples get the most ascent."""
    inv = 1 / (losses.detach() ** temperature + 1e-15)
    return inv / distributed.total(inv.sum())


def fisher_diagonal(model: nn.Module, batches: Iterable[Batch], loss: Callable[[Batch], Tensor],
                    clip: float | None = None) -> Grads:
    """Mean over batches of the squared gradient of `loss` (a batch mean; under torchrun the whole
    batch's, averaged over the processes' shards), in eval mode, on the CPU; with `clip`, each
    batch's gradient is first scaled down to global norm `clip`."""
    params = trainable(model)
    total = {k: torch.zeros_like(p) for k, p in params.items()}
    model.eval()
    n = 0
    device = device_of(model)
    edit = T.clip_by_global_norm(clip) if clip is not None else None
    for b in batches:
        g = distributed.average(grads_of(loss(b.to(device)), params))  # the global batch's, under torchrun
        if edit is not None:
            g = edit.update(g, None, params)[0]
        for k in total:
            total[k] += g[k] ** 2
        n += 1
    return {k: (v / max(1, n)).cpu() for k, v in total.items()}


def fisher_ratio_mask(forget: Grads, retain: Grads, threshold: float) -> Grads:
    """1 where (F_forget + 1e-15) / (F_retain + 1e-15) ≥ γ, else 0."""
    return {k: ((forget[k] + 1e-15) / (retain[k] + 1e-15) >= threshold).float() for k in forget}
