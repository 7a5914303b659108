"""∇τ: the τ gate's gradient, the α0 / E rules, τ from held-out data, and the schedules."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.bench.scenarios import Scenario, prepare
from unlearnkit.data import ArrayDataset
from unlearnkit.metrics import accuracy, predict
from unlearnkit.methods import nabla_tau
from unlearnkit.methods.nabla_tau import NablaTau, forget_epochs, held_out_loss, initial_alpha, nabla_tau_loss
from unlearnkit.request import UnlearnRequest


def data(n: int, seed: int) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    return ArrayDataset(torch.randn(n, 4, generator=g) + y[:, None], y)


def tiny_request(val: ArrayDataset | None = None, classes: tuple[int, ...] = ()) -> UnlearnRequest:
    return UnlearnRequest(data(200, 0), torch.arange(20), 3, val=val, classes=classes)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def grads(loss: torch.Tensor, net: nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(net.parameters()), retain_graph=True, allow_unused=False))


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("offset", [0.5, 0.0, -0.5])  # τ − L_f
def test_gate_gradient(two_sided, offset):
    net, alpha = model(), 0.3
    (xf, yf), (xr, yr) = (data(16, 1).x, data(16, 1).y), (data(16, 2).x, data(16, 2).y)
    lf, lr = F.cross_entropy(net(xf), yf), F.cross_entropy(net(xr), yr)
    tau = lf.item() + offset
    got = grads(nabla_tau_loss(lf, lr, tau, alpha, two_sided), net)
    gap = offset if (offset > 0 or two_sided) else 0.0  # one-sided: no gradient once L_f ≥ τ
    want = [-2 * alpha * gap * gf + (1 - alpha) * gr for gf, gr in zip(grads(lf, net), grads(lr, net))]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


def test_alpha0_rule_and_clip():
    assert initial_alpha(1_500, 48_500) == pytest.approx(0.05)
    assert initial_alpha(7_500, 42_500) == pytest.approx(0.25)
    assert initial_alpha(15_000, 35_000) == pytest.approx(0.5)
    assert initial_alpha(30_000, 20_000) == 0.5  # 60%: the rule gives 1.0, clipped
    assert initial_alpha(15_000, 35_000, max_alpha=0.4) == 0.4


def test_forget_epochs_rule():
    # CIFAR-10 at batch 256: 3% / 15% / 30% (spec §2.2 table)
    assert [forget_epochs(6, 190), forget_epochs(30, 167), forget_epochs(59, 137)] == [95, 16, 6]
    assert forget_epochs(6, 190, cap=80) == 80
    assert forget_epochs(10, 1) == 1


def test_tau_is_the_eval_mode_mean_loss_on_val():
    val = data(50, 3)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).train()
    with torch.no_grad():
        net[1].running_mean.fill_(0.3)
    buffers = {k: b.clone() for k, b in net.named_buffers()}
    net.eval()
    want = F.cross_entropy(net(val.x).double(), val.y).item()
    net.train()
    assert held_out_loss(net, tiny_request(val)) == pytest.approx(want, rel=1e-5)
    assert net.training and all(torch.equal(b, buffers[k]) for k, b in net.named_buffers())
    assert held_out_loss(net, tiny_request(data(50, 4))) != pytest.approx(want, rel=1e-3)


def test_off_class_tau_is_the_loss_of_labelling_other_classes_as_forgotten():
    net, val = model(), data(60, 3)
    other = val.y != 1
    want = -net(val.x[other]).double().log_softmax(-1)[:, 1].mean().item()
    request = tiny_request(val, classes=(1,))
    assert held_out_loss(net, request, "off_class") == pytest.approx(want, rel=1e-5)
    assert held_out_loss(net, request, "val_mean") != pytest.approx(want, rel=1e-3)
    assert held_out_loss(net, tiny_request(val), "off_class") == held_out_loss(net, tiny_request(val))  # random request
    with pytest.raises(ValueError, match="only the forgotten"):
        held_out_loss(net, tiny_request(ArrayDataset(val.x[~other], val.y[~other]), (1,)), "off_class")


def test_chance_tau_is_log_k_for_class_wise_requests_and_the_authors_rule_is_the_default():
    net, val = model(), data(60, 3)
    assert held_out_loss(net, tiny_request(val, classes=(1,)), "chance") == pytest.approx(math.log(3))
    assert held_out_loss(net, tiny_request(val), "chance") == held_out_loss(net, tiny_request(val))  # random request
    assert NablaTau().class_tau == "val_mean"  # the authors' held-out τ; "chance" is our opt-in extension
    with pytest.raises(ValueError, match="class_tau"):
        NablaTau(class_tau="test_set")


def test_chance_tau_forgets_a_class_that_the_held_out_tau_keeps(tmp_path):
    prepared = prepare(Scenario("digits", "class:3"), 0, tmp_path)
    request = prepared.request

    def forget_accuracy(class_tau: str) -> float:
        unlearned = NablaTau(class_tau=class_tau)(copy.deepcopy(prepared.original), request)
        return accuracy(predict(unlearned, request.train, request.forget))

    assert accuracy(predict(prepared.original, request.train, request.forget)) > 95
    assert forget_accuracy("chance") < 30 < 60 < forget_accuracy("val_mean")


def test_method_refreshes_tau_from_val_and_decays_alpha(monkeypatch):
    taus, alphas = [], []
    real_tau, real_loss = nabla_tau.held_out_loss, nabla_tau.nabla_tau_loss
    monkeypatch.setattr(nabla_tau, "held_out_loss", lambda *a: taus.append(real_tau(*a)) or taus[-1])
    monkeypatch.setattr(nabla_tau, "nabla_tau_loss", lambda *a: alphas.append(a[3]) or real_loss(*a))
    net, val = model(), data(50, 3)
    first = held_out_loss(net, tiny_request(val))
    NablaTau(batch_size=16)(net, tiny_request(val))
    epochs = forget_epochs(2, 12)  # 20 forget / 180 retain samples at batch 16
    assert epochs == 18 and len(taus) == math.ceil(epochs / 5) and taus[0] == pytest.approx(first)
    alpha0 = initial_alpha(20, 180)
    want = [alpha0 * (1 - e / epochs) for e in range(epochs) for _ in range(2)]
    assert alphas == pytest.approx(want)


def test_requires_held_out_data():
    net = model()
    before = [p.clone() for p in net.parameters()]
    with pytest.raises(ValueError, match="held-out"):
        NablaTau()(net, tiny_request(val=None))
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_validation():
    with pytest.raises(ValueError):
        NablaTau(max_alpha=1.0)
    with pytest.raises(ValueError):
        NablaTau(bn_mode="frozen")  # type: ignore[arg-type]
