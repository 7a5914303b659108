"""ℓ1-sparse: fine-tune on the retain set with a decaying ℓ1 penalty on the weights.

Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023; OPTML-Group
`unlearn/FT.py: FT_l1` (`--unlearn FT_prune`, specs/baselines.md §3). The loss on a retain batch
in epoch e (0-based) of E is

    CE + γ_e · ‖θ‖₁,   γ_e = γ · (1 − e / (E − no_l1_epochs)) while e < E − no_l1_epochs, else 0,

with ‖θ‖₁ over ALL trainable parameters (BatchNorm and biases included), as in the code. No
pruning happens (prune-then-unlearn with OMP is a separate pipeline). 10 epochs, lr 0.01,
SGD m=0.9, wd 5e-4, batch 256. γ is the code's `--alpha`: its parser default 0.2 wrecks the model,
so the default here is 1e-4, the value of the SalUn-protocol scripts in JingWu321/Scissorhands.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from torch import nn

from unlearnkit import transforms as T
from unlearnkit.loop import fit, trainable
from unlearnkit.method import METHODS, Range, hp
from unlearnkit.request import UnlearnRequest
from unlearnkit.tasks import LOSS_BASED


@METHODS.register("l1-sparse", family="baseline", paper="Jia et al., NeurIPS 2023 (model sparsity)", tasks=LOSS_BASED,
                  defaults="10 epochs, lr 0.01, SGD momentum 0.9, wd 5e-4, batch 256: OPTML-Group/Unlearn-Sparse FT_l1; "
                           "gamma 1e-4: the SalUn-protocol CIFAR-10 script (Scissorhands main_0.1_cifar10.sh; the "
                           "code's parser default 0.2 wrecks the model)")
@dataclass(frozen=True)
class L1Sparse:
    """Descend on the retain set's cross-entropy plus a linearly decaying γ·‖θ‖₁.

    Args:
        gamma: initial ℓ1 weight γ (the code's --alpha).
        no_l1_epochs: final epochs without the penalty; γ reaches 0 at epoch epochs − no_l1_epochs.
        epochs: passes over the retain set.
        lr: SGD learning rate (constant).
        momentum: SGD momentum.
        weight_decay: SGD weight decay (L2, on top of the ℓ1 term).
        batch_size: batch size.
    """

    gamma: float = hp(1e-4, ge=0, search=Range(1e-6, 1e-3, log=True))
    no_l1_epochs: int = hp(0, ge=0)
    epochs: int = hp(10, ge=1, search=Range(1, 10))
    lr: float = hp(0.01, gt=0, search=Range(1e-4, 1e-1, log=True))
    momentum: float = hp(0.9, ge=0, lt=1)
    weight_decay: float = hp(5e-4, ge=0)
    batch_size: int = hp(256, ge=1)

    def __post_init__(self) -> None:
        if not self.no_l1_epochs <= self.epochs:
            raise ValueError(f"no_l1_epochs must be in [0, epochs={self.epochs}], got {self.no_l1_epochs}")

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        model = copy.deepcopy(model)
        steps_per_epoch = math.ceil(len(request.retain) / self.batch_size)
        l1 = EpochDecay(self.gamma, self.epochs - self.no_l1_epochs, steps_per_epoch)
        tx = T.chain(T.weighted(ce=1.0, l1=l1), T.sgd(self.lr, self.momentum, self.weight_decay))
        params = trainable(model)

        def loss(b):
            return {"ce": request.loss(model, b), "l1": sum(p.abs().sum() for p in params.values())}

        return fit(model, request.batches("retain", self.batch_size, self.epochs), loss, tx, callbacks=request.callbacks)


@dataclass(frozen=True)
class EpochDecay:
    """A per-step schedule constant within an epoch: γ·(1 − e/decay_epochs) in epoch
    e = step // steps_per_epoch while e < decay_epochs, then 0."""

    gamma: float
    decay_epochs: int
    steps_per_epoch: int

    def __call__(self, step: int) -> float:
        epoch = step // self.steps_per_epoch
        return self.gamma * (1 - epoch / self.decay_epochs) if epoch < self.decay_epochs else 0.0
