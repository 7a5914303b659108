"""NegGrad+: descend on the retain set and ascend on the forget set in one weighted loss.

Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023 (the baseline introduced next
to SCRUB). Every step pairs a retain batch with a batch from an endless, reshuffled forget stream
and minimises

    L = β · CE(D_r batch) − (1 − β) · CE(D_f batch).

An epoch is one pass over the retain set (the forget set is cycled), as in the SCRUB notebooks'
`negative_grad` loop. Not in specs/baselines.md; defaults follow a third-party port of that
notebook (β = 0.95, 10 epochs, SGD lr 0.01 m=0.9, batch 256), except weight decay, set to the
SalUn-protocol 5e-4 shared by every baseline here (the port uses none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from unlearnkit import transforms as T
from unlearnkit.loop import fit
from unlearnkit.fields import require_training_fields
from unlearnkit.registry import METHODS
from unlearnkit.request import UnlearnRequest
from unlearnkit.tasks import LOSS_BASED


@METHODS.register("neggrad+")
@dataclass(frozen=True)
class NegGradPlus:
    """Minimise β·CE on retain batches minus (1 − β)·CE on paired forget batches.

    Args:
        beta: weight of the retain loss; the forget loss is ascended with weight 1 − beta.
        epochs: passes over the retain set (the forget batches cycle alongside).
        lr: SGD learning rate (constant).
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        batch_size: size of each retain batch and each forget batch.
        optimizer: "sgd" (momentum, weight_decay) or "adam" (AdamW, decoupled weight_decay; the diffusion papers' choice).
    """

    beta: float = 0.95
    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    optimizer: str = "sgd"
    tasks: ClassVar = LOSS_BASED

    def __post_init__(self) -> None:
        if not 0 <= self.beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")
        require_training_fields(self)

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        tx = T.optimizer(self.optimizer, self.lr, self.momentum, self.weight_decay)

        def loss(pair):
            retain = request.loss(model, pair.retain)
            forget = request.loss(model, pair.forget)
            return self.beta * retain - (1 - self.beta) * forget

        return fit(model, request.pairs(self.batch_size, self.epochs, anchor="retain"), loss, tx)
