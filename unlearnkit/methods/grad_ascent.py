"""GA: gradient ascent on the forget set (Thudi et al.; Graves et al.).

Defaults as in OPTML-Group/Unlearn-Sparse: 5 epochs, lr 1e-4 (the authors' class-wise value;
random forgetting needs a larger lr, 5e-4..1e-3), SGD m=0.9, wd 5e-4, train mode, no clipping.
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


@METHODS.register("ga", family="baseline", paper="Thudi et al., 2022; Graves et al., 2021 (gradient ascent)",
                  tasks=LOSS_BASED, defaults="5 epochs, lr 1e-4: the SalUn-protocol CIFAR-10 scripts "
                  "(JingWu321/Scissorhands Classification/sh/main_0.1_cifar10.sh); SGD momentum 0.9, wd 5e-4, batch 256: "
                  "the shared parser defaults")
@dataclass(frozen=True)
class GradientAscent:
    """Maximise the forget set's cross-entropy (minimise its negative).

    Args:
        epochs: passes over the forget set.
        lr: learning rate.
        momentum: SGD momentum.
        weight_decay: weight decay.
        batch_size: batch size.
        optimizer: "sgd", "adam" (torch.optim.Adam) or "adamw" (torch.optim.AdamW).
    """

    epochs: int = hp(5, ge=1, search=Range(1, 10))
    lr: float = hp(1e-4, gt=0, search=Range(1e-6, 1e-2, log=True))
    momentum: float = hp(0.9, ge=0, lt=1)
    weight_decay: float = hp(5e-4, ge=0)
    batch_size: int = hp(256, ge=1)
    optimizer: Optimizer = "sgd"

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        model = copy.deepcopy(model)
        tx = T.optimizer(self.optimizer, self.lr, self.momentum, self.weight_decay)
        batches = request.batches("forget", self.batch_size, self.epochs)
        return fit(model, batches, lambda b: -request.loss(model, b), tx, callbacks=request.callbacks)
