"""Per-split outputs and the metrics computed from them (UA, RA, TA, per-sample signals, Avg. Gap)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from unlearnkit.data import take
from unlearnkit.loop import outputs


@dataclass(frozen=True)
class Outputs:
    """A model's logits on one split, with the true labels."""

    logits: Tensor  # (n, classes)
    labels: Tensor  # (n,)

    @property
    def probs(self) -> Tensor:
        return self.logits.double().softmax(-1)


def predict(model: nn.Module, dataset: Dataset, idx: Tensor | None = None, batch_size: int | None = None) -> Outputs:
    """Eval-mode logits of `model` on `dataset[idx]` (all of it when `idx` is None), in forward
    chunks of `batch_size` (default: `loop.outputs`' per-device choice)."""
    if idx is None:
        idx = torch.arange(len(dataset))  # type: ignore[arg-type]
    chunks = [take(dataset, c) for c in idx.split(8192)]
    logits = [outputs(model, x, batch_size) for x, _ in chunks]
    return Outputs(torch.cat(logits) if logits else torch.empty(0), torch.cat([y for _, y in chunks]) if chunks else idx)


def accuracy(out: Outputs) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * (out.logits.argmax(-1) == out.labels).double().mean().item() if len(out.labels) else float("nan")


def confidence(out: Outputs) -> Tensor:
    """Softmax probability of the true label, per sample."""
    return out.probs.gather(1, out.labels[:, None]).squeeze(1)


def entropy(out: Outputs) -> Tensor:
    """Shannon entropy of the softmax output, per sample (nats)."""
    p = out.probs
    return -(p * p.clamp_min(1e-30).log()).sum(-1)


def m_entropy(out: Outputs) -> Tensor:
    """Modified entropy (Song & Mittal 2021), per sample:
    −(1 − p_y) log p_y − Σ_{i≠y} p_i log(1 − p_i). Low for confidently correct predictions."""
    p = out.probs
    py = p.gather(1, out.labels[:, None])
    terms = -p * (1 - p).clamp_min(1e-30).log()
    terms = terms.scatter(1, out.labels[:, None], -(1 - py) * py.clamp_min(1e-30).log())
    return terms.sum(-1)


def per_sample_loss(out: Outputs) -> Tensor:
    return F.cross_entropy(out.logits.double(), out.labels, reduction="none")


SIGNALS = {"confidence": confidence, "entropy": entropy, "m_entropy": m_entropy, "loss": per_sample_loss}

GAP_METRICS = ("UA", "RA", "TA", "MIA")


def avg_gap(metrics: Mapping[str, float], reference: Mapping[str, float], keys: tuple[str, ...] = GAP_METRICS) -> float:
    """Mean |metric − reference| over `keys` (Avg. Gap to Retrain; lower is better)."""
    return sum(abs(metrics[k] - reference[k]) for k in keys) / len(keys)
