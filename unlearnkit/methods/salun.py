"""SalUn: random-label unlearning restricted to the weights most salient for the forget set.

Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-Based Weight Saliency in Both Image
Classification and Generation", ICLR 2024; the authors' code OPTML-Group/Unlearn-Saliency at
a6e89fd (`Classification/generate_mask.py` l.14-82, `unlearn/RL.py`). Defaults: the
Classification README's 10% random forgetting on CIFAR-10 (10 epochs, lr 0.013, mask
`with_0.5.pt`, i.e. half of the weights trainable).

1. Saliency: in eval mode, with training augmentation on, g = Σ_batches ∇θ CE_mean over D_f at θ_o
   (the code uses −CE; the sign does not change |g|). Every parameter element (BN and biases
   included) is ranked globally by |g| and the top `keep` fraction may change.
2. RL (see `random_label.py`, whose fields SalUn shares): per epoch a forget pass with random
   labels, then a retain pass, one SGD optimiser, constant lr.

The mask multiplies the FINAL update, after weight decay and momentum (`chain(sgd, mask)`), so
frozen weights stay bit-identical, as the authors' code ensures since its fix #33 by restoring
frozen weights and their momentum after each step (`RL.py` l.11-34). `mask_stage="gradient"`
masks the gradient only (the code before that fix, and the SFR-on repository's SalUn baseline):
weight decay and momentum then still move frozen weights (Unlearn-Saliency issue #32).
Ties in |g| (e.g. exact zeros from dead units) are broken by `topk`, so exactly
int(keep · #weights) elements are trainable.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from unlearnkit import transforms as T
from unlearnkit.loop import grad_sum
from unlearnkit.method import METHODS, Optimizer, Range, hp
from unlearnkit.methods.random_label import Passes, Relabel, Schedule, relabel_and_fit
from unlearnkit.request import UnlearnRequest
from unlearnkit.tasks import LOSS_BASED
from unlearnkit.transforms import Grads


@METHODS.register("salun", family="baseline", paper="Fan et al., ICLR 2024 (SalUn)", tasks=LOSS_BASED,
                  defaults="the authors' README for 10% random forgetting on CIFAR-10 (OPTML-Group/Unlearn-Saliency "
                           "a6e89fd): keep 0.5, 10 epochs, lr 0.013 constant; SGD momentum 0.9, wd 5e-4, batch 256 "
                           "(parser defaults); RL's passes and labels")
@dataclass(frozen=True)
class SalUn:
    """Random labels on the forget set, then descent on the retain set, salient weights only.

    Args:
        keep: fraction of weights allowed to change, the largest |gradient of the forget loss|.
        epochs: rounds of (one forget pass with random labels, one retain pass), or joint passes.
        lr: learning rate.
        momentum: SGD momentum.
        weight_decay: weight decay.
        batch_size: batch size of the saliency pass and of both training passes.
        optimizer: "sgd", "adam" (torch.optim.Adam) or "adamw" (torch.optim.AdamW).
        exclude_true_label: draw random labels among the K−1 wrong classes only (default: all K).
        schedule: "constant" lr (the authors' code) or "cosine" decay over the epochs.
        passes: "sequential" (a forget pass, then a retain pass) or "joint" (one shuffled pass over both).
        relabel: "per_batch" (fresh labels for every batch) or "once" (one label per sample for the run).
        mask_stage: "update" (mask the final update: frozen weights never move) or "gradient"
            (mask the gradient only, so weight decay and momentum still move frozen weights).
    """

    keep: float = hp(0.5, gt=0, le=1, search=Range(0.1, 0.9))
    epochs: int = hp(10, ge=1, search=Range(1, 10))
    lr: float = hp(0.013, gt=0, search=Range(1e-4, 1e-1, log=True))
    momentum: float = hp(0.9, ge=0, lt=1)
    weight_decay: float = hp(5e-4, ge=0)
    batch_size: int = hp(256, ge=1)
    optimizer: Optimizer = "sgd"
    exclude_true_label: bool = False
    schedule: Schedule = "constant"
    passes: Passes = "sequential"
    relabel: Relabel = "per_batch"
    mask_stage: Literal["update", "gradient"] = "update"

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        model = copy.deepcopy(model)
        keep = saliency_mask(model, request, self.keep, self.batch_size)
        if self.mask_stage == "gradient":
            return relabel_and_fit(model, request, self, before=(T.mask(keep),))
        return relabel_and_fit(model, request, self, T.mask(keep))


def saliency_mask(model: nn.Module, request: UnlearnRequest, keep: float, batch_size: int = 256) -> Grads:
    """1 for the `keep` fraction of weights with the largest |Σ forget-loss gradient| (eval mode), else 0."""
    grads = grad_sum(model, request.batches("forget", batch_size), lambda b: request.loss(model, b))
    scores = torch.cat([g.abs().flatten() for g in grads.values()])
    flat = torch.zeros_like(scores)
    flat[scores.topk(int(keep * scores.numel())).indices] = 1.0
    sizes = [g.numel() for g in grads.values()]
    return {name: m.view_as(g) for (name, g), m in zip(grads.items(), flat.split(sizes))}
