"""SFR-on: adaptive weights, the Fisher-ratio mask, the masked + clipped forget step, and the loop
against a reference written with torch.optim as in the official code."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit import transforms as T
from unlearnkit.data import ArrayDataset
from unlearnkit.loop import apply_updates, grads_of, trainable
from unlearnkit.methods import sfron
from unlearnkit.methods.sfron import SFROn, adaptive_weights, fisher_diagonal, fisher_ratio_mask, forget_edit, weighted_ascent
from unlearnkit.request import Batch, UnlearnRequest


def data(n: int, seed: int) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    return ArrayDataset(torch.randn(n, 4, generator=g) + y[:, None], y)


def forget_grads(net, request, params, b, alpha, temperature, keep, clip):
    """The gradient of one forget step as SFR-on's chain edits it (before the optimiser)."""
    loss = weighted_ascent(request.loss(net, b, reduction="none"), alpha, temperature)
    edit = forget_edit(keep, clip)
    return edit.update(grads_of(loss, params), edit.init(params), params)[0]


def tiny_request() -> UnlearnRequest:
    return UnlearnRequest(data(120, 0), torch.arange(20), 3)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def batch(n: int = 16, seed: int = 1) -> Batch:
    d = data(n, seed)
    return Batch(d.x, d.y, torch.arange(n))


def norm(g: dict) -> float:
    return math.sqrt(sum(float((v**2).sum()) for v in g.values()))


def test_adaptive_weights():
    losses = torch.tensor([0.1, 0.5, 2.0, 4.0])
    w = adaptive_weights(losses, 0.5)
    assert w.sum().item() == pytest.approx(1.0)
    assert (w[:-1] > w[1:]).all(), "smaller loss, larger ascent weight"
    torch.testing.assert_close(w, losses**-0.5 / (losses**-0.5).sum())
    torch.testing.assert_close(adaptive_weights(losses, 0.0), torch.full((4,), 0.25))


def test_fisher_ratio_mask_hand_example():
    f_forget = {"w": torch.tensor([0.0, 1.0, 2.0, 1e-16]), "b": torch.tensor([3.0])}
    f_retain = {"w": torch.tensor([0.0, 2.0, 1.0, 0.0]), "b": torch.tensor([3.0])}
    mask = fisher_ratio_mask(f_forget, f_retain, 1.0)
    assert mask["w"].tolist() == [1.0, 0.0, 1.0, 1.0]  # 1e-15/1e-15 = 1; 0.5; 2; 1.1e-15/1e-15
    assert mask["b"].tolist() == [1.0]
    assert fisher_ratio_mask(f_forget, f_retain, 1.5)["w"].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_fisher_diagonal_is_mean_of_squared_batch_mean_gradients():
    net = nn.Linear(2, 3, bias=False)
    batches = [batch(4, 1), batch(6, 2)]
    batches = [Batch(b.x[:, :2], b.y, b.idx) for b in batches]
    want = torch.zeros(3, 2)
    for b in batches:  # d mean CE / dW = (softmax(x Wᵀ) − onehot(y))ᵀ x / B
        err = (b.x @ net.weight.detach().T).softmax(-1) - F.one_hot(b.y, 3).float()
        want += (err.T @ b.x / len(b)) ** 2 / len(batches)
    torch.testing.assert_close(fisher_diagonal(net, batches, lambda b: F.cross_entropy(net(b.x), b.y))["weight"], want)


def test_fisher_clip_scales_each_batch_gradient_before_squaring():
    net = nn.Linear(2, 3, bias=False)
    batches = [Batch(b.x[:, :2], b.y, b.idx) for b in (batch(4, 1), batch(6, 2))]
    loss = lambda b: 100 * F.cross_entropy(net(b.x), b.y)  # noqa: E731  (large gradients: the clip acts)
    want = torch.zeros(3, 2)
    for b in batches:
        g = torch.autograd.grad(loss(b), net.weight)[0]
        want += (g / g.norm()) ** 2 / len(batches)  # each batch's gradient at norm 1, squared
    torch.testing.assert_close(fisher_diagonal(net, batches, loss, clip=1.0)["weight"], want)


def test_forget_step_moves_only_masked_weights_without_momentum_and_decay():
    net = model()
    params = trainable(net)
    keep = {k: (torch.rand_like(p) < 0.5).float() for k, p in params.items()}
    before = {k: p.detach().clone() for k, p in params.items()}
    g = forget_grads(net, tiny_request(), params, batch(), 25.0, 0.5, keep, 7.0)
    opt = T.sgd(0.1)
    apply_updates(params, opt.update(g, opt.init(params), params)[0])
    for k, p in params.items():
        assert torch.equal(p[keep[k] == 0], before[k][keep[k] == 0])
        assert not torch.equal(p[keep[k] == 1], before[k][keep[k] == 1])
    decay = T.sgd(0.1, weight_decay=0.5)  # faithful: weight decay still acts on masked-out weights
    apply_updates(params, decay.update(g, decay.init(params), params)[0])
    assert not torch.equal(params["0.weight"][keep["0.weight"] == 0], before["0.weight"][keep["0.weight"] == 0])


def test_clip_applies_after_alpha_scaling():
    net = model()
    params, ones = trainable(net), {k: torch.ones_like(p) for k, p in trainable(net).items()}
    assert norm(forget_grads(net, tiny_request(), params, batch(), 1e3, 0.5, ones, 1.0)) == pytest.approx(1.0, rel=1e-4)
    small, double = (forget_grads(net, tiny_request(), params, batch(), a, 0.5, ones, 7.0) for a in (1e-3, 2e-3))
    assert norm(small) < 7.0
    for k in small:
        torch.testing.assert_close(double[k], 2 * small[k])


def test_forget_step_ascends_the_weighted_loss():
    net = model()
    params, ones = trainable(net), {k: torch.ones_like(p) for k, p in trainable(net).items()}
    b = batch()
    before = F.cross_entropy(net(b.x), b.y).item()
    apply_updates(params, {k: -0.05 * g for k, g in forget_grads(net, tiny_request(), params, b, 1.0, 0.5, ones, 7.0).items()})
    assert F.cross_entropy(net(b.x), b.y).item() > before


def test_loop_matches_official_style_reference():
    """Shared torch.optim.SGD, grad mask, clip_grad_norm_, cosine LR and α, as the official loop."""
    method = SFROn(iterations=7, forget_every=3, batch_size=8, alpha=2.0, clip=0.5)
    request = tiny_request()
    ours = method(model(), request)
    ref = model()
    keep = fisher_ratio_mask(*method.fishers(ref, request), method.threshold)
    opt = torch.optim.SGD(ref.parameters(), method.lr, momentum=method.momentum, weight_decay=method.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=method.iterations)
    forget, retain = request.stream("forget", 8), request.stream("retain", 8)
    ref.train()
    for t in range(method.iterations):
        if t % method.forget_every == 0:
            b = next(forget)
            losses = F.cross_entropy(ref(b.x), b.y, reduction="none")
            alpha = method.alpha * (1 + math.cos(math.pi * t / method.iterations)) / 2
            opt.zero_grad()
            (-alpha * (adaptive_weights(losses, method.temperature) * losses).sum()).backward()
            for name, p in ref.named_parameters():
                p.grad *= keep[name]
            torch.nn.utils.clip_grad_norm_(ref.parameters(), method.clip)
            opt.step()
        b = next(retain)
        opt.zero_grad()
        F.cross_entropy(ref(b.x), b.y).backward()
        opt.step()
        sched.step()
    for (k, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


def test_fisher_cache_reuses_and_invalidates(monkeypatch):
    calls = []
    real = sfron.fisher_diagonal
    monkeypatch.setattr(sfron, "fisher_diagonal", lambda *a, **k: calls.append(1) or real(*a, **k))
    sfron.FISHER_CACHE.clear()
    method, request, net = SFROn(batch_size=8), tiny_request(), model()
    method.fishers(net, request)
    method.fishers(net, request)
    assert len(calls) == 2  # forget + retain once
    with torch.no_grad():
        net[0].weight.add_(1e-3)
    method.fishers(net, request)
    assert len(calls) == 4


def test_slow_weights_are_an_opt_in_ablation():
    request = tiny_request()
    base = SFROn(iterations=6, forget_every=3, batch_size=8)(model(), request).state_dict()
    slow = SFROn(iterations=6, forget_every=3, batch_size=8, slow_alpha=0.5)(model(), request).state_dict()
    assert not all(torch.equal(base[k], slow[k]) for k in base)
    with pytest.raises(ValueError):
        SFROn(slow_alpha=0.0)
