"""`Generation`: class-conditional diffusion as an unlearnkit task (loss + evaluation).

The model is a noise predictor `model(x_t, t, y)` (e.g. `MODELS["unet"]`). Every method's
`request.loss(forward, batch)` becomes the denoising loss conditioned on the batch's labels, so
"descend on retain", "ascend on forget", "random labels" etc. mean what they do in the SalUn and
SFR-on DDPM code. Evaluation (`unlearnkit.generation.judge.evaluate_generation`) samples images
per class and scores them with the judge, following SalUn's DDPM protocol at a small scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from unlearnkit.data import labels_of, take
from unlearnkit.generation.diffusion import Schedule, denoising_loss, guided_denoising_loss, remap_loss, sample
from unlearnkit.method import hp, validated
from unlearnkit.registry import TASKS
from unlearnkit.tasks import Forward


@TASKS.register("generation")
@validated
@dataclass(frozen=True)
class Generation:
    """Class-conditional DDPM (ε-prediction) with classifier-free guidance.

    Metrics (judge = a CNN trained on the real training data, all classes):
      UA: % of samples conditioned on a forgotten class that the judge does NOT assign to it.
      Acc_retain: % of samples of the remaining classes that the judge assigns to their condition.
      FID: Fréchet distance of the judge's penultimate features, generated vs real TEST images of
        the remaining classes. Not Inception-FID: comparable only within one judge and sample size.
      P_forget: mean judge probability of the forgotten class on its own samples.
    Avg. Gap averages UA and Acc_retain (both in %); FID is unbounded and reported apart.

    Args:
        T: diffusion steps of the noise schedule (training and sampling).
        schedule: "linear" (β 1e-4..0.02, scaled by 1000/T) or "cosine".
        p_uncond: probability of dropping the label in the loss (classifier-free guidance).
        sampler: "ddim" (η = 0) or "ddpm" (ancestral), for evaluation.
        steps: sampling steps (strided over T).
        guidance: w in ε̂ = (1 + w)ε(x, y) − wε(x, ∅); the SalUn/SFR-on evaluations use 2.0.
        samples_per_class: images generated per class for the metrics.
        seed: seed of the sampling noise.
        clip_x0: clip predicted x_0 to the training data's range while sampling.
    """

    name: ClassVar[str] = "generation"
    metrics: ClassVar[tuple[str, ...]] = ("UA", "Acc_retain", "FID", "P_forget")
    gap_metrics: ClassVar[tuple[str, ...]] = ("UA", "Acc_retain")
    T: int = hp(1000, ge=2)
    schedule: Literal["linear", "cosine"] = "linear"
    p_uncond: float = hp(0.1, ge=0, lt=1)
    sampler: Literal["ddim", "ddpm"] = "ddim"
    steps: int = hp(50, ge=1)
    guidance: float = hp(2.0, ge=0)
    samples_per_class: int = hp(100, ge=1)
    seed: int = hp(0, ge=0)
    clip_x0: bool = True
    forget_kinds: ClassVar[tuple[str, ...]] = ("class",)  # the metrics sample per forgotten class

    def __post_init__(self) -> None:  # runs after `validated` has checked each field's type and range
        if self.steps > self.T:
            raise ValueError(f"steps must be <= T = {self.T}, got {self.steps!r}")

    @property
    def noise(self) -> Schedule:
        return Schedule(self.T, self.schedule)

    def loss(self, forward: Forward, x: Tensor, y: Tensor, reduction: str = "mean",
             target: Tensor | None = None) -> Tensor:
        """The denoising loss conditioned on `y`; with `target`, teach label `y` to act like label
        `target` on `x`: ‖ε_θ(x_t, t, y) − sg[ε_θ(x_t, t, target)]‖² (SalUn's DDPM "rl" forget
        loss, Unlearn-Saliency `DDPM/runners/diffusion.py`). The plain loss conditioned on `target`
        would instead teach `target` to draw `x`, leaving `y` untouched."""
        if target is not None:
            return remap_loss(forward, x, y, target, self.noise, reduction)
        return denoising_loss(forward, x, y, self.noise, self.p_uncond, reduction)

    def guided_loss(self, forward: Forward, x: Tensor, y: Tensor, guidance: float, reduction: str = "mean") -> Tensor:
        """The denoising loss of the classifier-free-guided prediction at scale `guidance`
        (`diffusion.guided_denoising_loss`; no label is dropped)."""
        return guided_denoising_loss(forward, x, y, self.noise, guidance, reduction)

    def check_model(self, model: nn.Module, example: Tensor, num_classes: int) -> None:
        """The model must map (x_t, t, y) to a noise prediction of x_t's shape."""
        device = next(model.parameters()).device
        x = example[:1].to(device)
        with torch.no_grad():
            out = model(x, torch.zeros(1, dtype=torch.long, device=device), torch.zeros(1, dtype=torch.long, device=device))
        if out.shape != x.shape:
            raise ValueError(f"a generation model must predict noise of the input's shape {tuple(x.shape)}, "
                             f"got {tuple(out.shape)}")

    def generate(self, model: nn.Module, labels: Tensor, train: Dataset, seed: int | None = None) -> Tensor:
        """Images for `labels` with this task's sampler settings, clipped to `train`'s range."""
        x, _ = take(train, torch.arange(min(len(labels_of(train)), 4096)))
        clip = (float(x.min()), float(x.max())) if self.clip_x0 else None
        gen = torch.Generator().manual_seed(self.seed if seed is None else seed)
        return sample(model, labels, tuple(x.shape[1:]), self.noise, self.steps, self.guidance,
                      self.sampler, gen, clip)
