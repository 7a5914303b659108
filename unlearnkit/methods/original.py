"""Original: do nothing. The trained model as it stands, the row every table measures change against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from unlearnkit.tasks import LOSS_BASED

from unlearnkit.registry import METHODS
from unlearnkit.request import UnlearnRequest


@METHODS.register("original")
@dataclass(frozen=True)
class Original:
    """Return the model unchanged (a reference row: how much each method moved the metrics).

    Args:
        (none): this method has no hyper-parameters.
    """

    tasks: ClassVar = LOSS_BASED

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        return model
