"""RL: relabel the forget set at random and fine-tune, then repair on the retain set.

Golatkar et al. / Hayase et al.; the schedule is OPTML-Group/Unlearn-Saliency `unlearn/RL.py`
(CIFAR-10/SVHN branch, specs/baselines.md §3): every epoch is one pass over D_f with fresh random
labels, followed by one pass over D_r with the true labels, all through ONE SGD optimiser
(momentum carries over between the passes). 10 epochs, SGD m=0.9, wd 5e-4, batch 256; the lr is
tuned in 1e-4..1e-1 by the authors, the default 0.01 is their parser default.

Ambiguities and choices:
- Labels are drawn uniformly over all K classes (`torch.randint`, global RNG), so a forget sample
  may keep its true label (prob. 1/K), as in the code. `exclude_true_label=True` draws among the
  other K−1 classes instead (SFR-on's and Amnesiac's variant).
- The passes are sequential, not a summed forget+retain loss (authors, Unlearn-Saliency #21).
  The CIFAR-100/TinyImageNet branch of the code (one shuffled pass over D_f ∪ D_r) is not offered.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor, nn

from unlearnkit import transforms as T
from unlearnkit.loop import fit
from unlearnkit.method import METHODS, Optimizer, Range, hp
from unlearnkit.request import Batch, UnlearnRequest
from unlearnkit.tasks import LOSS_BASED


@METHODS.register("rl", family="baseline", paper="Golatkar et al., 2020; Hayase et al., 2020 (random labels)",
                  tasks=LOSS_BASED)
@dataclass(frozen=True)
class RandomLabel:
    """Each epoch: descend on the forget set with random labels, then on the retain set with true labels.

    Args:
        epochs: rounds of (one forget pass, one retain pass).
        lr: learning rate (constant).
        momentum: SGD momentum, shared by the forget and retain passes.
        weight_decay: weight decay.
        batch_size: batch size of both passes.
        optimizer: "sgd", "adam" (torch.optim.Adam) or "adamw" (torch.optim.AdamW).
        exclude_true_label: draw random labels among the K−1 wrong classes only (default: all K).
    """

    epochs: int = hp(10, ge=1, search=Range(1, 10))
    lr: float = hp(0.01, gt=0, search=Range(1e-4, 1e-1, log=True))
    momentum: float = hp(0.9, ge=0, lt=1)
    weight_decay: float = hp(5e-4, ge=0)
    batch_size: int = hp(256, ge=1)
    optimizer: Optimizer = "sgd"
    exclude_true_label: bool = False

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        model = copy.deepcopy(model)
        tx = T.optimizer(self.optimizer, self.lr, self.momentum, self.weight_decay)
        batches = relabelled_passes(request, self.batch_size, self.epochs, self.exclude_true_label)
        return fit(model, batches, lambda b: request.loss(model, b), tx, callbacks=request.callbacks)


def relabelled_passes(request: UnlearnRequest, batch_size: int, epochs: int,
                      exclude_true_label: bool = False) -> Iterator[Batch]:
    """Per epoch: the forget batches with random labels, then the retain batches as they are."""
    for epoch in range(epochs):
        for b in request.batches("forget", batch_size, salt=epoch):
            yield Batch(b.x, b.y, b.idx, target=random_labels(b.y, request.num_classes, exclude_true_label))
        yield from request.batches("retain", batch_size, salt=epoch)


def random_labels(y: Tensor, num_classes: int, exclude_true_label: bool = False) -> Tensor:
    """Uniform labels in [0, K) from the global RNG, or uniform over the K−1 classes other than `y`."""
    if exclude_true_label:
        return (y + torch.randint(1, num_classes, y.shape)) % num_classes
    return torch.randint(0, num_classes, y.shape)
