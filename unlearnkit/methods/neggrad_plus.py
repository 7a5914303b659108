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

import copy
from dataclasses import dataclass

from torch import nn

from unlearnkit import transforms as T
from unlearnkit.loop import fit
from unlearnkit.method import METHODS, Optimizer, Range, hp
from unlearnkit.request import UnlearnRequest
from unlearnkit.tasks import LOSS_BASED


@METHODS.register("neggrad+", family="baseline", paper="Kurmanji et al., NeurIPS 2023 (NegGrad+)", tasks=LOSS_BASED,
                  defaults="beta 0.95, 10 epochs, lr 0.01, SGD momentum 0.9, batch 256: a third-party port of the SCRUB "
                           "notebooks' NegGrad+; weight decay 5e-4: our choice, the value every SalUn-line baseline uses")
@dataclass(frozen=True)
class NegGradPlus:
    """Minimise β·CE on retain batches minus (1 − β)·CE on paired forget batches.

    Args:
        beta: weight of the retain loss; the forget loss is ascended with weight 1 − beta.
        epochs: passes over the retain set (the forget batches cycle alongside).
        lr: learning rate (constant).
        momentum: SGD momentum.
        weight_decay: weight decay.
        batch_size: size of each retain batch and each forget batch.
        optimizer: "sgd", "adam" (torch.optim.Adam) or "adamw" (torch.optim.AdamW).
    """

    beta: float = hp(0.95, ge=0, le=1, search=Range(0.5, 0.999))
    epochs: int = hp(10, ge=1, search=Range(1, 10))
    lr: float = hp(0.01, gt=0, search=Range(1e-4, 1e-1, log=True))
    momentum: float = hp(0.9, ge=0, lt=1)
    weight_decay: float = hp(5e-4, ge=0)
    batch_size: int = hp(256, ge=1)
    optimizer: Optimizer = "sgd"

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        model = copy.deepcopy(model)
        tx = T.optimizer(self.optimizer, self.lr, self.momentum, self.weight_decay)

        def loss(pair):
            retain = request.loss(model, pair.retain)
            forget = request.loss(model, pair.forget)
            return self.beta * retain - (1 - self.beta) * forget

        return fit(model, request.pairs(self.batch_size, self.epochs, anchor="retain"), loss, tx, callbacks=request.callbacks)
