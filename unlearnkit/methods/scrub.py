"""SCRUB: a student that stays close to the original teacher on D_r and moves away from it on D_f.

Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023; meghdadk/SCRUB
`helper/loops.py: train_distill` and the port in the SFR-on repo (specs/baselines.md §3).
The teacher is a frozen eval-mode copy of the original; the student is a copy trained in train
mode. With KL = KL(teacher ‖ student) at temperature T, scaled by T² (`DistillKL`), each epoch e:

    if e < msteps: one max-pass over D_f minimising −KL
    always:        one min-pass over D_r minimising γ·CE + α·KL

through ONE SGD optimiser whose lr follows a per-epoch cosine decay (CosineAnnealingLR stepped
once per epoch, as in SFR-on). Defaults: the SFR-on repo's CIFAR-10 block (commented out there in
favour of the TinyImageNet one): 6 epochs, msteps 2, lr 8e-5, wd 5e-4, m=0.9, γ 0.99, α 0.001,
T 4, batch 128 for both passes.

Choices: `msteps` counts max-passes (SFR-on's 1-based `epoch <= msteps`); meghdadk/SCRUB's
`scrub.py` loops 0-based with `epoch <= msteps`, i.e. one max-pass more for the same value. The
SGDA smoothing term p·‖θ − θ_swa‖ is omitted: every CIFAR-10 configuration sets p = 0.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearnkit import transforms as T
from unlearnkit.loop import fit
from unlearnkit.method import METHODS, Range, hp
from unlearnkit.request import UnlearnRequest


@METHODS.register("scrub", family="baseline", paper="Kurmanji et al., NeurIPS 2023 (SCRUB)",
                  defaults="the SFR-on repository's CIFAR-10 SCRUB block: 6 epochs, msteps 2, lr 8e-5 cosine per "
                           "epoch, wd 5e-4, momentum 0.9, gamma 0.99, alpha 0.001, temperature 4, batch 128")
@dataclass(frozen=True)
class SCRUB:
    """Alternate max-steps (diverge from the teacher on D_f) and min-steps (match it and the labels on D_r).

    Args:
        epochs: number of min-passes over the retain set.
        msteps: number of leading epochs that start with a max-pass over the forget set.
        lr: initial SGD learning rate, cosine-decayed once per epoch.
        momentum: SGD momentum, shared by the max- and min-passes.
        weight_decay: SGD weight decay.
        gamma: weight γ of the retain cross-entropy in the min-step.
        alpha: weight α of the retain KL to the teacher in the min-step.
        temperature: distillation temperature T (both KL terms, scaled by T²).
        batch_size: batch size of both passes.
    """

    epochs: int = hp(6, ge=1, search=Range(2, 10))
    msteps: int = hp(2, ge=0, search=Range(1, 5))
    lr: float = hp(8e-5, gt=0, search=Range(1e-5, 1e-2, log=True))
    momentum: float = hp(0.9, ge=0, lt=1)
    weight_decay: float = hp(5e-4, ge=0)
    gamma: float = hp(0.99, ge=0)
    alpha: float = hp(0.001, ge=0, search=Range(1e-4, 1.0, log=True))
    temperature: float = hp(4.0, gt=0)
    batch_size: int = hp(128, ge=1)

    def __post_init__(self) -> None:
        if not self.msteps <= self.epochs:
            raise ValueError(f"msteps must be in [0, epochs={self.epochs}], got {self.msteps}")

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        model = copy.deepcopy(model)
        teacher = frozen_copy(model)
        forget_batches = math.ceil(len(request.forget) / self.batch_size)
        retain_batches = math.ceil(len(request.retain) / self.batch_size)
        lengths = tuple((forget_batches if e < self.msteps else 0) + retain_batches for e in range(self.epochs))
        tx = T.sgd(T.PerEpoch(T.Cosine(self.lr, self.epochs), lengths), self.momentum, self.weight_decay)

        def passes():
            for epoch in range(self.epochs):
                if epoch < self.msteps:
                    yield from (("max", b) for b in request.batches("forget", self.batch_size, salt=epoch))
                yield from (("min", b) for b in request.batches("retain", self.batch_size, salt=epoch))

        def loss(step: tuple[str, object]) -> Tensor:
            kind, b = step
            out = model(b.x)
            with torch.no_grad():
                target = teacher(b.x)
            kl = distill_kl(out, target, self.temperature)
            if kind == "max":
                return -kl
            return self.gamma * F.cross_entropy(out, b.y) + self.alpha * kl

        return fit(model, passes(), loss, tx, callbacks=request.callbacks)


def distill_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """KL(softmax(teacher/T) ‖ softmax(student/T)) · T², averaged over the batch (RepDistiller's DistillKL)."""
    log_p = F.log_softmax(student / temperature, dim=1)
    return F.kl_div(log_p, F.softmax(teacher / temperature, dim=1), reduction="batchmean") * temperature**2


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode without gradients: a fixed reference (SCRUB's teacher, BS's FGSM oracle)."""
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference
