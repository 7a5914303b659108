"""Checks shared by methods' `__post_init__`: hyper-parameters are validated where they are declared."""

from __future__ import annotations

from typing import Any


def require_training_fields(method: Any) -> None:
    """ValueError unless the method's `epochs` and `batch_size` are >= 1, its `lr` is > 0 and its
    `optimizer` (if it has one) is "sgd" or "adam"."""
    if method.epochs < 1 or method.batch_size < 1 or method.lr <= 0:
        raise ValueError(f"epochs and batch_size must be >= 1 and lr > 0, got {method}")
    if getattr(method, "optimizer", "sgd") not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {method.optimizer!r}")
