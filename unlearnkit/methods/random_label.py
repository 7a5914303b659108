"""RL: relabel the forget set at random and fine-tune on it together with the retain set.

Golatkar et al. / Hayase et al. Defaults follow the SalUn authors' code for CIFAR-10
(OPTML-Group/Unlearn-Saliency at a6e89fd, `Classification/unlearn/RL.py` l.109-176 and
`unlearn/impl.py` l.68-114): every epoch is one pass over D_f whose labels are drawn afresh for
every batch, uniformly over all K classes (`torch.randint`, so a sample keeps its true label with
probability 1/K), followed by one pass over D_r with the true labels, all through ONE SGD
optimiser (momentum carries over between the passes; the authors confirm the sequential order in
their issue #21). The learning rate is constant: `impl.py` steps a MultiStepLR with milestones at
epochs 91 and 136, never reached in 10 epochs. 10 epochs, SGD m=0.9, wd 5e-4, batch 256, lr 0.01
(the parser default; the authors tune it in 1e-4..1e-1).

Other readings, each a field:
- `passes="joint"`: one shuffled pass over D_f ∪ D_r per epoch (the same code's CIFAR-100 /
  TinyImageNet branch, l.51-107, and the RL/SalUn baselines of the SFR-on repository).
- `relabel="once"`: one random label per forget sample for the whole run (the SFR-on repository's
  baselines; the CIFAR-100 branch draws once per epoch), instead of fresh labels every batch.
- `exclude_true_label=True`: draw among the K−1 other classes (the SFR-on repository, Amnesiac).
- `schedule="cosine"`: cosine decay of the lr over the epochs (the SFR-on repository's baselines).
`passes="joint"` needs the classification task (on generation a forget and a retain sample take
different losses, so the passes stay apart).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterator, Literal

import torch
from torch import Tensor, nn

from unlearnkit import distributed
from unlearnkit import transforms as T
from unlearnkit.loop import fit
from unlearnkit.method import METHODS, Optimizer, Range, hp
from unlearnkit.request import Batch, UnlearnRequest
from unlearnkit.tasks import LOSS_BASED

Schedule = Literal["constant", "cosine"]
Passes = Literal["sequential", "joint"]
Relabel = Literal["per_batch", "once"]


@METHODS.register("rl", family="baseline", paper="Golatkar et al., 2020; Hayase et al., 2020 (random labels)",
                  tasks=LOSS_BASED, defaults="the SalUn authors' CIFAR-10 code (OPTML-Group/Unlearn-Saliency a6e89fd): "
                  "10 epochs, lr 0.01 (parser default) held constant, SGD momentum 0.9, wd 5e-4, batch 256, a forget "
                  "pass with labels redrawn per batch over all classes, then a retain pass")
@dataclass(frozen=True)
class RandomLabel:
    """Each epoch: descend on the forget set with random labels, then on the retain set with true labels.

    Args:
        epochs: rounds of (one forget pass, one retain pass), or joint passes.
        lr: learning rate.
        momentum: SGD momentum, shared by the forget and retain passes.
        weight_decay: weight decay.
        batch_size: batch size of both passes.
        optimizer: "sgd", "adam" (torch.optim.Adam) or "adamw" (torch.optim.AdamW).
        exclude_true_label: draw random labels among the K−1 wrong classes only (default: all K).
        schedule: "constant" lr (the authors' code) or "cosine" decay over the epochs.
        passes: "sequential" (a forget pass, then a retain pass) or "joint" (one shuffled pass over both).
        relabel: "per_batch" (fresh labels for every batch) or "once" (one label per sample for the run).
    """

    epochs: int = hp(10, ge=1, search=Range(1, 10))
    lr: float = hp(0.01, gt=0, search=Range(1e-4, 1e-1, log=True))
    momentum: float = hp(0.9, ge=0, lt=1)
    weight_decay: float = hp(5e-4, ge=0)
    batch_size: int = hp(256, ge=1)
    optimizer: Optimizer = "sgd"
    exclude_true_label: bool = False
    schedule: Schedule = "constant"
    passes: Passes = "sequential"
    relabel: Relabel = "per_batch"

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        return relabel_and_fit(copy.deepcopy(model), request, self)


def relabel_and_fit(model: nn.Module, request: UnlearnRequest, cfg: Any, *edits: T.Transform,
                    before: tuple[T.Transform, ...] = ()) -> nn.Module:
    """RL's training as `cfg` (an RL or SalUn object) sets it: each gradient edited by `before`,
    then the optimiser, then each update edited by `edits` (SalUn's mask, at one stage or the other)."""
    batches = relabelled_passes(request, cfg.batch_size, cfg.epochs, cfg.exclude_true_label, cfg.passes, cfg.relabel)
    per_epoch = steps_per_epoch(request, cfg.batch_size, cfg.passes)
    lr = T.PerEpoch(T.Cosine(cfg.lr, cfg.epochs), (per_epoch,) * cfg.epochs) if cfg.schedule == "cosine" else cfg.lr
    tx = T.chain(*before, T.optimizer(cfg.optimizer, lr, cfg.momentum, cfg.weight_decay), *edits)
    return fit(model, batches, lambda b: request.loss(model, b), tx, callbacks=request.callbacks)


def steps_per_epoch(request: UnlearnRequest, batch_size: int, passes: str) -> int:
    n_f, n_r = len(request.forget), len(request.retain)
    return -(-(n_f + n_r) // batch_size) if passes == "joint" else -(-n_f // batch_size) + -(-n_r // batch_size)


def relabelled_passes(request: UnlearnRequest, batch_size: int, epochs: int, exclude_true_label: bool = False,
                      passes: str = "sequential", relabel: str = "per_batch") -> Iterator[Batch]:
    """Per epoch, batches whose forget samples carry random labels (`target`) and whose retain
    samples carry their own: a forget pass then a retain pass, or one joint shuffled pass."""
    if passes == "joint" and request.task.name != "classification":
        raise ValueError("passes='joint' needs the classification task; use passes='sequential'")
    fixed = random_labels(request.labels[request.forget], request.num_classes, exclude_true_label) \
        if relabel == "once" else None
    position = torch.full((len(request.labels),), -1, dtype=torch.long)
    position[request.forget] = torch.arange(len(request.forget))

    def relabelled(b: Batch) -> Batch:
        pos = position[b.idx]
        is_f = pos >= 0
        whole = b.whole if is_f.all() else None  # a shard of a forget batch: labels drawn for the whole batch
        drawn = fixed[pos[is_f]] if fixed is not None else random_labels(b.y[is_f], request.num_classes,
                                                                         exclude_true_label, whole)
        target = b.y.clone()
        target[is_f] = drawn
        return Batch(b.x, b.y, b.idx, target=target)

    for epoch in range(epochs):
        if passes == "joint":
            yield from (relabelled(b) for b in request.batches("all", batch_size, salt=epoch))
            continue
        yield from (relabelled(b) for b in request.batches("forget", batch_size, salt=epoch))
        yield from request.batches("retain", batch_size, salt=epoch)


def random_labels(y: Tensor, num_classes: int, exclude_true_label: bool = False, whole: int | None = None) -> Tensor:
    """Uniform labels in [0, K) from the global RNG, or uniform over the K−1 classes other than `y`.
    Under torchrun, when `y` is a shard of a batch of `whole` samples, the draw is made for the
    whole batch (`distributed.draw`), so every process labels its shard as one process would."""
    low = 1 if exclude_true_label else 0
    shift = distributed.draw(lambda n: torch.randint(low, num_classes, (n,)), len(y), whole)
    return (y + shift) % num_classes if exclude_true_label else shift
