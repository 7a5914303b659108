"""Scaling and throughput measurements: the counting and the fitted exponents are right."""

from __future__ import annotations

import math

import pytest

from unlearnkit.bench import scaling
from unlearnkit.bench.scenarios import Scenario, prepare


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_exponent_recovers_a_power_law():
    sizes = [100, 200, 400, 800]
    assert scaling.exponent(sizes, [3e-4 * n**1.5 for n in sizes]) == pytest.approx(1.5)
    assert scaling.exponent(sizes, [2.0] * 4) == pytest.approx(0.0, abs=1e-12)


def test_timed_counts_every_sample_a_method_draws(cache):
    prepared = prepare(Scenario("digits", "random:0.1", train_size=600), 0, cache)
    r = scaling.timed("ft", {"epochs": 2, "batch_size": 64}, prepared)
    assert r["samples"] == 2 * len(prepared.request.retain)
    r = scaling.timed("ga", {"epochs": 3}, prepared)
    assert r["samples"] == 3 * len(prepared.request.forget) and r["throughput"] > 0


def test_measure_and_report(cache, tmp_path):
    base = Scenario("digits", "random:0.1", train_size=600)
    result = scaling.measure({"ga": {"epochs": 1}}, base, [0.05, 0.1], [300, 600], 20, cache=cache)
    assert result["forget_sizes"] == [27, 54] and len(result["by_train"]["ga"]) == 2
    text = scaling.write(result, tmp_path / "s.md", tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0 and (tmp_path / "s.md").read_text() == text
    row = next(line for line in text.splitlines() if line.startswith("| ga |"))
    assert len(row.split("|")) == 2 + 2 + 1 + 2 + 1 + 1  # no stray pipes inside cells
    assert math.isfinite(float(row.split("|")[4]))
