"""What a model is trained to do: the loss every method descends or ascends, and how it is judged.

A method never calls a loss function itself; it calls `request.loss(forward, batch)`, which asks
`request.task`. `forward` is the model, or the model at other parameters (a lookahead point). So
one method file serves classification (cross-entropy of logits) and class-conditional generation
(a diffusion model's denoising loss conditioned on the label, `unlearnkit.generation`). A method
that needs more than the loss (logits, confidences) lists the tasks it supports in `tasks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol

import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from unlearnkit.registry import TASKS

if TYPE_CHECKING:
    from unlearnkit.request import UnlearnRequest

Forward = Callable[..., Tensor]


class Task(Protocol):
    name: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]  # the report's columns, in order
    gap_metrics: ClassVar[tuple[str, ...]]  # what Avg. Gap to Retrain averages over

    def loss(self, forward: Forward, x: Tensor, y: Tensor, reduction: str = "mean",
             target: Tensor | None = None) -> Tensor:
        """The training loss of `forward` on (x, y); with `target`, the loss that makes samples of
        label y behave as label `target` (what "random labels" means for this task)."""

    def evaluate(self, model: nn.Module, request: "UnlearnRequest", test: Dataset,
                 extra_signals: tuple[str, ...] = ()) -> dict[str, float]: ...

    def check_model(self, model: nn.Module, example: Tensor, num_classes: int) -> None:
        """Raise ValueError when `model` cannot serve this task on data like `example`."""


@TASKS.register("classification")
@dataclass(frozen=True)
class Classification:
    """Cross-entropy of logits; evaluated by UA / RA / TA / MIA-Efficacy (`unlearnkit.eval`)."""

    name: ClassVar[str] = "classification"
    metrics: ClassVar[tuple[str, ...]] = ("UA", "RA", "TA", "MIA")
    gap_metrics: ClassVar[tuple[str, ...]] = ("UA", "RA", "TA", "MIA")

    def loss(self, forward: Forward, x: Tensor, y: Tensor, reduction: str = "mean",
             target: Tensor | None = None) -> Tensor:
        return F.cross_entropy(forward(x), y if target is None else target, reduction=reduction)

    def evaluate(self, model: nn.Module, request: "UnlearnRequest", test: Dataset,
                 extra_signals: tuple[str, ...] = ()) -> dict[str, float]:
        from unlearnkit.eval.evaluate import evaluate

        return evaluate(model, request, test, extra_signals)

    def loss_histograms(self, model: nn.Module, request: "UnlearnRequest", test: Dataset) -> dict[str, list]:
        from unlearnkit.eval.evaluate import loss_histograms

        return loss_histograms(model, request, test)

    def check_model(self, model: nn.Module, example: Tensor, num_classes: int) -> None:
        from unlearnkit.models import num_outputs

        outputs = num_outputs(model, example)
        if outputs != num_classes:
            raise ValueError(f"the model has {outputs} outputs but the data has {num_classes} classes")


LOSS_BASED = ("classification", "generation")  # `tasks` of a method that only uses the task's loss


def supported_tasks(method: Any) -> tuple[str, ...]:
    """The tasks a method runs on: its `tasks` attribute, or classification only."""
    return tuple(getattr(method, "tasks", (Classification.name,)))


def check_supported(method: Any, task: Task, name: str = "") -> None:
    if task.name not in supported_tasks(method):
        raise ValueError(f"method {name or type(method).__name__} does not support the {task.name} task; "
                         f"it supports {list(supported_tasks(method))}")
