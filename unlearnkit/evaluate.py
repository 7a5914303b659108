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


MIA_FIT_CAP = 2500  # members (and as many non-members) per attack: an RBF SVC on 2 × 2,500 points fits in ~0.5 s
MIA_REPEATS = 5  # attacks per evaluation, each on its own random draw: MIA is their mean, MIA_std their spread
MIN_MIA_SAMPLES = 100  # below this many samples per class, or in the forget set, a record says its MIA is noisy
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
    """% of `target` samples an RBF SVC (C=3, gamma="auto"), fitted on `members` (1) vs
    `nonmembers` (0) of one per-sample signal, predicts to be non-members."""
    x = np.concatenate([members.numpy(), nonmembers.numpy()]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    attack = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return 100.0 * float(1 - attack.predict(target.numpy().reshape(-1, 1)).mean())


def balanced_mia(members: torch.Tensor, nonmembers: torch.Tensor, target: torch.Tensor, gen: torch.Generator,
                 cap: int | None = MIA_FIT_CAP, repeats: int = MIA_REPEATS) -> tuple[float, float, int]:
    """MIA-Efficacy averaged over `repeats` attacks, each fitted on its own random draw of n
    members and n non-members, n = min(|members|, |non-members|, cap): the two classes are always
    equal in size. Returns (mean, std over the attacks, n)."""
    n = min(len(members), len(nonmembers), cap or len(members) + len(nonmembers))
    scores = [mia_efficacy(members[torch.randperm(len(members), generator=gen)[:n]],
                           nonmembers[torch.randperm(len(nonmembers), generator=gen)[:n]], target)
              for _ in range(repeats)]
    return float(np.mean(scores)), float(np.std(scores, ddof=1)) if repeats > 1 else 0.0, n


@EVALUATIONS.register("classification")
def evaluate_classification(model: nn.Module, request: UnlearnRequest, test: Dataset,
                            extra_signals: tuple[str, ...] = (), mia_fit_cap: int | None = MIA_FIT_CAP,
                            mia_repeats: int = MIA_REPEATS) -> dict[str, float]:
    """UA = 100 − forget accuracy, RA = retain accuracy, TA = test accuracy (forgotten classes
    removed), MIA = MIA-Efficacy on the confidence signal: the mean over `mia_repeats` attacks,
    each an SVC fitted on its own random draw of n retain samples (members) and n test samples
    (non-members), n = min(|retain|, |test|, `mia_fit_cap`); MIA_std is the spread over those
    attacks and MIA_n their n. The draws are seeded from the request, so a request always gets
    the same attacks. `mia_fit_cap=None` draws as many as the smaller set has (the SalUn
    protocol's sizes, balanced). `extra_signals` adds `MIA_<signal>` for entropy, m_entropy, loss.
    A model with non-finite outputs is marked `diverged` (its non-finite signals count as 0)."""
    out = split_outputs(model, request, test)
    metrics = {"UA": 100.0 - accuracy(out["forget"]), "RA": accuracy(out["retain"]), "TA": accuracy(out["test"])}
    if not all(torch.isfinite(o.logits).all() for o in out.values()):
        metrics["diverged"] = 1.0
    for signal in ("confidence",) + tuple(extra_signals):
        def fn(o: Outputs, f=SIGNALS[signal]) -> torch.Tensor:
            return torch.nan_to_num(f(o), nan=0.0, posinf=0.0, neginf=0.0)

        gen = request.generator(29)
        mean, std, n = balanced_mia(fn(out["retain"]), fn(out["test"]), fn(out["forget"]), gen, mia_fit_cap,
                                    mia_repeats)
        name = "MIA" if signal == "confidence" else f"MIA_{signal}"
        metrics.update({name: mean, f"{name}_std": std})
        metrics.setdefault("MIA_n", float(n))
    return metrics


def evaluation_warnings(metrics: dict[str, float], request: UnlearnRequest) -> list[str]:
    """What makes a record's figures less trustworthy than they look, in words for the record."""
    warnings = []
    if metrics.get("MIA_n", MIN_MIA_SAMPLES) < MIN_MIA_SAMPLES:
        warnings.append(f"MIA: each attack is fitted on only {int(metrics['MIA_n'])} members and as many non-members "
                        f"(fewer than {MIN_MIA_SAMPLES}); its score is noisy")
    if len(request.forget) < MIN_MIA_SAMPLES:
        warnings.append(f"MIA: the forget set has only {len(request.forget)} samples (fewer than {MIN_MIA_SAMPLES}); "
                        "MIA-Efficacy moves in steps of {:.1f} points".format(100 / len(request.forget)))
    if metrics.get("diverged"):
        warnings.append("diverged: the model produced non-finite outputs")
    return warnings
