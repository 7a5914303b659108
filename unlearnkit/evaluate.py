"""Evaluation: how well a model forgot, from one forward pass per split, reused by every metric.

`evaluate(model, request, test)` dispatches on the request's task (`EVALUATIONS`): classification
is here (UA / RA / TA / MIA-Efficacy), generation in `unlearnkit.generation.judge`.

`mia_efficacy` is the SalUn-line MIA-Efficacy: an RBF SVC (C=3, gamma="auto") fitted on one
per-sample signal, retain samples as members (1) and test samples as non-members (0); the score
is the percentage of forget samples predicted non-member. Higher = more forget samples look
unseen; the target is Retrain's value, not 100.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.svm import SVC
from torch import nn
from torch.utils.data import Dataset

from unlearnkit.data import labels_of
from unlearnkit.metrics import SIGNALS, Outputs, accuracy, per_sample_loss, predict
from unlearnkit.registry import EVALUATIONS
from unlearnkit.request import UnlearnRequest


def kept_test_indices(request: UnlearnRequest, test: Dataset) -> torch.Tensor:
    """The test set, minus the classes a class-wise request forgets (SalUn protocol)."""
    labels = labels_of(test)
    keep = ~torch.isin(labels, torch.tensor(request.classes, dtype=torch.long))
    return keep.nonzero().flatten()


def split_outputs(model: nn.Module, request: UnlearnRequest, test: Dataset) -> dict[str, Outputs]:
    return {"forget": predict(model, request.train, request.forget),
            "retain": predict(model, request.train, request.retain),
            "test": predict(model, test, kept_test_indices(request, test))}


MIA_FIT_CAP = 2500
LOSS_BIN_EDGES = torch.logspace(-5, 2, 29).tolist()  # per-sample CE, log-spaced; values outside go to the ends


def loss_histograms(model: nn.Module, request: UnlearnRequest, test: Dataset) -> dict[str, list]:
    """Counts of per-sample cross-entropy on the forget set and on the (kept) test set over
    `LOSS_BIN_EDGES`: what a membership attacker sees, for the report's histograms."""
    def counts(out: Outputs) -> list[int]:
        losses = per_sample_loss(out).float().nan_to_num(LOSS_BIN_EDGES[-1]).clamp(LOSS_BIN_EDGES[0], LOSS_BIN_EDGES[-1])
        return torch.histc(losses.log10(), len(LOSS_BIN_EDGES) - 1, -5.0, 2.0).long().tolist()

    return {"edges": LOSS_BIN_EDGES, "forget": counts(predict(model, request.train, request.forget)),
            "test": counts(predict(model, test, kept_test_indices(request, test)))}


def evaluate(model: nn.Module, request: UnlearnRequest, test: Dataset, **options) -> dict[str, float]:
    """The metrics of the request's task (`EVALUATIONS[request.task.name]`): for classification
    UA / RA / TA / MIA (`evaluate_classification`), for generation UA / Acc_retain / FID / P_forget."""
    return EVALUATIONS[request.task.name](model, request, test, **options)


def mia_efficacy(members: torch.Tensor, nonmembers: torch.Tensor, target: torch.Tensor) -> float:
    x = np.concatenate([members.numpy(), nonmembers.numpy()]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    attack = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return 100.0 * float(1 - attack.predict(target.numpy().reshape(-1, 1)).mean())


@EVALUATIONS.register("classification")
def evaluate_classification(model: nn.Module, request: UnlearnRequest, test: Dataset,
                            extra_signals: tuple[str, ...] = (), mia_fit_cap: int | None = MIA_FIT_CAP) -> dict[str, float]:
    """UA = 100 − forget accuracy, RA = retain accuracy, TA = test accuracy (forgotten classes
    removed), MIA = MIA-Efficacy on the confidence signal with the first |test| retain samples
    (stored order) as members and the test set as non-members. `extra_signals` adds
    `MIA_<signal>` for entropy, m_entropy, loss.

    Deviation, for speed: the SVC is fitted on at most `mia_fit_cap` members and as many
    non-members (fixed random subsets of the protocol's sets); an RBF SVC on 2×10k points takes
    ~30 s on two cores, on 2×2.5k about 2 s. `mia_fit_cap=None` gives the full SalUn protocol."""
    out = split_outputs(model, request, test)
    metrics = {"UA": 100.0 - accuracy(out["forget"]), "RA": accuracy(out["retain"]), "TA": accuracy(out["test"])}
    if not all(torch.isfinite(o.logits).all() for o in out.values()):
        metrics["diverged"] = 1.0  # the method blew the model up; its non-finite signals count as 0
    for signal in ("confidence",) + tuple(extra_signals):
        def fn(o: Outputs, f=SIGNALS[signal]) -> torch.Tensor:
            return torch.nan_to_num(f(o), nan=0.0, posinf=0.0, neginf=0.0)

        members, nonmembers = fn(out["retain"])[: len(out["test"].labels)], fn(out["test"])
        if mia_fit_cap is not None and len(nonmembers) > mia_fit_cap:
            gen = torch.Generator().manual_seed(0)  # a fixed random subset: stored order may be by class
            members = members[torch.randperm(len(members), generator=gen)[:mia_fit_cap]]
            nonmembers = nonmembers[torch.randperm(len(nonmembers), generator=gen)[:mia_fit_cap]]
        score = mia_efficacy(members, nonmembers, fn(out["forget"]))
        metrics["MIA" if signal == "confidence" else f"MIA_{signal}"] = score
    return metrics
