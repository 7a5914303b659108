"""Metrics against scikit-learn, scipy and hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy
from sklearn.metrics import accuracy_score

from unlearnkit.evaluate import evaluate, kept_test_indices
from unlearnkit.metrics import Outputs, accuracy, avg_gap, confidence, entropy, m_entropy, per_sample_loss
from unlearnkit.evaluate import mia_efficacy


def random_outputs(n: int = 50, k: int = 4, seed: int = 0) -> Outputs:
    g = torch.Generator().manual_seed(seed)
    return Outputs(torch.randn(n, k, generator=g) * 2, torch.randint(0, k, (n,), generator=g))


def test_accuracy_matches_sklearn():
    out = random_outputs()
    assert accuracy(out) == pytest.approx(100 * accuracy_score(out.labels, out.logits.argmax(-1)))


def test_signals_match_references():
    out = random_outputs()
    p = torch.softmax(out.logits.double(), -1)
    torch.testing.assert_close(confidence(out), p[torch.arange(50), out.labels])
    torch.testing.assert_close(entropy(out), torch.tensor(scipy_entropy(p.numpy(), axis=1)))
    torch.testing.assert_close(per_sample_loss(out), -p[torch.arange(50), out.labels].log())


def test_m_entropy_hand_example():
    # p = (0.7, 0.2, 0.1), y = 0: −0.3·ln 0.7 − 0.2·ln 0.8 − 0.1·ln 0.9 = 0.1622
    out = Outputs(torch.tensor([[0.7, 0.2, 0.1]]).log(), torch.tensor([0]))
    assert float(m_entropy(out)) == pytest.approx(0.1622, abs=1e-4)
    # and the label matters (the field's `[:, labels]` bug would not notice): y = 2
    out2 = Outputs(torch.tensor([[0.7, 0.2, 0.1]]).log(), torch.tensor([2]))
    expect = -0.9 * np.log(0.1) - 0.7 * np.log(0.3) - 0.2 * np.log(0.8)
    assert float(m_entropy(out2)) == pytest.approx(expect, abs=1e-6)


def test_mia_efficacy_separates_members_from_nonmembers():
    g = torch.Generator().manual_seed(0)
    members = 0.9 + 0.05 * torch.rand(300, generator=g)
    nonmembers = 0.3 + 0.3 * torch.rand(300, generator=g)
    looks_unseen = 0.3 + 0.3 * torch.rand(100, generator=g)
    looks_member = 0.9 + 0.05 * torch.rand(100, generator=g)
    assert mia_efficacy(members, nonmembers, looks_unseen) == pytest.approx(100.0)
    assert mia_efficacy(members, nonmembers, looks_member) == pytest.approx(0.0)
    half = torch.cat([looks_unseen[:50], looks_member[:50]])
    assert mia_efficacy(members, nonmembers, half) == pytest.approx(50.0)


def test_avg_gap_hand_example():
    m = {"UA": 10.0, "RA": 98.0, "TA": 90.0, "MIA": 20.0}
    r = {"UA": 6.0, "RA": 100.0, "TA": 91.0, "MIA": 21.0}
    assert avg_gap(m, r) == pytest.approx((4 + 2 + 1 + 1) / 4)


def test_evaluate_drops_forgotten_class_from_test_and_scores_original(toy_cnn):
    req = toy_cnn.request
    idx = kept_test_indices(req, toy_cnn.test)
    assert len(idx) == int((toy_cnn.test.y != 3).sum()) and not (toy_cnn.test.y[idx] == 3).any()
    metrics = evaluate(toy_cnn.model, req, toy_cnn.test, extra_signals=("entropy", "m_entropy"))
    assert set(metrics) == {"UA", "RA", "TA", "MIA", "MIA_std", "MIA_n", "MIA_entropy", "MIA_entropy_std",
                            "MIA_m_entropy", "MIA_m_entropy_std"}
    assert metrics["UA"] < 20 and metrics["RA"] > 80  # the original still knows class 3
    assert all(0 <= v <= 100 for k, v in metrics.items() if k != "MIA_n")
    assert metrics["MIA_n"] == min(len(req.retain), len(idx))
    assert metrics == evaluate(toy_cnn.model, req, toy_cnn.test, extra_signals=("entropy", "m_entropy"))


def test_balanced_mia_gives_retrain_its_unseen_baseline_when_retain_is_smaller_than_test():
    """|retain| < |test|: every attack is still fitted on as many members as non-members, so a
    model that never saw the forget set scores it like other unseen samples, not 100."""
    from unlearnkit.data import ArrayDataset
    from unlearnkit.evaluate import balanced_mia, mia_efficacy
    from unlearnkit.metrics import confidence, predict
    from unlearnkit.models import build_model
    from unlearnkit.request import UnlearnRequest
    from unlearnkit.train import Recipe, train_model
    from tests.conftest import blobs

    train, test = blobs(300, 11), blobs(3000, 12)
    request = UnlearnRequest(train, torch.arange(60), 4)
    retrained = build_model("mlp", (8,), 4, width=32)
    torch.manual_seed(0)
    train_model(retrained, train, request.retain, Recipe(epochs=30, lr=0.05, batch_size=32))
    metrics = evaluate(retrained, request, ArrayDataset(test.x[:2000], test.y[:2000]), mia_fit_cap=None)
    assert metrics["MIA_n"] == len(request.retain) == 240
    conf = lambda ds, idx: confidence(predict(retrained, ds, idx))  # noqa: E731
    unseen, _, _ = balanced_mia(conf(train, request.retain), conf(test, torch.arange(2000)),
                                conf(test, torch.arange(2000, 3000)), torch.Generator().manual_seed(0), None)
    assert metrics["MIA"] < 95 and abs(metrics["MIA"] - unseen) < 12, (metrics["MIA"], unseen)
    # The defect this guards against: fitted on all 240 retain members vs all 2,000 test samples,
    # the SVC calls every sample a non-member, and Retrain "scores" 100.
    unbalanced = mia_efficacy(conf(train, request.retain), conf(test, torch.arange(2000)), conf(train, request.forget))
    assert unbalanced > 99


def test_a_diverged_model_is_evaluated_not_crashed():
    from unlearnkit.data import ArrayDataset
    from unlearnkit.evaluate import evaluate, loss_histograms
    from unlearnkit.request import UnlearnRequest

    g = torch.Generator().manual_seed(0)
    train = ArrayDataset(torch.randn(60, 3, generator=g), torch.arange(60) % 3)
    test = ArrayDataset(torch.randn(30, 3, generator=g), torch.arange(30) % 3)
    net = torch.nn.Linear(3, 3)
    with torch.no_grad():
        net.weight.fill_(float("nan"))
    request = UnlearnRequest(train, torch.arange(6), 3)
    metrics = evaluate(net, request, test)
    assert metrics["diverged"] == 1.0 and 0 <= metrics["MIA"] <= 100
    assert sum(loss_histograms(net, request, test)["forget"]) == 6
    net.weight.data.zero_()
    assert "diverged" not in evaluate(net, request, test)
