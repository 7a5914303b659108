"""PGU and its subspace statistics, each checked against a naive reference or a hand example."""

from __future__ import annotations

import copy
import dataclasses
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit import subspace as S
from unlearnkit.data import ArrayDataset
from unlearnkit.metrics import accuracy, predict
from unlearnkit.methods import pgu as P
from unlearnkit.request import UnlearnRequest
from unlearnkit.subspace import (cached_statistics, covariance, energy_rank, full_statistics, load_statistics,
                                 retain_bases, statistics_key)
from unlearnkit.train import Recipe, train_model


def request_for(x: torch.Tensor, n_forget: int, classes: int = 4, seed: int = 0) -> UnlearnRequest:
    """The last `n_forget` rows of `x` are forgotten; labels are random."""
    y = torch.randint(0, classes, (len(x),), generator=torch.Generator().manual_seed(seed))
    return UnlearnRequest(ArrayDataset(x, y), torch.arange(len(x) - n_forget, len(x)), classes)


def linear_case() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Retain inputs in a 3-D subspace of R^8, forget inputs anywhere."""
    basis = torch.linalg.qr(torch.randn(8, 3))[0]
    retain, forget = torch.randn(60, 3) @ basis.T, torch.randn(20, 8)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)), retain, forget


def conv_case() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Retain images constant per channel, so every 3x3 patch lies in a 2-D subspace of R^18."""
    retain = torch.randn(60, 2, 1, 1).expand(60, 2, 6, 6).contiguous()
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 4))
    return model, retain, torch.randn(20, 2, 6, 6)


@pytest.mark.parametrize("case", [linear_case, conv_case])
def test_outputs_on_the_protected_span_do_not_change(case):
    torch.manual_seed(0)
    model, retain, forget = case()
    before = copy.deepcopy(model)
    method = P.PGU(tau=0.999, k_plus_one=True, momentum=0.9, weight_decay=0.05, lr_start=0.5, lr_end=0.1,
                   epochs=5, stop="none")
    after = method(model, request_for(torch.cat([retain, forget]), len(forget)))
    with torch.no_grad():
        assert torch.allclose(after[0](retain), before[0](retain), atol=1e-5), "W x moved on the retain span"
        assert torch.allclose(after(retain), before(retain), atol=1e-4), "the model's output moved on retain inputs"
        assert (after(forget) - before(forget)).abs().max() > 1e-2, "and it should move on forget inputs"
        assert (after[0].weight - before[0].weight).abs().max() > 1e-3, "W itself should move"
        assert torch.equal(after[0].bias, before[0].bias), "biases are frozen"


def test_unfold_covariance_matches_explicit_patch_loops():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, (2, 3), stride=2, padding=(1, 2), dilation=(2, 1))
    x = torch.randn(2, 2, 5, 6)
    (kh, kw), (ph, pw), (dh, dw) = conv.kernel_size, conv.padding, conv.dilation
    xp = F.pad(x, (pw, pw, ph, ph)).double()
    naive = torch.zeros(2 * kh * kw, 2 * kh * kw, dtype=torch.float64)
    for n in range(2):
        for i in range(xp.shape[2] - dh * (kh - 1)):  # every stride-1 position
            for j in range(xp.shape[3] - dw * (kw - 1)):
                patch = torch.stack([xp[n, c, i + dh * a, j + dw * b]
                                     for c in range(2) for a in range(kh) for b in range(kw)])
                naive += torch.outer(patch, patch)
    assert torch.allclose(covariance(conv, [x])["weight"], naive)
    tokens = torch.randn(2, 3, 4)  # a Linear sees every token as a row
    rows = tokens.reshape(-1, 4).double()
    assert torch.allclose(covariance(nn.Linear(4, 2), [tokens])["weight"], rows.T @ rows)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_full_minus_forget_equals_retain_covariance(dtype, tol):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                          nn.Flatten(), nn.Linear(4 * 8 * 8, 5)).to(dtype)
    model(torch.randn(64, 1, 8, 8, dtype=dtype) * 2 + 3)  # train mode: non-trivial BN running statistics
    data = ArrayDataset(torch.randn(50, 1, 8, 8, dtype=dtype), torch.randint(0, 5, (50,)))
    forget, retain = torch.arange(0, 50, 3), torch.tensor([i for i in range(50) if i % 3])
    full = full_statistics(model, data, batch_size=16)
    minus = full_statistics(model, data, forget, batch_size=7)
    direct = full_statistics(model, data, retain, batch_size=11)
    for k in full:  # exact up to the rounding of each batch's product (float32 for a float32 model)
        assert full[k].dtype == torch.float64
        assert torch.allclose(full[k] - minus[k], direct[k], rtol=tol, atol=tol * full[k].abs().max()), k
    assert model.training, "the statistics pass restores the model's mode"


def test_tau_rule_on_a_hand_example():
    lam = torch.tensor([9.0, 4.0, 1.0, -0.5])  # σ = 3, 2, 1, 0 (clamped): ratios 1/2, 5/6, 1, 1
    assert energy_rank(lam, 0.9, "sigma") == 2 and energy_rank(lam, 0.9, "sigma", plus_one=True) == 3
    assert energy_rank(lam, 0.5, "sigma") == 1  # ratio ≤ τ, not <
    # σ²: ratios 9/14, 13/14, 1, 1
    assert energy_rank(lam, 0.9, "sigma2") == 1 and energy_rank(lam, 0.9, "sigma2", plus_one=True) == 2
    q = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))[0]
    c = q @ torch.diag(lam.double()) @ q.T
    bases = retain_bases({"a": c, "b": c}, {"a": 0.9, "b": 1.0})
    assert set(bases) == {"a"}, "τ = 1 layers get no basis"
    top = q[:, :2].float()
    assert torch.allclose(bases["a"] @ bases["a"].T, top @ top.T, atol=1e-5)


def test_sequential_request_uses_updated_statistics():
    torch.manual_seed(0)
    model, _, _ = linear_case()
    first = request_for(torch.randn(80, 8), 10)
    method = P.PGU(epochs=3, stop="none", lr_start=0.5, lr_end=0.1)
    full0 = full_statistics(model, first.train)
    forget0 = full_statistics(model, first.train, first.forget)
    model1 = method(copy.deepcopy(model), first)
    second = first.then(torch.arange(10))
    used = cached_statistics(model1, second)
    fresh = full_statistics(model1, first.train, torch.cat([second.retain, second.forget]).sort().values)
    assert all(torch.allclose(used[k], full0[k] - forget0[k]) for k in full0)
    assert not all(torch.allclose(used[k], fresh[k]) for k in full0), "the model moved: fresh stats differ"
    forget1 = full_statistics(model1, first.train, second.forget)
    model2 = method(model1, second)
    used2 = cached_statistics(model2, second.then(torch.arange(10, 20)))
    assert all(torch.allclose(used2[k], full0[k] - forget0[k] - forget1[k]) for k in full0)


def test_statistics_file_round_trip(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model, _, _ = linear_case()
    request, path = request_for(torch.randn(40, 8), 5), tmp_path / "stats.safetensors"
    P.PGU(epochs=1, stop="none", stats_path=str(path))(copy.deepcopy(model), request)
    key = statistics_key(model, request.train, request.excluded)
    saved, full = load_statistics(path, key), full_statistics(model, request.train)
    assert saved is not None and all(torch.equal(saved[k], full[k]) for k in full)
    assert load_statistics(path, "another model") is None
    monkeypatch.setattr(S, "STATISTICS_CACHE", OrderedDict())
    monkeypatch.setattr(S, "full_statistics", lambda *a, **k: pytest.fail("should load from stats_path"))
    P.PGU(epochs=1, stop="none", stats_path=str(path))(copy.deepcopy(model), request)


def test_val_gap_keeps_the_epoch_with_the_smaller_gap(monkeypatch):
    data = ArrayDataset(torch.randn(20, 2), torch.arange(20) % 2)
    model, request = nn.Linear(2, 2), UnlearnRequest(data, torch.arange(5), 2, val=data)
    weights = {"weight": None}

    def run(gaps: list[float]) -> tuple[list[bool], float]:  # one scripted epoch per gap
        accs = iter(a for g in gaps for a in (50.0 + g, 50.0))  # val, then forget accuracy
        monkeypatch.setattr(P, "accuracy", lambda out: next(accs))
        rule, stops = P.ValGap(request), []
        for epoch in range(len(gaps)):
            nn.init.constant_(model.weight, epoch)
            stops.append(rule(model, weights))
        return stops, model.weight[0, 0].item()

    assert run([-3.0, -2.0, 1.0]) == ([False, False, True], 2.0)  # current is closer to 0
    assert run([-3.0, -1.0, 2.0]) == ([False, False, True], 1.0)  # previous is closer: restored
    assert run([-3.0, -1.0, 1.0]) == ([False, False, True], 1.0)  # tie: previous, as the official code
    assert run([1.0]) == ([True], 0.0)  # the forget set already looks unseen: nothing to do


def test_val_gap_guard_stops_a_collapse_and_keeps_the_previous_epoch(monkeypatch):
    data = ArrayDataset(torch.randn(20, 2), torch.arange(20) % 2)
    model, request = nn.Linear(2, 2), UnlearnRequest(data, torch.arange(5), 2, val=data)

    def run(accuracies: list[tuple[float, float]], guard: float | None) -> tuple[list[bool], float]:
        accs = iter(a for pair in accuracies for a in pair)  # (val, forget) per epoch
        monkeypatch.setattr(P, "accuracy", lambda out: next(accs))
        rule, stops = P.ValGap(request, guard), []
        for epoch in range(len(accuracies)):
            nn.init.constant_(model.weight, epoch)
            stops.append(rule(model, {"weight": None}))
        return stops, model.weight[0, 0].item()

    falling = [(90.0, 95.0), (88.0, 93.0), (80.0, 85.0)]  # forget acc never below val acc; val collapses
    assert run(falling, 5.0) == ([False, False, True], 1.0)  # 10 points down: stop, previous epoch kept
    assert run(falling, None) == ([False, False, False], 2.0)  # the official rule alone runs on
    assert run(falling, 15.0) == ([False, False, False], 2.0)
    assert P.PGU().val_guard is False and P.PGU(val_guard=True).val_guard  # the official rule alone by default


def test_val_gap_stops_at_the_first_crossing(monkeypatch):
    torch.manual_seed(0)
    centres, y = torch.randn(4, 8) * 1.5, torch.randint(0, 4, (500,))
    data = ArrayDataset(centres[y] + torch.randn(500, 8), y)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    train_model(model, data, torch.arange(400), Recipe(epochs=20, lr=0.05, batch_size=32), seed=0)
    train = data.select(torch.arange(400))
    correct = (predict(model, train).logits.argmax(-1) == train.y).nonzero().flatten()
    r = UnlearnRequest(train, correct[::10], 4, val=data.select(torch.arange(400, 500)))  # forget acc 100%
    gap = lambda m: accuracy(predict(m, r.val)) - accuracy(predict(m, r.train, r.forget))  # noqa: E731
    seen, call = [], P.ValGap.__call__
    monkeypatch.setattr(P.ValGap, "__call__", lambda self, m, b: seen.append(gap(m)) or call(self, m, b))
    method = P.PGU(tau=0.5, epochs=50, stop="val_gap")
    unlearned = method(copy.deepcopy(model), r)
    assert 2 <= len(seen) < 51 and seen[-1] > 0 and all(g <= 0 for g in seen[:-1]), seen
    assert gap(unlearned) == min(seen[-2:], key=abs)
    assert gap(P.PGU(tau=0.5, epochs=50, stop="none")(copy.deepcopy(model), r)) > seen[-1]
    with pytest.raises(ValueError, match="val"):
        method(copy.deepcopy(model), UnlearnRequest(r.train, r.forget, r.num_classes))


def test_when_val_gap_never_fires_the_request_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    centres, y = torch.randn(4, 8) * 1.5, torch.randint(0, 4, (500,))
    data = ArrayDataset(centres[y] + torch.randn(500, 8), y)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
    train_model(model, data, torch.arange(400), Recipe(epochs=20, lr=0.05, batch_size=32), seed=0)
    train = data.select(torch.arange(400))
    correct = (predict(model, train).logits.argmax(-1) == train.y).nonzero().flatten()
    r = UnlearnRequest(train, correct[::10], 4, val=data.select(torch.arange(400, 500)))
    slow = dict(epochs=2, lr_start=1e-6, lr_end=1e-6, stop="val_gap")  # too little to cross: the rule never fires
    official = P.PGU(**slow)(model, r)
    assert all(torch.equal(a, b) for a, b in zip(official.state_dict().values(), model.state_dict().values()))
    last = P.PGU(**slow, if_no_stop="last")(model, r)
    assert not all(torch.equal(a, b) for a, b in zip(last.state_dict().values(), model.state_dict().values()))


def test_class_requests_get_the_official_class_configuration(toy_cnn):
    cls, rnd = P.PGU().resolved(bool(toy_cnn.request.classes)), P.PGU().resolved(classwise=False)
    assert (cls.config, cls.tau, cls.k_plus_one, cls.batch_size, cls.shuffle, cls.stats_augment) == \
        ("class", 0.9, True, 100, True, True)
    assert (rnd.config, rnd.tau, rnd.k_plus_one, rnd.batch_size, rnd.shuffle, rnd.stats_augment) == \
        ("random", 0.95, False, 128, False, False)
    assert P.PGU(tau=0.8, batch_size=64).resolved(True).tau == 0.8  # a set field wins
    assert P.PGU(config="random").resolved(True).k_plus_one is False
    taus = cls._taus(toy_cnn.model)
    first = next(iter(taus))
    assert taus[first] == 0.95 and all(t == 0.9 for k, t in taus.items() if k != first)  # the stem stays at 0.95
    assert P.PGU().epochs == 99  # the official 100-epoch loop whose epoch 0 only evaluates


def test_check_every_evaluates_the_rule_after_every_kth_and_the_last_epoch(monkeypatch):
    torch.manual_seed(0)
    x, y = torch.randn(120, 6), torch.randint(0, 3, (120,))
    updates, checked_after = [], []  # updates so far, at each evaluation of the rule

    class CountUpdates:
        def on_update(self, step):
            updates.append(1)

    r = UnlearnRequest(ArrayDataset(x, y), torch.arange(20), 3, val=ArrayDataset(x[:30], y[:30]),
                       callbacks=(CountUpdates(),))
    monkeypatch.setattr(P.PGU, "_monitor", lambda self, req: lambda m, b: checked_after.append(len(updates)) or False)
    P.PGU(epochs=7, check_every=3, batch_size=10)(nn.Linear(6, 3), r)  # 2 updates per epoch
    assert checked_after == [0, 6, 12, 14]  # before training, after epochs 3 and 6, and after the last
    checked_after.clear(), updates.clear()
    P.PGU(epochs=7, batch_size=10)(nn.Linear(6, 3), r)
    assert checked_after == [0, 2, 4, 6, 8, 10, 12, 14]  # official: after every epoch
    with pytest.raises(ValueError, match="check_every"):
        P.PGU(check_every=0)


def test_layer_tau_takes_a_dict_as_its_docstring_says():
    from unlearnkit.method import build

    assert build("pgu", {"layer_tau": {"fc": 0.9, "conv1": 0.5}}).layer_tau == (("conv1", 0.5), ("fc", 0.9))


def test_the_forget_statistics_pass_counts_as_the_requests_samples():
    """The runner's `samples` cost counts every batch a request hands out: PGU's forget-set pass
    for C_forget is one (|forget| samples), then each training pass over the forget set."""
    from unlearnkit.bench.runner import SampleCounter

    model, retain, forget = linear_case()
    r = request_for(torch.cat([retain, forget]), len(forget))
    counter = SampleCounter()
    P.PGU(epochs=3, stop="none")(model, dataclasses.replace(r, callbacks=(counter,)))
    assert counter.samples == (1 + 3) * len(forget)
