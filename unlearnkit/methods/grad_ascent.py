"""GA: gradient ascent on the forget set (Thudi et al.; Graves et al.).

Defaults as in OPTML-Group/Unlearn-Sparse: 5 epochs, lr 1e-4 (the authors' class-wise value;
random forgetting needs a larger lr, 5e-4..1e-3), SGD m=0.9, wd 5e-4, train mode, no clipping.
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


@METHODS.register("ga")
@dataclass(frozen=True)
class GradientAscent:
    """Maximise the forget set's cross-entropy (minimise its negative).

    Args:
        epochs: passes over the forget set.
        lr: SGD learning rate.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        batch_size: batch size.
        optimizer: "sgd" (momentum, weight_decay) or "adam" (AdamW, decoupled weight_decay; the diffusion papers' choice).
    """

    epochs: int = 5
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    optimizer: str = "sgd"
    tasks: ClassVar = LOSS_BASED

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        tx = T.optimizer(self.optimizer, self.lr, self.momentum, self.weight_decay)
        batches = request.batches("forget", self.batch_size, self.epochs)
        return fit(model, batches, lambda b: -request.loss(model, b), tx)
