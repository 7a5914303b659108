"""Class-conditional generation: U-Net, diffusion loss and samplers, judge + FID, the task, and the
method contract on a tiny generation request."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from unlearnkit import METHODS
from unlearnkit.data import ArrayDataset
from unlearnkit.evaluate import evaluate
from unlearnkit.generation import (NULL_LABEL, Generation, Schedule, UNet, denoising_loss, frechet_distance,
                                   guided_eps, judge, load_or_train_judge, sample)
from unlearnkit.bench.samples import save_grid
from unlearnkit.loop import call, trainable
from unlearnkit.models import build_model
from unlearnkit.request import UnlearnRequest
from unlearnkit.method import supported_tasks
from unlearnkit.train import Recipe, train_model

TASK = Generation(T=100, steps=10, samples_per_class=10)
RECIPE = Recipe(epochs=30, lr=3e-3, batch_size=32, weight_decay=0.0, optimizer="adamw")


def bars(n: int, seed: int, classes: int = 3) -> ArrayDataset:
    """8×8 images: class c is a bright horizontal bar on rows 2c+1..2c+2, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.full((n, 1, 8, 8), -0.5)
    for c in range(classes):
        x[y == c, :, 2 * c + 1: 2 * c + 3] = 1.5
    return ArrayDataset(x + 0.1 * torch.randn(x.shape, generator=g), y, "bars")


@pytest.fixture(scope="module")
def trained():
    """A tiny U-Net trained on 3-class bars; requests forget class 2."""
    train, test = bars(96, 1), bars(60, 2)
    torch.manual_seed(0)
    model = build_model("unet", (1, 8, 8), 3, width=8)
    train_model(model, train, torch.arange(len(train)), RECIPE, seed=0, task=TASK)
    forget = (train.y == 2).nonzero().flatten()
    request = UnlearnRequest(train, forget, 3, val=bars(30, 3), recipe=RECIPE, classes=(2,), task=TASK)
    return model, request, test


@pytest.mark.parametrize("size", [8, 28])
def test_unet_shapes_and_functional_call(size):
    torch.manual_seed(0)
    model = build_model("unet", (1, size, size), 10, width=8)
    x, t, y = torch.randn(3, 1, size, size), torch.tensor([0, 500, 999]), torch.tensor([0, 9, NULL_LABEL])
    out = model(x, t, y)
    assert out.shape == x.shape
    assert torch.allclose(call(model, trainable(model), x, t, y), out, atol=1e-6)
    assert torch.equal(model(x, t, None), model(x, t, torch.full((3,), NULL_LABEL)))
    assert model.label_emb.num_embeddings == 11 and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_loss_decreases_when_training_a_few_steps():
    train = bars(64, 0)
    model = UNet(1, 3, width=8)

    def held_out() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return denoising_loss(model, train.x.repeat(4, 1, 1, 1), train.y.repeat(4), TASK.noise).item()

    before = held_out()
    train_model(model, train, torch.arange(64), dataclasses.replace(RECIPE, epochs=10), task=TASK)
    assert held_out() < 0.6 * before
    per_sample = TASK.loss(model, train.x[:5], train.y[:5], reduction="none")
    assert per_sample.shape == (5,) and (per_sample >= 0).all()


def test_remap_loss_moves_only_the_source_label():
    torch.manual_seed(0)
    model, x = UNet(1, 3, width=8), bars(6, 0).x
    same = TASK.loss(model, x, torch.zeros(6, dtype=torch.long), target=torch.zeros(6, dtype=torch.long))
    assert same.item() == 0
    loss = TASK.loss(model, x, torch.zeros(6, dtype=torch.long), target=torch.ones(6, dtype=torch.long))
    loss.backward()
    grad = model.label_emb.weight.grad
    assert loss > 0 and grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0


class Oracle(nn.Module):
    """The exact ε-predictor when the data is the single point `x_star`."""

    def __init__(self, x_star: torch.Tensor, schedule: Schedule) -> None:
        super().__init__()
        self.x_star, self.ab, self.dummy = x_star, schedule.alpha_bars(), nn.Parameter(torch.zeros(()))

    def forward(self, x, t, y):
        ab = self.ab[t].view(-1, 1, 1, 1)
        return (x - ab.sqrt() * self.x_star) / (1 - ab).sqrt()


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_samplers_recover_a_point_mass_and_are_deterministic(sampler):
    schedule, x_star = Schedule(100), torch.randn(1, 4, 4)
    oracle = Oracle(x_star, schedule)
    out = sample(oracle, torch.arange(3), (1, 4, 4), schedule, steps=20, guidance=0.0, sampler=sampler,
                 generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 1, 4, 4) and torch.allclose(out, x_star.expand(3, 1, 4, 4), atol=1e-3)
    model = UNet(1, 3, width=8)
    kw = dict(schedule=schedule, steps=5, guidance=2.0, sampler=sampler)
    a = sample(model, torch.tensor([0, 1, 2, 0]), (1, 8, 8), generator=torch.Generator().manual_seed(1), **kw)
    b = sample(model, torch.tensor([0, 1, 2, 0]), (1, 8, 8), generator=torch.Generator().manual_seed(1), **kw)
    c = sample(model, torch.tensor([0, 1, 2, 0]), (1, 8, 8), generator=torch.Generator().manual_seed(2), **kw)
    assert a.shape == (4, 1, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)
    assert model.training, "the model's mode is restored"


def test_guidance_convention():
    torch.manual_seed(0)
    model = UNet(1, 3, width=8)
    x, t, y = torch.randn(4, 1, 8, 8), torch.tensor([1, 10, 50, 99]), torch.tensor([0, 1, 2, 1])
    assert torch.equal(guided_eps(model, x, t, y, 0.0), model(x, t, y))
    expected = 3 * model(x, t, y) - 2 * model(x, t, torch.full_like(y, NULL_LABEL))
    assert torch.allclose(guided_eps(model, x, t, y, 2.0), expected, atol=1e-5)


def test_frechet_distance_hand_computed_and_reference():
    # {μ ± a_i e_i}: sample mean μ, unbiased sample covariance diag(2 a_i² / (n − 1)), n = 2d.
    def plus_minus(mu, a):
        e = torch.diag(torch.tensor(a, dtype=torch.float64))
        return torch.cat([torch.tensor(mu) + e, torch.tensor(mu) - e])

    A, B = plus_minus([0.0, 0.0], [3.0, 1.0]), plus_minus([1.0, 2.0], [1.0, 2.0])
    va, vb = np.array([9.0, 1.0]) * 2 / 3, np.array([1.0, 4.0]) * 2 / 3
    expected = 1 + 4 + (va + vb - 2 * np.sqrt(va * vb)).sum()
    assert frechet_distance(A, B) == pytest.approx(expected, rel=1e-9)
    g = torch.Generator().manual_seed(0)
    x, z = torch.randn(200, 5, generator=g), torch.randn(300, 5, generator=g) @ torch.randn(5, 5, generator=g) + 1
    ca, cb = np.cov(x.numpy().astype(np.float64), rowvar=False), np.cov(z.numpy().astype(np.float64), rowvar=False)
    ref = ((x.double().mean(0) - z.double().mean(0)) ** 2).sum().item() + np.trace(
        ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real)
    assert frechet_distance(x, z) == pytest.approx(ref, rel=1e-6)
    assert abs(frechet_distance(x, x)) < 1e-8


def test_judge_is_cached_and_reloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path))
    data = bars(90, 5)
    first = load_or_train_judge(data, 3, width=4)
    assert len(list((tmp_path / "judges").glob("*.safetensors"))) == 1
    monkeypatch.setattr(judge, "train_model", lambda *a, **k: pytest.fail("should load from the cache"))
    second = load_or_train_judge(data, 3, width=4)
    for (k, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), k
    probs, feats = judge.judge_outputs(second, data.x)
    assert (probs.argmax(-1) == data.y).float().mean() > 0.9 and feats.shape == (90, 128)


def test_generation_evaluate_and_grid(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path))
    model, request, test = trained
    metrics = evaluate(model, request, test)
    assert set(Generation.metrics) <= metrics.keys() and metrics["samples_per_class"] == 10
    assert 0 <= metrics["UA"] <= 100 and 0 <= metrics["P_forget"] <= 1 and np.isfinite(metrics["FID"])
    assert metrics["Acc_retain"] >= 80, "a trained model generates the classes it knows"
    assert metrics == evaluate(model, request, test), "evaluation is deterministic"
    with pytest.raises(ValueError, match="class-wise"):
        evaluate(model, dataclasses.replace(request, classes=()), test)
    path = save_grid({"before": model, "again": model}, TASK, request.train, tmp_path / "g.png", [0, 1, 2],
                     per_class=3, marked=[2])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


SMALL = {"epochs": 1, "iterations": 10, "batch_size": 16, "max_forget_epochs": 1, "retain_fisher_batches": 2}
GENERATION_METHODS = [n for n in METHODS.names() if "generation" in supported_tasks(METHODS[n])]


@pytest.mark.parametrize("name", GENERATION_METHODS)
def test_method_contract_on_generation(name, trained):
    model, request, _ = trained
    cls = METHODS[name]
    method = cls(**{k: v for k, v in SMALL.items() if k in {f.name for f in dataclasses.fields(cls)}})
    snapshot = copy.deepcopy(model.state_dict())

    def run():
        torch.manual_seed(0)
        return method(copy.deepcopy(model), request)

    out = run()
    assert out.state_dict().keys() == snapshot.keys()
    assert all(torch.isfinite(v).all() for v in out.state_dict().values() if v.is_floating_point())
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshot[k]), f"{name} modified the input model ({k})"
    for (k, a), b in zip(out.state_dict().items(), run().state_dict().values()):
        assert torch.equal(a, b), f"{name} is not deterministic under a fixed seed ({k})"


def test_methods_ported_to_generation():
    expected = {"ft", "ga", "rl", "salun", "sfr-on", "lur", "neggrad+", "l1-sparse", "retrain", "original"}
    assert expected <= set(GENERATION_METHODS), f"not yet declared: {sorted(expected - set(GENERATION_METHODS))}"


def test_frechet_distance_of_diverged_samples_is_inf():
    good = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
    bad = good.clone()
    bad[3, 1] = float("nan")
    assert frechet_distance(bad, good) == float("inf")


def test_generation_through_the_bench_grid_and_samples(tmp_path, monkeypatch):
    """Every generation method on digits through the same CLI path as classification: grid →
    records (task fields, gap over UA and Acc_retain) → report → sample grid; methods that need
    logits are refused."""
    from unlearnkit.bench import runner
    from unlearnkit.bench.samples import sample_grid
    from unlearnkit.bench.grid import grid_jobs
    from unlearnkit.cli import main

    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    grid = tmp_path / "g.toml"
    grid.write_text('''seeds = [0]
[[scenario]]
dataset = "digits"
task = "generation"
task_options = { samples_per_class = 3, steps = 2, T = 50 }
forget = "class:2"
width = 8
train_size = 400
recipe = { epochs = 1, lr = 2e-3, batch_size = 64, optimizer = "adamw", weight_decay = 0.0 }
[defaults]
epochs = 1
iterations = 5
optimizer = "adam"
lr = 1e-3
batch_size = 64
''' + "".join(f'[methods."{name}"]\n' for name in GENERATION_METHODS if name != "sfr-on")
                    + '[methods."sfr-on"]\niterations = [3, 5]\n')
    out = tmp_path / "r.jsonl"
    assert main(["bench", str(grid), "--out", str(out), "--report", str(tmp_path / "r.md")]) == 0
    records = runner.read_records(out)
    assert {r["method"] for r in records} == set(GENERATION_METHODS)
    assert all(set(Generation.metrics) <= r["metrics"].keys() for r in records)
    rl = next(r for r in records if r["method"] == "rl")
    assert rl["task"]["name"] == "generation" and rl["task"]["fields"]["steps"] == 2
    m = rl["metrics"]
    ref = next(r for r in records if r["method"] == "retrain")["metrics"]
    assert m["gap"] == pytest.approx((abs(m["UA"] - ref["UA"]) + abs(m["Acc_retain"] - ref["Acc_retain"])) / 2)
    assert "| method | UA | Acc_retain | FID | P_forget |" in (tmp_path / "r.md").read_text()
    import unlearnkit.bench.samples as grid_module

    drawn, real_save = {}, grid_module.save_grid
    monkeypatch.setattr(grid_module, "save_grid", lambda models, *a, **k: drawn.update(models) or real_save(models, *a, **k))
    png = sample_grid(grid_jobs(grid), tmp_path / "s.png", per_class=2)
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert {"original", "retrain", "sfr-on iterations=3", "sfr-on iterations=5", "ga"} <= set(drawn)
    scenario = grid_jobs(grid)[0][2]
    with pytest.raises(ValueError, match="scrub does not support the generation task"):
        runner.run("scrub", {}, scenario, 0)


def test_sfron_ddpm_recipe_matches_the_official_update_on_identical_batches(trained):
    """SFR-on with the official DDPM recipe (Adam, constant lr, a forget step every iteration,
    mask then clip 1 on the forget gradient, clip 1 on the retain gradient, pixel-summed losses),
    against the update of `sfron_forget` written with torch.optim on the same batches and noise."""
    from unlearnkit.methods.sfron import SFROn, adaptive_weights, fisher_ratio_mask

    model, request, _ = trained
    method = SFROn(iterations=4, forget_every=1, lr=1e-3, optimizer="adam", schedule="constant", weight_decay=0.0,
                   alpha=10.0, clip=1.0, retain_clip=1.0, pixel_sum=True, fisher_guidance=2.0, fisher_clip=1.0,
                   batch_size=16)
    keep = fisher_ratio_mask(*method.fishers(model, request), method.threshold)
    torch.manual_seed(5)
    ours = method(model, request)
    ref = copy.deepcopy(model).train()
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    forget, retain, pixels = request.stream("forget", 16), request.stream("retain", 16), 64
    torch.manual_seed(5)
    for t in range(4):
        alpha = 10.0 * (1 + math.cos(math.pi * t / 4)) / 2
        losses = request.loss(ref, next(forget), reduction="none") * pixels
        opt.zero_grad()
        (-alpha * (adaptive_weights(losses, 0.5) * losses).sum()).backward()
        for name, p in ref.named_parameters():
            p.grad *= keep[name]
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        (request.loss(ref, next(retain)) * pixels).backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt.step()
    # Biases that feed a GroupNorm get a gradient that is zero up to rounding, which Adam scales up
    # to ±lr steps in whichever direction the rounding fell: the two can differ there, in directions
    # the normalisation removes. What the models compute is the same.
    torch.manual_seed(0)
    x, t, y = torch.randn(16, 1, 8, 8), torch.randint(0, TASK.T, (16,)), torch.arange(16) % 3
    with torch.no_grad():
        worst = (ours.eval()(x, t, y) - ref.eval()(x, t, y)).abs().max().item()
    assert worst < 1e-5, worst
    moved = max((a - b).abs().max().item() for a, b in zip(ours.parameters(), model.parameters()))
    assert moved > 1e-4  # and the update did something
    with pytest.raises(ValueError, match="generation task only"):
        SFROn(pixel_sum=True)(nn.Linear(2, 2), UnlearnRequest(bars(10, 0).select(torch.arange(10)), [0], 3))
