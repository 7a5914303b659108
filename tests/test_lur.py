"""LUR: the implicit gradient regulariser is really in the gradient, and trimming does what it says."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.loop import trainable
from unlearnkit.methods.lur import LUR, snip_trim
from unlearnkit.data import ArrayDataset
from unlearnkit.request import Batch, Pair, UnlearnRequest

ALPHA, W_R, W_U = 0.3, 0.7, 1.3
REQUEST = UnlearnRequest(ArrayDataset(torch.zeros(4, 5), torch.arange(4) % 3), torch.tensor([0]), 3)  # its task


def flat(grads) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads])


@pytest.fixture
def problem():
    """A smooth float64 MLP and one (forget, retain) pair on random data."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    batch = lambda n: Batch(torch.randn(n, 5, dtype=torch.float64), torch.randint(0, 3, (n,)), torch.arange(n))
    return model, Pair(forget=batch(6), retain=batch(9))


def losses(model, pair, inner, ascent=False):
    """(inner loss L_a, outer loss L_b) as functions of a flat parameter vector, for candidate A or B."""
    names = list(trainable(model))
    shapes = [p.shape for p in trainable(model).values()]

    def at(vec, batch, sign=1.0):
        params = dict(zip(names, torch.split(vec, [s.numel() for s in shapes])))
        params = {k: v.view(s) for (k, v), s in zip(params.items(), shapes)}
        return sign * F.cross_entropy(torch.func.functional_call(model, params, (batch.x,)), batch.y)

    retain = lambda v: at(v, pair.retain)
    forget = lambda v: at(v, pair.forget, -1.0 if ascent else 1.0)
    return (retain, forget, W_R, W_U) if inner == "retain" else (forget, retain, W_U, W_R)


@pytest.mark.parametrize("inner", ["retain", "forget"])
@pytest.mark.parametrize("forget_loss", ["random_label", "ascent"])
def test_second_order_gradient_is_plain_sum_minus_alpha_hessian_term(problem, inner, forget_loss):
    model, pair = problem
    method = LUR(inner=inner, forget_loss=forget_loss, inner_lr=ALPHA, w_retain=W_R, w_forget=W_U)
    params = list(trainable(model).values())
    grad_j = flat(torch.autograd.grad(method.objective(model, REQUEST, pair, pair.forget.y), params))

    l_a, l_b, w_a, w_b = losses(model, pair, inner, ascent=forget_loss == "ascent")
    theta = flat([p.detach() for p in params])
    g_a = torch.func.grad(l_a)(theta)
    g_b_fast = torch.func.grad(l_b)(theta - ALPHA * g_a)
    _, hvp = torch.autograd.functional.hvp(l_a, theta, g_b_fast)  # H_a(θ) g_b(θ')
    plain = w_a * g_a + w_b * g_b_fast
    assert torch.allclose(grad_j, plain - ALPHA * w_b * hvp, atol=1e-10)
    assert (ALPHA * w_b * hvp).norm() > 1e-3 * plain.norm(), "the Hessian term is not negligible here"

    first = LUR(inner=inner, forget_loss=forget_loss, inner_lr=ALPHA, w_retain=W_R, w_forget=W_U, first_order=True)
    grad_fo = flat(torch.autograd.grad(first.objective(model, REQUEST, pair, pair.forget.y), params))
    assert torch.allclose(grad_fo, plain, atol=1e-10), "first order = the plain sum at the lookahead"


def test_objective_is_the_sum_minus_alpha_gradient_inner_product_to_first_order(problem):
    model, pair = problem
    l_r, l_u, _, _ = losses(model, pair, "retain")
    theta = flat([p.detach() for p in trainable(model).values()])
    inner_product = torch.dot(torch.func.grad(l_u)(theta), torch.func.grad(l_r)(theta))
    errors = []
    for alpha in (1e-2, 1e-3):
        j = LUR(inner_lr=alpha, w_retain=W_R, w_forget=W_U).objective(model, REQUEST, pair, pair.forget.y).item()
        taylor = W_R * l_r(theta) + W_U * l_u(theta) - alpha * W_U * inner_product
        errors.append(abs(j - taylor.item()))
        assert errors[-1] < 0.05 * abs(alpha * W_U * inner_product.item())
    assert errors[1] < errors[0] / 50, "the remainder is O(α²)"


def test_snip_trim_reinitialises_only_the_most_salient_entries_of_eligible_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = Batch(torch.randn(32, 6), torch.randint(0, 3, (32,)), torch.arange(32))
    snip_trim(model, REQUEST, batch, 0.9, ("3",), torch.Generator().manual_seed(0))
    after = model.state_dict()
    for k in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean"):
        assert torch.equal(after[k], before[k]), f"{k} is not eligible and must not change"
    changed = sum(int((after[k] != before[k]).sum()) for k in ("3.weight", "3.bias"))
    assert 0 < changed <= round(0.1 * (16 * 3 + 3)) + 1
    with pytest.raises(ValueError, match="trim_layers"):
        snip_trim(model, REQUEST, batch, 0.9, ("nope",), torch.Generator())


def test_fields_are_validated():
    with pytest.raises(ValueError):
        LUR(inner="both")
    with pytest.raises(ValueError):
        LUR(trim_sparsity=1.5)


@pytest.mark.parametrize("exclude", [True, False])
def test_random_relabelling_never_picks_the_true_label_unless_asked(exclude, monkeypatch):
    g = torch.Generator().manual_seed(0)
    data = ArrayDataset(torch.randn(120, 4, generator=g), torch.randint(0, 3, (120,), generator=g))
    request = UnlearnRequest(data, torch.arange(60), 3)
    seen = []
    original = LUR.objective

    def spy(self, model, request, pair, targets):
        seen.append((pair.forget.y.clone(), targets.clone()))
        return original(self, model, request, pair, targets)

    monkeypatch.setattr(LUR, "objective", spy)
    LUR(epochs=3, batch_size=8, exclude_true_label=exclude)(nn.Linear(4, 3), request)
    y, t = torch.cat([s[0] for s in seen]), torch.cat([s[1] for s in seen])
    assert len(y) == 180
    assert (y == t).any() != exclude  # excluded: never; over all K classes: about 1 in K
