"""Evaluation of generation: a judge (a classifier trained on the real training data) scores generated images.

It stands in for the papers' external classifier (a ResNet-34 on CIFAR-10 in SalUn / SFR-on) and,
through its penultimate features, for Inception in FID. **This FID is NOT comparable to
Inception-FID** or to any published number: it is a Fréchet distance in the judge's own 128-d
feature space, meaningful only between models scored by the same judge, on the same reference
images, with the same number of samples (the estimate is biased upward at small sample counts).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from unlearnkit.checkpoint import CheckpointError, cache_dir, digest, load_model, save_model
from unlearnkit.data import labels_of, take
from unlearnkit.metrics import outputs
from unlearnkit.models import build_model
from unlearnkit.registry import EVALUATIONS
from unlearnkit.request import UnlearnRequest
from unlearnkit.train import Recipe, train_model

JUDGE_MODEL = "cnn"  # a Sequential whose last layer maps the 128-d penultimate features to logits


def judge_recipe(n: int) -> Recipe:
    """Enough epochs for ~98% test accuracy on digits and ~91% on Fashion-MNIST, in ~2k+ steps."""
    return Recipe(epochs=max(5, min(40, 60_000 // max(n, 1))), lr=0.05, batch_size=128)


def load_or_train_judge(train: Dataset, num_classes: int, width: int = 32, seed: int = 0,
                        device: torch.device | str = "cpu") -> nn.Module:
    """The judge for `train` (all classes), trained once and cached under `cache_dir()/judges/`
    (safetensors), keyed by a digest of the data, the architecture, the recipe and the seed."""
    x, y = take(train, torch.arange(len(labels_of(train))))
    recipe = judge_recipe(len(y))
    judge = build_model(JUDGE_MODEL, tuple(x.shape[1:]), num_classes, width=width).to(device)
    key = digest(x, y, JUDGE_MODEL, width, num_classes, recipe.__dict__, seed)
    path = cache_dir() / "judges" / f"{JUDGE_MODEL}-{key}.safetensors"
    if path.is_file():
        try:
            load_model(judge, path)
            return judge.eval()
        except CheckpointError:
            pass  # corrupt or stale: train again and overwrite
    torch.manual_seed(seed)
    train_model(judge, train, torch.arange(len(y)), recipe, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(judge, path, {"model": JUDGE_MODEL, "width": width, "num_classes": num_classes,
                             "recipe": recipe.__dict__, "seed": seed, "n": len(y)})
    return judge.eval()


def judge_outputs(judge: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """(softmax probabilities, penultimate features) of the judge on images `x`, eval mode."""
    body, head = judge[:-1], judge[-1]  # type: ignore[index]
    features = outputs(body, x)
    with torch.no_grad():
        probs = head(features.to(next(head.parameters()).device)).float().softmax(-1).cpu()
    return probs, features


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2(Σ_a Σ_b)^½) between Gaussian fits of two feature sets (n, d).

    tr((Σ_a Σ_b)^½) is computed as Σ √λ_i over the eigenvalues of Σ_a^½ Σ_b Σ_a^½ (symmetric PSD),
    which is stable where `scipy.linalg.sqrtm` can return complex noise. Non-finite features (a
    diverged model's samples) give inf."""
    fa, fb = a.double().numpy(), b.double().numpy()
    if not (np.isfinite(fa).all() and np.isfinite(fb).all()):
        return float("inf")
    mu_a, mu_b = fa.mean(0), fb.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(fa, rowvar=False)), np.atleast_2d(np.cov(fb, rowvar=False))
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


@EVALUATIONS.register("generation")
def evaluate_generation(model: nn.Module, request: UnlearnRequest, test: Dataset,
                        extra_signals: tuple[str, ...] = ()) -> dict[str, float]:
    """UA, Acc_retain, FID, P_forget (see `Generation`'s docstring), plus the sampling settings
    as numbers (`steps`, `guidance`, `samples_per_class`, `T`). `extra_signals` (MIA signals of
    classification) does not apply and is ignored."""
    task = request.task
    if not request.classes:
        raise ValueError("the generation task needs a class-wise request (forget spec class:C): "
                         "its metrics sample images per forgotten class")
    forgotten = torch.tensor(sorted(request.classes))
    kept = torch.tensor([c for c in range(request.num_classes) if c not in request.classes])
    judge = load_or_train_judge(request.train, request.num_classes, device=next(model.parameters()).device)
    labels = torch.arange(request.num_classes).repeat_interleave(task.samples_per_class)
    probs, feats = judge_outputs(judge, task.generate(model, labels, request.train))
    is_f, is_k = torch.isin(labels, forgotten), torch.isin(labels, kept)
    pred = probs.argmax(-1)
    test_labels = labels_of(test)
    real_idx = torch.isin(test_labels, kept).nonzero().flatten()
    _, real_feats = judge_outputs(judge, take(test, real_idx)[0])
    nan = float("nan")
    return {"UA": 100.0 * (pred[is_f] != labels[is_f]).double().mean().item(),
            "Acc_retain": 100.0 * (pred[is_k] == labels[is_k]).double().mean().item() if is_k.any() else nan,
            "FID": frechet_distance(feats[is_k], real_feats) if is_k.any() else nan,
            "P_forget": probs[is_f].gather(1, labels[is_f, None]).mean().item(),
            "steps": float(task.steps), "guidance": float(task.guidance),
            "samples_per_class": float(task.samples_per_class), "T": float(task.T)}
