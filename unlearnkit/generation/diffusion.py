"""Gaussian diffusion (DDPM, ε-prediction): the noise schedule, the denoising loss, DDIM/DDPM samplers.

Classifier-free guidance uses the convention of the SalUn / SFR-on DDPM code
(`_forward_with_cond_scale`): ε̂ = (1 + w)·ε(x, y) − w·ε(x, ∅). w = 0 is the plain conditional
model; the papers' "cond_scale 2.0" is w = 2 here.

The model contract is `forward(x_t, t, y)` -> predicted noise, where `y = NULL_LABEL` (-1) means
"no label" (see `unlearnkit.generation.unet`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch
from torch import Tensor, nn

from unlearnkit.generation.unet import NULL_LABEL

Forward = Callable[..., Tensor]


@dataclass(frozen=True)
class Schedule:
    """β_1..β_T. "linear": Ho et al.'s 1e-4..0.02 for T = 1000, scaled by 1000/T for other T so
    that ᾱ_T stays ≈ 0 (Nichol & Dhariwal); "cosine": Nichol & Dhariwal's cosine ᾱ (s = 0.008)."""

    T: int = 1000
    kind: str = "linear"

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "cosine") or self.T < 2:
            raise ValueError(f"schedule must be 'linear' or 'cosine' with T >= 2, got {self.kind!r}, T={self.T}")

    def alpha_bars(self, device: torch.device | str = "cpu") -> Tensor:
        """ᾱ_t = Π_{s≤t} (1 − β_s) for t = 0..T−1 (float32 on `device`)."""
        return _alpha_bars(self, str(device))


@lru_cache(maxsize=32)
def _alpha_bars(s: Schedule, device: str) -> Tensor:
    if s.kind == "linear":
        betas = torch.linspace(1e-4 * 1000 / s.T, 0.02 * 1000 / s.T, s.T, dtype=torch.float64)
    else:
        f = torch.cos((torch.arange(s.T + 1, dtype=torch.float64) / s.T + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0).float().to(device)


def noised(x: Tensor, schedule: Schedule) -> tuple[Tensor, Tensor, Tensor]:
    """(x_t, t, ε): x_t = √ᾱ_t x + √(1−ᾱ_t) ε with t ~ U{0..T−1} and ε ~ N(0, I), from the global RNG."""
    t = torch.randint(0, schedule.T, (x.shape[0],), device=x.device)
    noise = torch.randn_like(x)
    ab = schedule.alpha_bars(x.device)[t].view(-1, *([1] * (x.dim() - 1)))
    return ab.sqrt() * x + (1 - ab).sqrt() * noise, t, noise


def denoising_loss(forward: Forward, x: Tensor, y: Tensor, schedule: Schedule, p_uncond: float = 0.1,
                   reduction: str = "mean") -> Tensor:
    """‖ε − ε_θ(√ᾱ_t x + √(1−ᾱ_t) ε, t, y')‖², averaged over pixels, with t ~ U{0..T−1},
    ε ~ N(0, I) and y' = NULL_LABEL with probability `p_uncond` (classifier-free guidance training).

    Draws from the global RNG on x's device, so it is deterministic under `torch.manual_seed`.
    reduction "none" gives one value per sample; "mean" / "sum" reduce over the batch. (The SalUn
    and SFR-on code sum over pixels; the mean here differs by the constant C·H·W.)
    """
    n = x.shape[0]
    x_t, t, noise = noised(x, schedule)
    if p_uncond > 0:
        y = torch.where(torch.rand(n, device=x.device) < p_uncond, torch.full_like(y, NULL_LABEL), y)
    return _reduce((forward(x_t, t, y) - noise).pow(2).flatten(1).mean(1), reduction)


def remap_loss(forward: Forward, x: Tensor, y: Tensor, target: Tensor, schedule: Schedule,
               reduction: str = "mean") -> Tensor:
    """‖ε_θ(x_t, t, y) − sg[ε_θ(x_t, t, target)]‖² per sample (pixel mean), same t and ε for both."""
    x_t, t, _ = noised(x, schedule)
    with torch.no_grad():
        goal = forward(x_t, t, target)
    return _reduce((forward(x_t, t, y) - goal).pow(2).flatten(1).mean(1), reduction)


def guided_denoising_loss(forward: Forward, x: Tensor, y: Tensor, schedule: Schedule, guidance: float,
                          reduction: str = "mean") -> Tensor:
    """‖ε − ε̂_w(x_t, t, y)‖² per sample (pixel mean) with the classifier-free-guided prediction
    ε̂_w = (1 + w)·ε(x_t, t, y) − w·ε(x_t, t, ∅) (`guided_eps`): every label kept, none dropped.
    SFR-on's official DDPM code estimates its Fisher on this output (w = 2)."""
    x_t, t, noise = noised(x, schedule)
    return _reduce((guided_eps(forward, x_t, t, y, guidance) - noise).pow(2).flatten(1).mean(1), reduction)


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return per_sample
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


def guided_eps(forward: Forward, x: Tensor, t: Tensor, y: Tensor, guidance: float) -> Tensor:
    """ε̂ = (1 + w)·ε(x, y) − w·ε(x, ∅); one batched forward of 2n when w ≠ 0."""
    if guidance == 0:
        return forward(x, t, y)
    both = forward(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, NULL_LABEL)]))
    cond, uncond = both.chunk(2)
    return (1 + guidance) * cond - guidance * uncond


def timesteps(schedule: Schedule, steps: int) -> list[int]:
    """`steps` timesteps from T−1 down to 0, evenly strided (all T when steps >= T)."""
    steps = min(steps, schedule.T)
    return sorted({round(v) for v in torch.linspace(0, schedule.T - 1, steps).tolist()}, reverse=True)


@torch.no_grad()
def sample(model: nn.Module, labels: Tensor, shape: tuple[int, ...], schedule: Schedule, steps: int = 50,
           guidance: float = 2.0, sampler: str = "ddim", generator: torch.Generator | None = None,
           clip: tuple[float, float] | None = None, batch_size: int = 500) -> Tensor:
    """Images of shape (len(labels), *shape) on the CPU, one per label, in eval mode.

    sampler "ddim" is deterministic DDIM (η = 0) given the starting noise; "ddpm" is ancestral
    sampling with the posterior variance β̃ (DDIM with η = 1), strided when steps < T.
    `clip` bounds the predicted x_0 at every step (the data's range; the papers clip to [−1, 1]).
    Noise comes from `generator` (a CPU generator), so samples do not depend on the device.
    """
    if sampler not in ("ddim", "ddpm"):
        raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {sampler!r}")
    eta = 0.0 if sampler == "ddim" else 1.0
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    ab_all = schedule.alpha_bars(device)
    seq = timesteps(schedule, steps)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    out = []
    for y in labels.long().split(batch_size):
        y = y.to(device)
        x = torch.randn((len(y), *shape), generator=gen).to(device)
        for t, t_prev in zip(seq, seq[1:] + [-1]):
            ab, ab_prev = ab_all[t], (ab_all[t_prev] if t_prev >= 0 else torch.ones((), device=device))
            eps = guided_eps(model, x, torch.full((len(y),), t, device=device), y, guidance)
            x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
            if clip is not None:
                x0 = x0.clamp(*clip)
                eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
            sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
            x = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
            if t_prev >= 0 and eta > 0:
                x = x + sigma * torch.randn(x.shape, generator=gen).to(device)
        out.append(x.float().cpu())
    for m, mode in modes:
        m.training = mode
    return torch.cat(out) if out else torch.empty((0, *shape))
