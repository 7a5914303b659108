"""Gold-standard audits: U-LiRA and KLOM against references worked by hand and simulations, and
the pool that feeds them on a real (tiny) request."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnkit.audit import klom, klom_bins, klom_summary, ulira
from unlearnkit.bench import report
from unlearnkit.bench.audit import audit
from unlearnkit.bench.scenarios import Scenario


def test_ulira_is_chance_on_one_distribution_and_high_on_a_shift():
    rng = np.random.default_rng(0)
    retrained = rng.normal(0, 1, (8, 400))
    same = ulira(rng.normal(0, 1, (8, 400)), retrained)
    assert 45 < same["acc"] < 55 and 0.45 < same["auc"] < 0.55
    shifted = ulira(rng.normal(2, 1, (8, 400)), retrained)
    assert shifted["acc"] > 80 and shifted["auc"] > 0.85
    per_example = ulira(rng.normal(2, 1, (8, 400)), retrained, variance="per_example")
    assert per_example["acc"] > 80
    with pytest.raises(ValueError, match="at least 3"):
        ulira(retrained[:2], retrained)


def test_klom_worked_by_hand():
    # 2 bins over [0, 1]: unlearned (0, 0, 1, 1) -> P = (1/2, 1/2); retrained (0, 1, 1, 1) -> Q = (1/4, 3/4).
    kl = klom(np.array([[0.0], [0.0], [1.0], [1.0]]), np.array([[0.0], [1.0], [1.0], [1.0]]), bins=2)
    assert kl[0] == pytest.approx(0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75))
    # Disjoint: the empty retrained bin under P's mass is floored at 1e-5, then Q renormalised.
    apart = klom(np.ones((4, 1)), np.zeros((4, 1)), bins=2)
    assert apart[0] == pytest.approx(math.log((1 + 1e-5) / 1e-5))
    assert klom(np.ones((4, 1)), np.ones((4, 1)))[0] == 0.0  # one value: a single bin, no divergence
    assert klom_bins(100) == 20 and klom_bins(16) == 3 and klom_bins(4) == 2
    assert klom_summary(np.arange(100.0), {"a": np.arange(100)}) == {"a": pytest.approx(94.05)}


def test_audits_tell_the_original_from_retrain_and_not_two_retrains(tmp_path):
    grid = [(name, {}, Scenario("digits", "class:3"), 0) for name in ("retrain", "original")]
    records = audit(grid, tmp_path / "audit.jsonl", models=8, cache=tmp_path / "cache")
    by = {r["method"]: r["audit"] for r in records}
    # Two pools of Retrains differ only by seed; with 8 models each, the per-model spread of a whole
    # class's margins keeps U-LiRA within about 15 points of chance (README, "Verification").
    assert 35 <= by["retrain"]["ULiRA"] <= 70, by["retrain"]
    assert by["original"]["ULiRA"] > 90, by["original"]  # never unlearned: told apart
    assert by["original"]["KLOM_forget"] > 3 * by["retrain"]["KLOM_forget"]
    again = audit(grid, tmp_path / "audit.jsonl", models=8, cache=tmp_path / "cache")  # resumes: nothing to do
    assert again == records
    table = report.audit_table(records)
    assert "| retrain |" in table and "| original |" in table


def test_report_adds_audit_columns_and_lists_disagreements():
    def rec(method, seed, mia):
        return {"method": method, "hparams": {}, "scenario": "s", "seed": seed, "retrain_seconds": 1.0,
                "metrics": {"UA": 1.0, "RA": 99.0, "TA": 90.0, "MIA": mia, "gap": 0.0, "rte": 0.5}}

    def aud(method, acc):
        return {"kind": "audit", "method": method, "hparams": {}, "scenario": "s", "seed": 0, "pool": {"models": 8},
                "audit": {"ULiRA": acc, "KLOM_forget": 1.0, "KLOM_retain": 0.5, "KLOM_val": 0.4}}

    records = [rec(m, s, mia) for m, mia in (("retrain", 10.0), ("ft", 10.5), ("ga", 40.0)) for s in (0, 1)]
    text = report.markdown(records, [aud("retrain", 51.0), aud("ft", 80.0), aud("ga", 52.0)])
    assert "U-LiRA acc (%)" in text and "| 80.0 | 1.00 / 0.50 / 0.40 |" in text
    assert "ft: the SVC MIA (10.5) is within noise of Retrain's (10.0), but U-LiRA tells" in text
    assert "ga: the SVC MIA (40.0) differs from Retrain's (10.0), but U-LiRA cannot tell" in text
    assert "U-LiRA" not in report.markdown(records)


def test_a_diverged_method_is_recorded_as_such_and_reported(tmp_path):
    scenario = Scenario("digits", "random:0.1")
    grid = [("retrain", {}, scenario, 0), ("ga", {"lr": 1e6, "epochs": 3}, scenario, 0)]
    records = audit(grid, tmp_path / "audit.jsonl", models=3, cache=tmp_path / "cache")
    by = {r["method"]: r["audit"] for r in records}
    assert by["ga"] == {"diverged": 3} and "ULiRA" in by["retrain"]
    assert "| ga | diverged (3 models) |" in report.audit_table(records)
