"""What a model is trained to do: the loss every method descends or ascends.

A method never calls a loss function itself; it calls `request.loss(forward, batch)`, which asks
`request.task`. `forward` is the model, or the model at other parameters (a lookahead point). So
one method file serves classification (cross-entropy of logits) and class-conditional generation
(a diffusion model's denoising loss conditioned on the label, `unlearnkit.generation`). A method
that needs more than the loss (logits, confidences) registers with the tasks it supports. How a
task's models are judged lives above the methods, in `unlearnkit.evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Protocol

import torch.nn.functional as F
from torch import Tensor, nn

from unlearnkit.models import num_outputs
from unlearnkit.registry import TASKS

Forward = Callable[..., Tensor]


class Task(Protocol):
    name: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]  # the report's columns, in order
    gap_metrics: ClassVar[tuple[str, ...]]  # what Avg. Gap to Retrain averages over

    def loss(self, forward: Forward, x: Tensor, y: Tensor, reduction: str = "mean",
             target: Tensor | None = None) -> Tensor:
        """The training loss of `forward` on (x, y); with `target`, the loss that makes samples of
        label y behave as label `target` (what "random labels" means for this task)."""

    def check_model(self, model: nn.Module, example: Tensor, num_classes: int) -> None:
        """Raise ValueError when `model` cannot serve this task on data like `example`."""


@TASKS.register("classification")
@dataclass(frozen=True)
class Classification:
    """Cross-entropy of logits; evaluated by UA / RA / TA / MIA-Efficacy (`unlearnkit.evaluate`)."""

    name: ClassVar[str] = "classification"
    metrics: ClassVar[tuple[str, ...]] = ("UA", "RA", "TA", "MIA")
    gap_metrics: ClassVar[tuple[str, ...]] = ("UA", "RA", "TA", "MIA")

    def loss(self, forward: Forward, x: Tensor, y: Tensor, reduction: str = "mean",
             target: Tensor | None = None) -> Tensor:
        return F.cross_entropy(forward(x), y if target is None else target, reduction=reduction)

    def check_model(self, model: nn.Module, example: Tensor, num_classes: int) -> None:
        outputs = num_outputs(model, example)
        if outputs != num_classes:
            raise ValueError(f"the model has {outputs} outputs but the data has {num_classes} classes")


LOSS_BASED = ("classification", "generation")  # the tasks of a method that only uses the task's loss
