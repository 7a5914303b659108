"""Gold-standard audits of unlearning, computed from a pool of models of one recipe.

A pool holds, for one request (a fixed forget set), N models unlearned by a method from N
originals of different training seeds, and N models retrained without the forget set (different
seeds). Every audit reads the same per-sample statistic of those models: the logit-scaled
confidence φ = log(p_y / (1 − p_y)) (`metrics.logit_scaled_confidence`, KLOM's "margin").

- **U-LiRA** (Hayes et al., "Inexact unlearning needs more careful evaluations to avoid a false
  sense of privacy", 2024): for each forget example, Gaussians fitted to φ under the unlearned
  and under the retrained models; a held-out target model is called "unlearned" when the
  likelihood ratio exceeds 1. Every model is a target once, the others its shadows (leave one
  pair out). Reported: the attack's balanced accuracy (50% = the method is indistinguishable
  from retraining), its AUC on the log likelihood ratio, and the spread of per-example accuracy.
  Hayes et al. draw a random forget set per shadow from random data splits; with a fixed forget
  set and fixed data the shadows differ only by seed, their distributions are tighter, and the
  attack is, if anything, stronger than the paper's. `variance="global"` shares one σ per kind
  across examples (LiRA's fixed-variance variant, recommended for small pools); "per_example"
  fits one per example.
- **KLOM** (Georgiev et al., "Attribute-to-delete: machine unlearning via datamodel matching",
  2024; reference code RoyRin/data-unlearning-bench): per sample, the KL divergence
  KL(unlearned ‖ retrained) between histograms of φ over the N unlearned and the N retrained
  models (equal-width bins over the pair's joint range, φ clipped to ±100, empty retrained bins
  where the unlearned one has mass floored at 1e-5, then renormalised), summarised as the 95th
  percentile over forget, retain and validation samples. The reference uses 20 bins for N = 100
  models (5 per bin); a pool of N models gets max(2, min(20, N // 5)) bins, since with 20 bins
  and 16 models two draws of one distribution already score about 6 (3 bins: about 0.6). The reference counts bins with `np.digitize` and so
  drops the sample equal to the joint maximum; here the last bin is closed (as `np.histogram`).
  KLOM has a floor at small N (two pools of the same distribution do not score 0): read it
  against the Retrain row, which is a second pool of retrained models.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.stats import norm
from sklearn.metrics import roc_auc_score


def ulira(unlearned: np.ndarray, retrained: np.ndarray, variance: Literal["global", "per_example"] = "global",
          min_std: float = 1e-3) -> dict[str, float]:
    """U-LiRA on `unlearned` [N, n] and `retrained` [M, n] (φ of n forget examples under each
    model; N, M >= 3). Model k of each kind is the target of round k (k < min(N, M)); the Gaussians
    of that round are fitted on the other models of each kind."""
    n_u, n_r = len(unlearned), len(retrained)
    if min(n_u, n_r) < 3:
        raise ValueError(f"U-LiRA needs at least 3 models of each kind, got {n_u} unlearned and {n_r} retrained")
    scores, labels = [], []
    for k in range(min(n_u, n_r)):
        shadow_u, shadow_r = np.delete(unlearned, k, 0), np.delete(retrained, k, 0)
        mu_u, mu_r = shadow_u.mean(0), shadow_r.mean(0)
        if variance == "global":
            sd_u = np.full_like(mu_u, max(shadow_u.std(0).mean(), min_std))
            sd_r = np.full_like(mu_r, max(shadow_r.std(0).mean(), min_std))
        else:
            sd_u, sd_r = np.maximum(shadow_u.std(0), min_std), np.maximum(shadow_r.std(0), min_std)
        for target, label in ((unlearned[k], 1.0), (retrained[k], 0.0)):
            scores.append(norm.logpdf(target, mu_u, sd_u) - norm.logpdf(target, mu_r, sd_r))
            labels.append(np.full(len(target), label))
    s, y = np.stack(scores), np.stack(labels)  # [2 rounds, n]: rows alternate unlearned / retrained targets
    hits = np.where(y == 1, s > 0, s <= 0)
    per_example = 0.5 * (hits[y[:, 0] == 1].mean(0) + hits[y[:, 0] == 0].mean(0))
    return {"acc": 100.0 * float(per_example.mean()), "auc": float(roc_auc_score(y.ravel(), s.ravel())),
            "acc_p10": 100.0 * float(np.percentile(per_example, 10)),
            "acc_p90": 100.0 * float(np.percentile(per_example, 90))}


def klom_bins(models: int) -> int:
    """Histogram bins for a pool of `models` models: about 5 models per bin, as the reference's 20 for 100."""
    return max(2, min(20, models // 5))


def klom(unlearned: np.ndarray, retrained: np.ndarray, bins: int | None = None, eps: float = 1e-5,
         clip: float = 100.0) -> np.ndarray:
    """Per-sample KL(unlearned ‖ retrained) of φ's histograms, from `unlearned` [N, n] and
    `retrained` [M, n] (module docstring; `bins` defaults to `klom_bins(min(N, M))`); returns n
    values (0 = the same histogram)."""
    bins = bins or klom_bins(min(len(unlearned), len(retrained)))
    p_all, q_all = np.clip(unlearned, -clip, clip), np.clip(retrained, -clip, clip)
    lo = np.minimum(p_all.min(0), q_all.min(0))
    hi = np.maximum(p_all.max(0), q_all.max(0))
    hi = np.where(hi > lo, hi, lo + 1.0)
    width = (hi - lo) / bins

    def histogram(v: np.ndarray) -> np.ndarray:
        idx = np.clip(((v - lo) / width).astype(np.int64), 0, bins - 1)  # the joint maximum lands in the last bin
        counts = np.zeros((bins, v.shape[1]))
        np.add.at(counts, (idx, np.arange(v.shape[1])[None, :].repeat(len(v), 0)), 1.0)
        return counts / len(v)

    p, q = histogram(p_all), histogram(q_all)
    q = np.where(p > 0, np.maximum(q, eps), q)
    q = q / q.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / q), 0.0)
    return terms.sum(0)


def klom_summary(per_sample: np.ndarray, groups: dict[str, np.ndarray], q: float = 95) -> dict[str, float]:
    """The `q`-th percentile of per-sample KLOM over each group of sample positions."""
    return {name: float(np.percentile(per_sample[idx], q)) for name, idx in groups.items() if len(idx)}
