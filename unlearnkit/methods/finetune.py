"""FT: fine-tune the trained model on the retain set only (catastrophic forgetting of the rest).

Warnock et al.; defaults as in OPTML-Group/Unlearn-Sparse (10 epochs, lr 0.01, SGD m=0.9, wd 5e-4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from unlearnkit import transforms as T
from unlearnkit.fields import require_training_fields
from unlearnkit.loop import fit
from unlearnkit.registry import METHODS
from unlearnkit.request import UnlearnRequest
from unlearnkit.tasks import LOSS_BASED


@METHODS.register("ft")
@dataclass(frozen=True)
class FineTune:
    """Descend on the retain set's cross-entropy.

    Args:
        epochs: passes over the retain set.
        lr: SGD learning rate (constant, as in the SalUn-line code for ≤10 epochs).
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        batch_size: batch size.
        optimizer: "sgd" (momentum, weight_decay) or "adam" (AdamW, decoupled weight_decay; the diffusion papers' choice).
    """

    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    optimizer: str = "sgd"
    tasks: ClassVar = LOSS_BASED

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        tx = T.optimizer(self.optimizer, self.lr, self.momentum, self.weight_decay)
        batches = request.batches("retain", self.batch_size, self.epochs)
        return fit(model, batches, lambda b: request.loss(model, b), tx)
