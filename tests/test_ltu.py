"""LTU: harmonisation, true second-order meta-gradients, clean BatchNorm statistics, working MI heads."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit import transforms as T
from unlearnkit.data import ArrayDataset, take
from unlearnkit.loop import fit, grads_of, trainable
from unlearnkit.methods.ltu import LTU, fit_mi_heads, retain_subset, signal
from unlearnkit.request import Batch, UnlearnRequest


def noisy(n: int, seed: int) -> ArrayDataset:
    """4 heavily overlapping classes in 16-d: an over-parameterised MLP memorises its training set."""
    centres = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    return ArrayDataset(centres[y] + 2.0 * torch.randn(n, 16, generator=g), y)


@pytest.fixture(scope="module")
def overfit():
    """An MLP that memorised 160 samples (train acc 100%, held-out far lower), its request, and fresh data."""
    torch.manual_seed(0)
    train, val, fresh = noisy(160, 1), noisy(80, 2), noisy(200, 3)
    model = nn.Sequential(nn.Linear(16, 128), nn.Tanh(), nn.Linear(128, 4))
    data = Batch(train.x, train.y, torch.arange(160))
    fit(model, [data] * 400, lambda b: F.cross_entropy(model(b.x), b.y), T.adam(1e-2))
    request = UnlearnRequest(train, torch.arange(0, 160, 8), 4, val=val)
    return model, request, fresh


def member_rate(heads, model, x, y) -> float:
    with torch.no_grad():
        return (heads(signal(model.eval()(x), y, LTU().mi_features)).sigmoid().mean(1) > 0.5).float().mean().item()


def test_mi_heads_separate_members_from_non_members_better_than_chance(overfit):
    model, request, fresh = overfit
    subset = retain_subset(request, 0.5, None)
    members, nonmembers = take(request.train, subset[:60]), take(request.val, torch.arange(60))
    heads = fit_mi_heads(model, members, nonmembers, LTU(), torch.Generator().manual_seed(0))
    unseen_members = take(request.train, request.retain[~torch.isin(request.retain, subset[:60])])
    tpr, fpr = member_rate(heads, model, *unseen_members), member_rate(heads, model, fresh.x, fresh.y)
    assert (tpr + 1 - fpr) / 2 > 0.7, f"balanced accuracy {(tpr + 1 - fpr) / 2:.2f} on data the heads never saw"
    assert not any(p.requires_grad for p in heads.parameters()), "heads are frozen after fitting"


def test_ltu_makes_the_forget_set_look_like_non_members(overfit):
    model, request, _ = overfit
    method = LTU(retain_fraction=0.5, steps=30, batch_size=32)
    subset = retain_subset(request, method.retain_fraction, None)
    torch.manual_seed(0)
    heads = method.mi_fitter(model, request, subset)()
    before = member_rate(heads, model, *take(request.train, request.forget))
    after = member_rate(heads, method(copy.deepcopy(model), request), *take(request.train, request.forget))
    assert before > 0.6 and after < before - 0.4


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("per_layer", [False, True])
def test_harmonised_update_never_opposes_the_remembering_gradient(symmetric, per_layer):
    params = {"a": torch.zeros(3), "b": torch.zeros(2)}
    g_rem = {"a": torch.tensor([1.0, 0.0, 0.0]), "b": torch.tensor([1.0, 1.0])}
    g_fgt = {"a": torch.tensor([-3.0, 1.0, 0.0]), "b": torch.tensor([-2.0, 0.5])}
    method = LTU(forget_weight=2.0, momentum=0.0, weight_decay=0.0, symmetric=symmetric, per_layer=per_layer)
    plain = T.chain(T.weighted(retain=1.0, forget=2.0), T.sgd(method.lr))
    dot = lambda tx, keys: sum(float(-(u[k] * g_rem[k]).sum())
                               for u in [tx.update({"retain": g_rem, "forget": g_fgt}, tx.init(params), params)[0]]
                               for k in keys)
    assert dot(plain, "ab") < 0, "without harmonisation these gradients do conflict"
    tx = method.transform()
    for keys in (["a"], ["b"]) if per_layer else (["a", "b"],):
        assert dot(tx, keys) >= -1e-12


@pytest.fixture
def smooth_request():
    torch.manual_seed(0)
    train, val = noisy(64, 4), noisy(32, 5)
    model = nn.Sequential(nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 4)).double()
    train.x, val.x = train.x.double(), val.x.double()
    return model, UnlearnRequest(train, torch.arange(0, 64, 4), 4, val=val)


def meta_grads(method: LTU, model, request):
    subset = retain_subset(request, method.retain_fraction, method.retain_count)
    torch.manual_seed(0)
    losses = method.meta_losses(model, request, subset)
    return grads_of(losses(next(method.episodes(request, subset))), trainable(model))


def test_second_order_meta_gradient_differs_from_first_order_which_is_the_plain_sum(smooth_request):
    model, request = smooth_request
    method = LTU(retain_fraction=0.5, inner_lr=0.5, meta_weight=2.0)
    second = meta_grads(method, model, request)
    first = meta_grads(LTU(retain_fraction=0.5, inner_lr=0.5, meta_weight=2.0, first_order=True), model, request)
    for task in ("retain", "forget"):
        diff = sum(float((second[task][k] - first[task][k]).norm()) for k in second[task])
        assert diff > 1e-3 * sum(float(g.norm()) for g in first[task].values()), task

    ep = next(method.episodes(request, retain_subset(request, 0.5, None)))
    params = trainable(model)
    g_s = grads_of(F.cross_entropy(model(ep.support.retain.x), ep.support.retain.y), params)
    fast = {k: (p - 0.5 * g_s[k]).detach().requires_grad_() for k, p in params.items()}
    query = F.cross_entropy(torch.func.functional_call(model, fast, (ep.query.retain.x,)), ep.query.retain.y)
    g_q = dict(zip(fast, torch.autograd.grad(query, list(fast.values()))))
    for k in params:  # FOMAML: ∇CE(θ; S) + β ∇CE(θ'; Q), evaluated at θ'
        assert torch.allclose(first["retain"][k], g_s[k] + 2.0 * g_q[k], atol=1e-10)


def test_lookahead_forwards_leave_batchnorm_statistics_alone():
    torch.manual_seed(0)
    train, val = noisy(64, 6), noisy(32, 7)
    model = nn.Sequential(nn.Linear(16, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 4))
    request = UnlearnRequest(train, torch.arange(0, 64, 4), 4, val=val)
    method = LTU(retain_fraction=0.5, steps=1)
    ep = next(method.episodes(request, retain_subset(request, 0.5, None)))
    expected = copy.deepcopy(model).train()
    with torch.no_grad():
        expected(ep.support.retain.x)  # the one forward at θ on the retain support batch
    torch.manual_seed(0)
    stepped = method(copy.deepcopy(model), request)
    for (name, got), want, start in zip(stepped.named_buffers(), expected.buffers(), model.buffers()):
        assert not torch.equal(want, start), f"{name}: the support forward should move it"
        assert torch.equal(got, want), f"{name} was touched by a lookahead or forget-set forward"


def test_without_val_mi_feedback_falls_back_to_the_explicit_loss_or_refuses(smooth_request):
    model, request = smooth_request
    blind = UnlearnRequest(request.train, request.forget, 4)
    with pytest.raises(ValueError, match="forgetting signal"):
        LTU(steps=1)(copy.deepcopy(model), blind)
    with pytest.warns(UserWarning, match="val"):
        LTU(steps=1, extra_forget="ascent")(copy.deepcopy(model), blind)


def test_fields_are_validated():
    for bad in (dict(retain_fraction=0.0), dict(mi_features=("softmax",)), dict(query_split="odd"), dict(steps=0)):
        with pytest.raises(ValueError):
            LTU(**bad)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_mi_heads_see_one_batchnorm_mode_when_fitted_and_applied(toy_cnn, mode, monkeypatch):
    """Every logit the MI heads see, when they are fitted and when they judge a forget batch, comes
    from a forward whose BatchNorm ran in `mi_mode`: the event just before each `signal` call is
    the forward that produced its logits."""
    from unlearnkit.methods import ltu as L

    events = []
    model = toy_cnn.fresh()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    bn.register_forward_hook(lambda m, args, out: events.append(m.training))
    real_signal = L.signal
    monkeypatch.setattr(L, "signal", lambda *a: events.append("signal") or real_signal(*a))
    LTU(steps=2, batch_size=16, mi_mode=mode, mi_steps=5)(model, toy_cnn.request)
    produced = [events[i - 1] for i, e in enumerate(events) if e == "signal"]
    assert len(produced) == 2 + 2 * 2  # fitting (members, non-members) + support and query forget batches per step
    assert all(p is (mode == "train") for p in produced), produced
