"""Method-specific checks for the standard baselines (RL, NegGrad+, ℓ1-sparse, SalUn, SCRUB, BS, BE).

The generic contract (keys, finiteness, determinism, forget accuracy) is in test_methods.py.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit import METHODS
from unlearnkit.metrics import accuracy, predict
from unlearnkit.loop import grad_sum
from unlearnkit.metrics import outputs
from unlearnkit.methods import boundary, l1_sparse, random_label, salun, scrub
from unlearnkit.models import ResNet18


def run(method, toy) -> nn.Module:
    torch.manual_seed(0)
    return method(toy.fresh(), toy.request)


def forget_loss(model: nn.Module, toy) -> float:
    x, y = toy.request.train.x[toy.request.forget], toy.request.train.y[toy.request.forget]
    return F.cross_entropy(outputs(model, x), y).item()


def capture(monkeypatch, module, name: str) -> list:
    """Wrap `module.name` so that each module it returns is recorded with a snapshot taken at creation."""
    made, real = [], getattr(module, name)

    def spy(*args):
        out = real(*args)
        made.append((out, copy.deepcopy(out)))
        return out

    monkeypatch.setattr(module, name, spy)
    return made


def forget_accuracy(model: nn.Module, toy) -> float:
    return accuracy(predict(model, toy.request.train, toy.request.forget))


# ---- RL -------------------------------------------------------------------------------------

def test_random_labels_cover_all_classes_including_the_true_one_by_default():
    torch.manual_seed(0)
    y = torch.randint(0, 5, (5000,))
    drawn = random_label.random_labels(y, 5)
    assert set(drawn.tolist()) == set(range(5))
    assert 0.15 < (drawn == y).double().mean() < 0.25  # the true label comes up about 1/K of the time
    other = random_label.random_labels(y, 5, exclude_true_label=True)
    assert not (other == y).any()
    assert set(other[y == 0].tolist()) == {1, 2, 3, 4}


def test_rl_passes_are_sequential_forget_then_retain_with_true_retain_labels(toy):
    request = toy.request
    torch.manual_seed(0)
    batches = list(random_label.relabelled_passes(request, 16, epochs=2))
    n_f, n_r = math.ceil(len(request.forget) / 16), math.ceil(len(request.retain) / 16)
    expected = ([True] * n_f + [False] * n_r) * 2
    assert [bool(torch.isin(b.idx, request.forget).all()) for b in batches] == expected
    forget_epoch = torch.cat([b.idx for b in batches[:n_f]])
    assert forget_epoch.sort().values.equal(request.forget.sort().values)
    retain = batches[n_f:n_f + n_r]
    assert all(b.y.equal(request.labels[b.idx]) and b.target is None for b in retain)
    assert all(b.y.equal(request.labels[b.idx]) for b in batches[:n_f]), "forget batches keep their true labels"
    targets = torch.cat([b.target for b in batches[:n_f]])
    assert not targets.equal(request.labels[forget_epoch]), "forget targets must be redrawn"


def official_rl(model: nn.Module, batches: list, lr: float, epochs: int, steps_per_epoch: int,
                cosine: bool = False, mask: dict | None = None, restore: bool = True) -> nn.Module:
    """The SalUn authors' RL/SalUn update (Unlearn-Saliency RL.py, after its fix #33) written with
    torch.optim, over given batches: SGD(m=0.9, wd=5e-4); the mask multiplies the gradient and,
    with `restore`, masked weights and their momentum are reset after every step; optionally a
    cosine lr stepped once per epoch (CosineAnnealingLR, as the SFR-on repository's baselines)."""
    opt = torch.optim.SGD(model.parameters(), lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs) if cosine else None
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    for step, b in enumerate(batches):
        opt.zero_grad()
        F.cross_entropy(model(b.x), b.y if b.target is None else b.target).backward()
        if mask is not None:
            for n, p in model.named_parameters():
                p.grad *= mask[n]
        opt.step()
        if mask is not None and restore:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    p.copy_(p * mask[n] + theta0[n] * (1 - mask[n]))
                    opt.state[p]["momentum_buffer"] *= mask[n]
        if sched is not None and (step + 1) % steps_per_epoch == 0:
            sched.step()
    return model


@pytest.mark.parametrize("fields", [{}, {"schedule": "cosine"}, {"passes": "joint", "relabel": "once"},
                                    {"exclude_true_label": True, "relabel": "once", "schedule": "cosine"}])
def test_rl_ends_at_the_weights_of_the_authors_update_on_identical_batches(toy, fields):
    method = random_label.RandomLabel(epochs=3, batch_size=32, lr=0.02, **fields)
    torch.manual_seed(0)  # the labels come from the global RNG: draw the same batches the method will see
    batches = list(random_label.relabelled_passes(toy.request, 32, 3, method.exclude_true_label, method.passes,
                                                  method.relabel))
    torch.manual_seed(0)
    ours = method(toy.model, toy.request)
    per_epoch = random_label.steps_per_epoch(toy.request, 32, method.passes)
    ref = official_rl(copy.deepcopy(toy.model), batches, 0.02, 3, per_epoch, cosine=method.schedule == "cosine")
    worst = max((a - b).abs().max().item() for a, b in zip(ours.parameters(), ref.parameters()))
    assert worst < 5e-7, worst


def test_rl_joint_passes_shuffle_forget_and_retain_together_with_labels_drawn_once(toy):
    request = toy.request
    torch.manual_seed(0)
    batches = list(random_label.relabelled_passes(request, 32, 2, passes="joint", relabel="once",
                                                  exclude_true_label=True))
    per_epoch = math.ceil((len(request.forget) + len(request.retain)) / 32)
    assert len(batches) == 2 * per_epoch
    mixed = [b for b in batches if torch.isin(b.idx, request.forget).any() and not torch.isin(b.idx, request.forget).all()]
    assert mixed, "forget and retain samples share batches"
    label_of = {}
    for b in batches:
        is_f = torch.isin(b.idx, request.forget)
        assert b.target[~is_f].equal(b.y[~is_f]) and not (b.target[is_f] == b.y[is_f]).any()
        for i, t in zip(b.idx[is_f].tolist(), b.target[is_f].tolist()):
            assert label_of.setdefault(i, t) == t, "one label per forget sample for the whole run"


# ---- SalUn ----------------------------------------------------------------------------------

def test_saliency_mask_keeps_the_requested_fraction_of_the_largest_gradients(toy_cnn):
    model, request = toy_cnn.fresh(), toy_cnn.request
    mask = salun.saliency_mask(model, request, keep=0.3, batch_size=64)
    grads = grad_sum(model, request.batches("forget", 64), lambda b: F.cross_entropy(model(b.x), b.y))
    assert mask.keys() == dict(model.named_parameters()).keys()
    kept = torch.cat([m.flatten() for m in mask.values()])
    assert kept.sum().item() == int(0.3 * kept.numel())
    scores = torch.cat([g.abs().flatten() for g in grads.values()])
    assert scores[kept == 1].min() >= scores[kept == 0].max()


def test_salun_frozen_weights_stay_bit_identical_under_weight_decay_and_momentum(toy_cnn):
    method = salun.SalUn(keep=0.3, lr=0.05, momentum=0.9, weight_decay=0.05, epochs=2, batch_size=64)
    mask = salun.saliency_mask(toy_cnn.fresh(), toy_cnn.request, method.keep, method.batch_size)
    before = dict(toy_cnn.model.named_parameters())
    after = dict(run(method, toy_cnn).named_parameters())
    moved = total = 0
    for name, keep in mask.items():
        frozen = keep == 0
        assert torch.equal(after[name][frozen], before[name][frozen]), f"frozen weights of {name} moved"
        moved += (after[name][~frozen] != before[name][~frozen]).sum().item()
        total += (~frozen).sum().item()
    assert moved > 0.9 * total, "the trainable weights should all move under weight decay"


# ---- ℓ1-sparse ------------------------------------------------------------------------------

def test_l1_weight_decays_linearly_per_epoch_and_stops_for_the_last_no_l1_epochs():
    full = l1_sparse.EpochDecay(gamma=2.0, decay_epochs=10, steps_per_epoch=3)
    assert [full(3 * e) for e in range(10)] == pytest.approx([2.0 * (1 - e / 10) for e in range(10)])
    assert full(3 * 4) == full(3 * 4 + 2) != full(3 * 5)  # constant within an epoch
    assert full(30) == 0.0
    half = l1_sparse.EpochDecay(gamma=1.0, decay_epochs=10 - 5, steps_per_epoch=1)
    assert [half(e) for e in range(10)] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2, 0, 0, 0, 0, 0])
    none = l1_sparse.EpochDecay(gamma=1.0, decay_epochs=0, steps_per_epoch=1)
    assert [none(e) for e in range(3)] == [0.0, 0.0, 0.0]


def test_l1_sparse_is_finetuning_at_gamma_zero_and_shrinks_the_l1_norm_otherwise(toy):
    settings = dict(epochs=2, lr=0.05, batch_size=32)
    ft = run(METHODS["ft"](**settings), toy)
    zero = run(l1_sparse.L1Sparse(gamma=0.0, **settings), toy)
    assert all(torch.equal(a, b) for a, b in zip(ft.state_dict().values(), zero.state_dict().values()))
    sparse = run(l1_sparse.L1Sparse(gamma=1e-3, **settings), toy)

    def l1(m: nn.Module) -> float:
        return sum(p.abs().sum().item() for p in m.parameters())

    assert l1(sparse) < l1(ft) - 1.0


# ---- NegGrad+ -------------------------------------------------------------------------------

def test_neggrad_plus_ascends_on_the_forget_set(toy):
    settings = dict(epochs=3, lr=0.05, batch_size=32)
    retain_only = run(METHODS["neggrad+"](beta=1.0, **settings), toy)
    mixed = run(METHODS["neggrad+"](beta=0.7, **settings), toy)
    assert forget_loss(mixed, toy) > forget_loss(retain_only, toy) + 0.1


@pytest.mark.parametrize("stage", ["update", "gradient"])
def test_salun_ends_at_the_weights_of_the_authors_update_on_identical_batches(toy, stage):
    method = salun.SalUn(epochs=2, batch_size=32, lr=0.02, keep=0.3, mask_stage=stage)
    keep = salun.saliency_mask(toy.fresh(), toy.request, 0.3, 32)
    torch.manual_seed(0)
    batches = list(random_label.relabelled_passes(toy.request, 32, 2))
    torch.manual_seed(0)
    ours = method(toy.model, toy.request)
    per_epoch = random_label.steps_per_epoch(toy.request, 32, "sequential")
    # "update": the authors' code after its fix #33 (masked weights restored); "gradient": before it.
    ref = official_rl(copy.deepcopy(toy.model), batches, 0.02, 2, per_epoch, mask=keep, restore=stage == "update")
    worst = max((a - b).abs().max().item() for a, b in zip(ours.parameters(), ref.parameters()))
    assert worst < 5e-7, worst
    frozen = [(p[keep[n] == 0] != q[keep[n] == 0]).any().item()
              for (n, p), q in zip(ours.named_parameters(), toy.model.parameters())]
    assert any(frozen) == (stage == "gradient")  # decay and momentum move frozen weights only when masking the gradient


# ---- SCRUB ----------------------------------------------------------------------------------

def test_distill_kl_is_temperature_scaled_kl_from_teacher_to_student():
    torch.manual_seed(0)
    s, t = torch.randn(6, 4), torch.randn(6, 4)
    p_t, p_s = (t / 3).softmax(1), (s / 3).softmax(1)
    manual = (p_t * (p_t.log() - p_s.log())).sum(1).mean() * 9
    assert scrub.distill_kl(s, t, 3.0).item() == pytest.approx(manual.item(), rel=1e-5)
    assert scrub.distill_kl(t, t, 3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_scrub_teacher_is_never_updated(toy_cnn, monkeypatch):
    made = capture(monkeypatch, scrub, "frozen_copy")
    student = run(scrub.SCRUB(epochs=2, msteps=1, lr=0.05, batch_size=64), toy_cnn)
    ((teacher, _),) = made
    original = toy_cnn.model.state_dict()
    assert teacher is not student
    assert all(torch.equal(v, original[k]) for k, v in teacher.state_dict().items())
    assert not all(torch.equal(v, original[k]) for k, v in student.state_dict().items())


def test_scrub_min_steps_alone_equal_finetuning(toy):
    shared = dict(epochs=1, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=32)
    ft = run(METHODS["ft"](**shared), toy)
    min_only = run(scrub.SCRUB(msteps=0, gamma=1.0, alpha=0.0, **shared), toy)
    assert all(torch.equal(a, b) for a, b in zip(ft.state_dict().values(), min_only.state_dict().values()))


def test_scrub_max_steps_increase_the_forget_divergence_from_the_teacher(toy, monkeypatch):
    teacher = scrub.frozen_copy(toy.model)
    monkeypatch.setattr(scrub, "frozen_copy", lambda model: teacher)
    torch.manual_seed(0)
    student = toy.fresh()
    with torch.no_grad():  # off the teacher, where the KL gradient is not zero
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = toy.request.train.x[toy.request.forget]
    start = scrub.distill_kl(outputs(student, x), outputs(teacher, x), 4.0).item()
    max_only = scrub.SCRUB(epochs=1, msteps=1, gamma=0.0, alpha=0.0, lr=0.05, momentum=0.0, weight_decay=0.0,
                           batch_size=32)  # the min-pass has a zero loss and moves nothing
    end = scrub.distill_kl(outputs(max_only(student, toy.request), x), outputs(teacher, x), 4.0).item()
    assert end > 1.5 * start


# ---- Boundary Shrink / Expand ---------------------------------------------------------------

def test_fgsm_labels_come_from_the_reference_and_cross_the_boundary(toy):
    reference = scrub.frozen_copy(toy.model)
    x, y = toy.request.train.x[toy.request.forget], toy.request.train.y[toy.request.forget]
    assert boundary.nearest_other_class(reference, x, y, eps=1e-6).equal(reference(x).argmax(1))
    far = boundary.nearest_other_class(reference, x, y, eps=1.0)
    assert (far != y).double().mean() > 0.5


def test_boundary_shrink_forgets_with_a_usable_lr_and_keeps_the_reference_frozen(toy_cnn, monkeypatch):
    made = capture(monkeypatch, boundary, "frozen_copy")
    before = forget_accuracy(toy_cnn.model, toy_cnn)
    model = run(boundary.BoundaryShrink(eps=0.5, lr=0.01, epochs=2, batch_size=64), toy_cnn)
    assert forget_accuracy(model, toy_cnn) < before - 20
    ((reference, reference_at_start),) = made
    assert reference is not model and not reference.training
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(),
                                                 reference_at_start.state_dict().values()))


def test_last_linear_finds_the_head_by_module_traversal():
    net = ResNet18(1, 10, width=4)
    assert boundary.last_linear(net) == (net, "fc", net.fc)
    seq = nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.ReLU(), nn.Linear(8, 3)))
    assert boundary.last_linear(seq) == (seq[1], "1", seq[1][1])
    with pytest.raises(ValueError):
        boundary.last_linear(nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_boundary_expand_trains_a_shadow_class_then_removes_it(toy_cnn, monkeypatch):
    made = capture(monkeypatch, boundary, "with_shadow_class")
    before = forget_accuracy(toy_cnn.model, toy_cnn)
    model = run(boundary.BoundaryExpand(lr=0.01, epochs=2, batch_size=64), toy_cnn)
    ((wide, wide_at_start),) = made
    head = boundary.last_linear(model)[2]
    assert model.state_dict().keys() == toy_cnn.model.state_dict().keys()
    assert type(head) is nn.Linear and head.out_features == 10 and wide.out_features == 11
    assert outputs(model, toy_cnn.request.train.x[:3]).shape == (3, 10)
    assert not torch.equal(wide.weight[-1], wide_at_start.weight[-1]), "the shadow class was never trained"
    assert torch.equal(head.weight, wide.weight[:10]) and torch.equal(head.bias, wide.bias[:10])
    assert forget_accuracy(model, toy_cnn) < before - 20


def test_boundary_expand_refuses_a_last_linear_that_is_not_the_head(toy):
    model = nn.Sequential(toy.fresh(), nn.Linear(4, 7))
    with pytest.raises(ValueError, match="not the request's 4 classes"):
        boundary.BoundaryExpand()(model, toy.request)


# ---- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, bad", [
    ("rl", {"epochs": 0}), ("rl", {"lr": 0.0}),
    ("salun", {"keep": 0.0}), ("salun", {"keep": 1.5}),
    ("neggrad+", {"beta": 1.2}), ("l1-sparse", {"gamma": -1.0}), ("l1-sparse", {"no_l1_epochs": 11}),
    ("scrub", {"msteps": 7}), ("scrub", {"temperature": 0.0}), ("bs", {"eps": 0.0}), ("be", {"batch_size": 0}),
])
def test_invalid_hyper_parameters_are_refused(name, bad):
    with pytest.raises(ValueError):
        METHODS[name](**bad)


def test_retrain_warns_about_weights_it_cannot_redraw():
    from unlearnkit.train import reinitialize

    class WithRawParameter(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.full((3,), 7.0))
            self.head = nn.Linear(3, 2)

    model = WithRawParameter()
    before = model.head.weight.detach().clone()
    with pytest.warns(UserWarning, match=r"could not re-initialise \['scale'\]"):
        reinitialize(model, 0)
    assert not torch.equal(model.head.weight, before) and torch.equal(model.scale, torch.full((3,), 7.0))
