"""SalUn: random-label unlearning restricted to the weights most salient for the forget set.

Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-Based Weight Saliency in Both Image
Classification and Generation", ICLR 2024; OPTML-Group/Unlearn-Saliency `generate_mask.py` and
`unlearn/RL.py` (specs/baselines.md §3). Defaults: Classification/README for 10% random forgetting
on CIFAR-10 (10 epochs, lr 0.013, mask `with_0.5.pt`, i.e. half of the weights trainable).

1. Saliency: in eval mode, with training augmentation on, g = Σ_batches ∇θ CE_mean over D_f at θ_o
   (the code uses −CE; the sign does not change |g|). Every parameter element (BN and biases
   included) is ranked globally by |g| and the top `keep` fraction may change.
2. RL (see `random_label.py`): per epoch a forget pass with random labels, then a retain pass,
   one SGD optimiser.

The mask multiplies the FINAL update, after weight decay and momentum (`chain(sgd, mask)`), so
frozen weights stay bit-identical: the behaviour of the code after its PR #33. Before that fix
weight decay and momentum still moved masked weights (Unlearn-Saliency #32); not offered here.
Ties in |g| (e.g. exact zeros from dead units) are broken by `topk`, so exactly
int(keep · #weights) elements are trainable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from unlearnkit import transforms as T
from unlearnkit.loop import fit, grad_sum
from unlearnkit.methods.random_label import relabelled_passes
from unlearnkit.fields import require_training_fields
from unlearnkit.registry import METHODS
from unlearnkit.request import UnlearnRequest
from unlearnkit.tasks import LOSS_BASED
from unlearnkit.transforms import Grads


@METHODS.register("salun")
@dataclass(frozen=True)
class SalUn:
    """Random labels on the forget set, then descent on the retain set, salient weights only.

    Args:
        keep: fraction of weights allowed to change, the largest |gradient of the forget loss|.
        epochs: rounds of (one forget pass with random labels, one retain pass).
        lr: SGD learning rate (constant).
        momentum: SGD momentum (applied before the mask: frozen weights never move).
        weight_decay: SGD weight decay (applied before the mask: frozen weights never move).
        batch_size: batch size of the saliency pass and of both training passes.
        optimizer: "sgd" (momentum, weight_decay) or "adam" (AdamW, decoupled weight_decay; the diffusion papers' choice).
        exclude_true_label: draw random labels among the K−1 wrong classes only (default: all K).
    """

    keep: float = 0.5
    epochs: int = 10
    lr: float = 0.013
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    optimizer: str = "sgd"
    tasks: ClassVar = LOSS_BASED
    exclude_true_label: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {self.keep}")
        require_training_fields(self)

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        keep = saliency_mask(model, request, self.keep, self.batch_size)
        tx = T.chain(T.optimizer(self.optimizer, self.lr, self.momentum, self.weight_decay), T.mask(keep))
        batches = relabelled_passes(request, self.batch_size, self.epochs, self.exclude_true_label)
        return fit(model, batches, lambda b: request.loss(model, b), tx)


def saliency_mask(model: nn.Module, request: UnlearnRequest, keep: float, batch_size: int = 256) -> Grads:
    """1 for the `keep` fraction of weights with the largest |Σ forget-loss gradient| (eval mode), else 0."""
    grads = grad_sum(model, request.batches("forget", batch_size), lambda b: request.loss(model, b))
    scores = torch.cat([g.abs().flatten() for g in grads.values()])
    flat = torch.zeros_like(scores)
    flat[scores.topk(int(keep * scores.numel())).indices] = 1.0
    sizes = [g.numel() for g in grads.values()]
    return {name: m.view_as(g) for (name, g), m in zip(grads.items(), flat.split(sizes))}
