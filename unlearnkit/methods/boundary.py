"""Boundary Shrink (BS) and Boundary Expanding (BE): move the forget samples across the decision boundary.

Chen et al., "Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the Decision
Space", CVPR 2023; OPTML-Group/Unlearn-Saliency `unlearn/boundary_sh.py`, `boundary_ex.py`
(specs/baselines.md §3). Both train on the forget set only, in train mode, for 10 epochs with SGD
m=0.9, wd 5e-4, batch 256 and a tiny lr: 1e-6 is the SalUn-protocol scripts' value for 10% random
forgetting (5e-6 for 50%); the authors search from 1e-8 upwards.

BS: a frozen eval-mode copy of the original labels each forget batch with its prediction on the
one-step FGSM image x + ε·sign(∇x CE(x, y)), the "nearest other class", and the model descends on
CE(model(x), that label). The code takes ε = 0.1 in [0, 1] pixel space, then clamps to [0, 1] and
rounds to 1/255. Our inputs are standardised (per-channel std ≈ 1), where that ε has no exact
equivalent: `eps` is in input units, default 0.1 (≈ 0.1 · data std), and there is no clamp or
quantisation. ε = 0.1 in CIFAR-10 pixels is ≈ 0.4 in standardised units (pixel std ≈ 0.25).

BE: the last `nn.Linear` of the model (the last one in `named_modules()` order, i.e. registration
order) gets one extra "shadow" output, fresh nn.Linear init, and the model descends on CE towards
that shadow class. The shadow neuron is then pruned, as in the CVPR paper (the SalUn code never
removes it, which inflates UA): the original head, with its K trained rows, is put back, so the
returned model has the original output size and state-dict keys.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearnkit import transforms as T
from unlearnkit.loop import fit
from unlearnkit.method import METHODS, Range, hp
from unlearnkit.methods.scrub import frozen_copy
from unlearnkit.request import UnlearnRequest

BOUNDARY = "Chen et al., CVPR 2023 (Boundary Unlearning)"


@METHODS.register("bs", family="baseline", paper=BOUNDARY,
                  defaults="10 epochs, lr 1e-6: the SalUn-protocol scripts for 10% random forgetting; SGD momentum "
                           "0.9, wd 5e-4, batch 256: parser defaults; eps 0.1 in input units: our choice (the "
                           "code's 0.1 pixel step has no exact equivalent on standardised inputs)")
@dataclass(frozen=True)
class BoundaryShrink:
    """Fine-tune each forget sample towards the class a frozen copy predicts on its FGSM neighbour.

    Args:
        eps: FGSM step in input units (data are standardised: 0.1 ≈ 0.1 · data std).
        epochs: passes over the forget set.
        lr: SGD learning rate (constant; tiny by design).
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        batch_size: batch size.
    """

    eps: float = hp(0.1, gt=0, search=Range(0.01, 1.0, log=True))
    epochs: int = hp(10, ge=1, search=Range(1, 10))
    lr: float = hp(1e-6, gt=0, search=Range(1e-7, 1e-3, log=True))
    momentum: float = hp(0.9, ge=0, lt=1)
    weight_decay: float = hp(5e-4, ge=0)
    batch_size: int = hp(256, ge=1)

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        model = copy.deepcopy(model)
        reference = frozen_copy(model)
        tx = T.sgd(self.lr, self.momentum, self.weight_decay)

        def loss(b):
            return F.cross_entropy(model(b.x), nearest_other_class(reference, b.x, b.y, self.eps))

        return fit(model, request.batches("forget", self.batch_size, self.epochs), loss, tx, callbacks=request.callbacks)


@METHODS.register("be", family="baseline", paper=BOUNDARY,
                  defaults="10 epochs, lr 1e-6: the SalUn-protocol scripts for 10% random forgetting; SGD momentum "
                           "0.9, wd 5e-4, batch 256: parser defaults")
@dataclass(frozen=True)
class BoundaryExpand:
    """Fine-tune the forget set into an extra shadow class of the last linear layer, then prune that class.

    Args:
        epochs: passes over the forget set.
        lr: SGD learning rate (constant; tiny by design).
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        batch_size: batch size.
    """

    epochs: int = hp(10, ge=1, search=Range(1, 10))
    lr: float = hp(1e-6, gt=0, search=Range(1e-7, 1e-3, log=True))
    momentum: float = hp(0.9, ge=0, lt=1)
    weight_decay: float = hp(5e-4, ge=0)
    batch_size: int = hp(256, ge=1)

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        model = copy.deepcopy(model)
        parent, name, head = last_linear(model)
        if head.out_features != request.num_classes:
            raise ValueError(f"the last nn.Linear ({name!r}) has {head.out_features} outputs, "
                             f"not the request's {request.num_classes} classes: it is not the classifier head")
        wide = with_shadow_class(head)
        setattr(parent, name, wide)
        tx = T.sgd(self.lr, self.momentum, self.weight_decay)
        shadow = request.num_classes
        batches = request.batches("forget", self.batch_size, self.epochs)
        fit(model, batches, lambda b: F.cross_entropy(model(b.x), torch.full_like(b.y, shadow)), tx,
            callbacks=request.callbacks)
        with torch.no_grad():
            head.weight.copy_(wide.weight[:shadow])
            if head.bias is not None:
                head.bias.copy_(wide.bias[:shadow])
        setattr(parent, name, head)
        return model


def nearest_other_class(reference: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """`reference`'s predicted labels on the one-step FGSM images x + eps·sign(∇x CE(reference(x), y)).

    Token ids (integer inputs) have no gradient: the step is taken on the output of the model's
    first nn.Embedding / nn.EmbeddingBag instead (eps in embedding units)."""
    if x.is_floating_point():
        x_adv = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(reference(x_adv), y), x_adv)
        with torch.no_grad():
            return reference(x + eps * grad.sign()).argmax(1)
    embedding = next((m for m in reference.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))), None)
    if embedding is None:
        raise ValueError("bs needs floating-point inputs, or an nn.Embedding to perturb for integer inputs")
    seen: dict[str, Tensor] = {}

    def leaf(module: nn.Module, args: tuple, out: Tensor) -> Tensor:
        seen["e"] = out.detach().requires_grad_(True)
        return seen["e"]

    handle = embedding.register_forward_hook(leaf)
    try:
        (grad,) = torch.autograd.grad(F.cross_entropy(reference(x), y), seen["e"])
    finally:
        handle.remove()
    handle = embedding.register_forward_hook(lambda module, args, out: out + eps * grad.sign())
    try:
        with torch.no_grad():
            return reference(x).argmax(1)
    finally:
        handle.remove()


def last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The last `nn.Linear` in `model.named_modules()` order, with its parent module and attribute name."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and name]
    if not found:
        raise ValueError("the model has no nn.Linear submodule to expand")
    path, layer = found[-1]
    parent_path, _, name = path.rpartition(".")
    return model.get_submodule(parent_path), name, layer


def with_shadow_class(head: nn.Linear) -> nn.Linear:
    """A copy of `head` with one extra output row (fresh nn.Linear init; global RNG)."""
    wide = nn.Linear(head.in_features, head.out_features + 1, bias=head.bias is not None,
                     device=head.weight.device, dtype=head.weight.dtype)
    with torch.no_grad():
        wide.weight[:-1].copy_(head.weight)
        if head.bias is not None:
            wide.bias[:-1].copy_(head.bias)
    return wide
