"""Every transform against a naive reference; optimisers against torch.optim."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from unlearnkit import transforms as T
from unlearnkit.loop import apply_updates, call, fit, grads_of, trainable, virtual_step


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def data(n: int = 16, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


def run_ours(model: nn.Module, tx, steps: int = 10) -> nn.Module:
    x, y = data()
    params = trainable(model)
    state = tx.init(params)
    for _ in range(steps):
        g = grads_of(nn.functional.cross_entropy(model(x), y), params)
        u, state = tx.update(g, state, params)
        apply_updates(params, u)
    return model


def run_torch(model: nn.Module, opt_cls, steps: int = 10, **kw) -> nn.Module:
    x, y = data()
    opt = opt_cls(model.parameters(), **kw)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def assert_same(a: nn.Module, b: nn.Module, atol: float = 1e-6) -> None:
    for (k, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=atol, rtol=1e-5, msg=k)


@pytest.mark.parametrize("momentum,wd,nesterov", [(0.0, 0.0, False), (0.9, 5e-3, False), (0.9, 5e-3, True)])
def test_sgd_matches_torch(momentum, wd, nesterov):
    ours = run_ours(mlp(), T.sgd(0.1, momentum, wd, nesterov))
    ref = run_torch(mlp(), torch.optim.SGD, lr=0.1, momentum=momentum, weight_decay=wd, nesterov=nesterov)
    assert_same(ours, ref)


@pytest.mark.parametrize("decoupled,wd", [(False, 0.0), (False, 1e-2), (True, 1e-2)])
def test_adam_and_adamw_match_torch(decoupled, wd):
    tx = T.adamw(1e-2, weight_decay=wd) if decoupled else T.adam(1e-2, weight_decay=wd)
    ref = run_torch(mlp(), torch.optim.AdamW if decoupled else torch.optim.Adam, lr=1e-2, weight_decay=wd)
    assert_same(run_ours(mlp(), tx), ref, atol=1e-5)


def test_schedules_match_torch_schedulers():
    cos = T.Cosine(0.1, 20)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 20)
    for step in range(21):
        assert cos(step) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-9)
        opt.step()
        sched.step()
    assert cos(30) == 0.0
    lin = T.Linear(1.0, 10, 0.1)
    assert [lin(s) for s in (0, 5, 10, 50)] == pytest.approx([1.0, 0.55, 0.1, 0.1])


def test_mask_after_decay_keeps_frozen_weights_bit_identical():
    model = mlp()
    start = copy.deepcopy(model.state_dict())
    keep = {k: (torch.rand_like(p) < 0.5).float() for k, p in model.named_parameters()}
    run_ours(model, T.chain(T.sgd(0.1, 0.9, 5e-2), T.mask(keep)))
    for k, p in model.named_parameters():
        frozen = keep[k] == 0
        assert torch.equal(p[frozen], start[k][frozen])
        assert not torch.equal(p[~frozen], start[k][~frozen])


def test_mask_before_decay_leaks_the_unlearn_saliency_bug():
    model = mlp()
    start = copy.deepcopy(model.state_dict())
    keep = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    run_ours(model, T.chain(T.mask(keep), T.sgd(0.1, 0.9, 5e-2)))
    assert any(not torch.equal(p, start[k]) for k, p in model.named_parameters())


def test_weighted_equals_summed_loss():
    x, y = data()
    a, b = mlp(), mlp()
    pa = trainable(a)
    g = grads_of({"forget": -nn.functional.cross_entropy(a(x[:4]), y[:4]),
                  "retain": nn.functional.cross_entropy(a(x[4:]), y[4:])}, pa)
    combined, _ = T.weighted(forget=0.5, retain=2.0).update(g, 0, pa)
    pb = trainable(b)
    ref = grads_of(-0.5 * nn.functional.cross_entropy(b(x[:4]), y[:4]) + 2 * nn.functional.cross_entropy(b(x[4:]), y[4:]), pb)
    for k in ref:
        torch.testing.assert_close(combined[k], ref[k])


def naive_pcgrad(gp: torch.Tensor, go: torch.Tensor) -> torch.Tensor:
    dot = float(gp @ go)
    return go - dot / float(gp @ gp) * gp if dot < 0 else go


@pytest.mark.parametrize("per_layer", [False, True])
def test_harmonize_matches_naive_pcgrad(per_layer):
    torch.manual_seed(0)
    p = {"a": torch.randn(3), "b": torch.randn(2, 2)}
    o = {"a": -p["a"] + 0.1 * torch.randn(3), "b": torch.randn(2, 2)}
    out, _ = T.harmonize(per_layer=per_layer).update({"retain": p, "forget": o}, None, {})
    if per_layer:
        for k in p:
            torch.testing.assert_close(out["forget"][k].flatten(), naive_pcgrad(p[k].flatten(), o[k].flatten()))
    else:
        flat = naive_pcgrad(torch.cat([v.flatten() for v in p.values()]), torch.cat([v.flatten() for v in o.values()]))
        torch.testing.assert_close(torch.cat([v.flatten() for v in out["forget"].values()]), flat)
        dot = sum((out["forget"][k] * p[k]).sum() for k in p)
        assert dot >= -1e-6
    assert all(torch.equal(out["retain"][k], p[k]) for k in p)  # one-sided: protected gradient untouched


def test_harmonize_symmetric_edits_both_and_leaves_agreeing_gradients_alone():
    p, o = {"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([-1.0, 1.0])}
    out, _ = T.harmonize(symmetric=True).update({"retain": p, "forget": o}, None, {})
    torch.testing.assert_close(out["forget"]["w"], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(out["retain"]["w"], torch.tensor([0.5, 0.5]))
    same, _ = T.harmonize().update({"retain": p, "forget": p}, None, {})
    assert torch.equal(same["forget"]["w"], p["w"])


def test_project_out_preserves_outputs_in_protected_span():
    torch.manual_seed(0)
    layer = nn.Linear(6, 4)
    x = torch.randn(3, 6)  # protected inputs span a 3-d subspace
    basis = torch.linalg.qr(x.T).Q  # (6, 3) orthonormal
    before = layer(x).detach()
    tx = T.chain(T.sgd(0.5, 0.9, 1e-2), T.project_out({"weight": basis}), T.mask({"bias": torch.zeros(4)}))
    params = {"weight": layer.weight, "bias": layer.bias}
    state = tx.init(params)
    for _ in range(5):
        u, state = tx.update({"weight": torch.randn(4, 6), "bias": torch.randn(4)}, state, params)
        apply_updates(params, u)
    torch.testing.assert_close(layer(x), before, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(layer(torch.randn(3, 6)), layer.weight.new_zeros(3, 4))


def test_clip_by_global_norm():
    g = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([[4.0]])}
    out, _ = T.clip_by_global_norm(1.0).update(g, None, {})
    norm = torch.sqrt(sum((v**2).sum() for v in out.values()))
    assert float(norm) == pytest.approx(1.0, rel=1e-5)
    small, _ = T.clip_by_global_norm(10.0).update(g, None, {})
    assert torch.equal(small["a"], g["a"])


def test_lookahead_matches_naive_reference():
    p = {"w": torch.zeros(2)}
    tx = T.chain(T.sgd(1.0), T.lookahead(every=2, alpha=0.5))
    state = tx.init(p)
    slow, fast = torch.zeros(2), torch.zeros(2)
    for step in range(1, 7):
        g = torch.tensor([1.0, -2.0]) * step
        u, state = tx.update({"w": g}, state, p)
        apply_updates(p, u)
        fast = fast - g
        if step % 2 == 0:
            slow = slow + 0.5 * (fast - slow)
            fast = slow.clone()
        torch.testing.assert_close(p["w"], fast)


def test_scale_schedule():
    out, s = T.scale(T.Linear(1.0, 2, 0.0)).update({"a": torch.ones(1)}, 1, {})
    assert float(out["a"]) == pytest.approx(0.5) and s == 2


def test_virtual_step_second_order_differs_and_call_keeps_bn_stats():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3))
    x, y = data()
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    grads = []
    for first_order in (False, True):
        params = trainable(model)
        fast = virtual_step(nn.functional.cross_entropy(model(x[:8]), y[:8]), params, 0.5, first_order)
        outer = nn.functional.cross_entropy(call(model, fast, x[8:]), y[8:])
        grads.append(torch.autograd.grad(outer, list(params.values())))
    assert all(torch.isfinite(g).all() for g in grads[0])
    assert any(not torch.allclose(a, b) for a, b in zip(*grads))
    model(x)  # a real train-mode forward does update the stats ...
    model.load_state_dict({**model.state_dict(), **buffers})
    params = trainable(model)
    call(model, params, x)  # ... a lookahead forward does not
    for k, b in model.named_buffers():
        assert torch.equal(b, buffers[k])


def test_fit_with_objectives_requires_combiner_and_runs():
    model = mlp()
    x, y = data()

    class B:
        def to(self, device):
            return self

    def loss(_):
        return {"forget": -nn.functional.cross_entropy(model(x[:4]), y[:4]),
                "retain": nn.functional.cross_entropy(model(x[4:]), y[4:])}

    before = nn.functional.cross_entropy(model(x[4:]), y[4:]).item()
    fit(model, [B()] * 20, loss, T.chain(T.weighted(forget=0.1, retain=1.0), T.sgd(0.1)))
    assert nn.functional.cross_entropy(model(x[4:]), y[4:]).item() < before


def test_optimizer_by_name():
    assert T.optimizer("sgd", 0.1, 0.9, 5e-4) == T.sgd(0.1, 0.9, 5e-4)
    assert T.optimizer("adam", 1e-3, 0.9, 5e-4) == T.adam(1e-3, weight_decay=5e-4)  # torch.optim.Adam: L2 decay
    assert T.optimizer("adamw", 1e-3, 0.9, 5e-4) == T.adamw(1e-3, weight_decay=5e-4)  # torch.optim.AdamW
    with pytest.raises(ValueError, match="'sgd', 'adam' or 'adamw'"):
        T.optimizer("rmsprop", 0.1)


def test_per_epoch_schedule_holds_each_epochs_value_over_unequal_epochs():
    lr = T.PerEpoch(lambda epoch: 10.0 * epoch, (2, 0, 3))  # an empty epoch is skipped
    assert [lr(step) for step in range(7)] == [0.0, 0.0, 20.0, 20.0, 20.0, 20.0, 20.0]


def test_edit_changes_only_its_objective_and_total_sums_what_is_there():
    params = {"w": torch.zeros(2)}
    g = {"forget": {"w": torch.tensor([3.0, 4.0])}, "retain": {"w": torch.tensor([1.0, 1.0])}}
    tx = T.chain(T.edit("forget", T.clip_by_global_norm(1.0)), T.total())
    out, _ = tx.update(g, tx.init(params), params)
    torch.testing.assert_close(out["w"], torch.tensor([0.6 + 1.0, 0.8 + 1.0]), atol=1e-6, rtol=0)
    only_retain, _ = tx.update({"retain": g["retain"]}, tx.init(params), params)  # no forget objective this step
    torch.testing.assert_close(only_retain["w"], torch.tensor([1.0, 1.0]))
