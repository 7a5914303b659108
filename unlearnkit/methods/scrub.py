"""SCRUB: a student that stays close to the original teacher on D_r and moves away from it on D_f.

Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023; meghdadk/SCRUB
`helper/loops.py: train_distill` and the port in the SFR-on repo (specs/baselines.md §3).
The teacher is a frozen eval-mode copy of the original; the student is the model itself (train
mode). With KL = KL(teacher ‖ student) at temperature T, scaled by T² (`DistillKL`), each epoch e:

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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearnkit import transforms as T
from unlearnkit.loop import apply_updates, device_of, grads_of, trainable
from unlearnkit.fields import require_training_fields
from unlearnkit.registry import METHODS
from unlearnkit.request import UnlearnRequest


@METHODS.register("scrub")
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

    epochs: int = 6
    msteps: int = 2
    lr: float = 8e-5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    gamma: float = 0.99
    alpha: float = 0.001
    temperature: float = 4.0
    batch_size: int = 128

    def __post_init__(self) -> None:
        if not 0 <= self.msteps <= self.epochs:
            raise ValueError(f"msteps must be in [0, epochs={self.epochs}], got {self.msteps}")
        if self.gamma < 0 or self.alpha < 0 or self.temperature <= 0:
            raise ValueError(f"gamma and alpha must be >= 0 and temperature > 0, got {self}")
        require_training_fields(self)

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        teacher = frozen_copy(model)
        params, device = trainable(model), device_of(model)
        state = T.sgd(self.lr).init(params)
        lr = T.Cosine(self.lr, self.epochs)
        model.train()

        def kl(x: Tensor, student: Tensor) -> Tensor:
            with torch.no_grad():
                target = teacher(x)
            return distill_kl(student, target, self.temperature)

        def step(opt: T.SGD, loss: Tensor) -> None:
            nonlocal state
            updates, state = opt.update(grads_of(loss, params), state, params)
            apply_updates(params, updates)

        for epoch in range(self.epochs):
            opt = T.sgd(lr(epoch), self.momentum, self.weight_decay)  # one momentum buffer, lr per epoch
            if epoch < self.msteps:
                for b in request.batches("forget", self.batch_size, salt=epoch):
                    x = b.x.to(device)
                    step(opt, -kl(x, model(x)))
            for b in request.batches("retain", self.batch_size, salt=epoch):
                b = b.to(device)
                out = model(b.x)
                step(opt, self.gamma * F.cross_entropy(out, b.y) + self.alpha * kl(b.x, out))
        return model


def distill_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """KL(softmax(teacher/T) ‖ softmax(student/T)) · T², averaged over the batch (RepDistiller's DistillKL)."""
    log_p = F.log_softmax(student / temperature, dim=1)
    return F.kl_div(log_p, F.softmax(teacher / temperature, dim=1), reduction="batchmean") * temperature**2


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode without gradients: a fixed reference (SCRUB's teacher, BS's FGSM oracle)."""
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference
