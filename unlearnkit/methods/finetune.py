"""FT: fine-tune the trained model on the retain set only (catastrophic forgetting of the rest).

Warnock et al.; defaults as in OPTML-Group/Unlearn-Sparse (10 epochs, lr 0.01, SGD m=0.9, wd 5e-4).
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


@METHODS.register("ft", family="baseline", paper="Warnock et al., 2022 (fine-tuning)", tasks=LOSS_BASED,
                  defaults="10 epochs, lr 0.01 constant, SGD momentum 0.9, weight decay 5e-4, batch 256: the SalUn line's "
                           "FT (OPTML-Group/Unlearn-Sparse and Unlearn-Saliency parser defaults)")
@dataclass(frozen=True)
class FineTune:
    """Descend on the retain set's cross-entropy.

    Args:
        epochs: passes over the retain set.
        lr: learning rate (constant, as in the SalUn-line code for ≤10 epochs).
        momentum: SGD momentum.
        weight_decay: weight decay.
        batch_size: batch size.
        optimizer: "sgd", "adam" (torch.optim.Adam) or "adamw" (torch.optim.AdamW).
    """

    epochs: int = hp(10, ge=1, search=Range(1, 10))
    lr: float = hp(0.01, gt=0, search=Range(1e-4, 1e-1, log=True))
    momentum: float = hp(0.9, ge=0, lt=1)
    weight_decay: float = hp(5e-4, ge=0)
    batch_size: int = hp(256, ge=1)
    optimizer: Optimizer = "sgd"

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        model = copy.deepcopy(model)
        tx = T.optimizer(self.optimizer, self.lr, self.momentum, self.weight_decay)
        batches = request.batches("retain", self.batch_size, self.epochs)
        return fit(model, batches, lambda b: request.loss(model, b), tx, callbacks=request.callbacks)
