"""The per-step overhead benchmark counts what a step consumes and compares like with like."""

from __future__ import annotations

import pytest

from unlearnkit.bench.overhead import overhead_table, time_steps
from unlearnkit.bench.scenarios import Scenario, prepare


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare(Scenario("digits", "random:0.3", train_size=1000), 0, tmp_path_factory.mktemp("cache"))


def test_time_steps_counts_the_samples_of_one_update(prepared):
    assert time_steps("ga", {"batch_size": 32}, prepared, steps=4)["samples"] == 32
    assert time_steps("neggrad+", {"batch_size": 32}, prepared, steps=4)["samples"] == 64  # forget + retain batch
    ltu = time_steps("ltu", {"batch_size": 16, "mi_steps": 2}, prepared, steps=3)
    assert ltu["samples"] == 64 and ltu["setup_s"] >= 0  # support + query, forget + retain


def test_stopping_checks_are_timed_apart_from_steps(prepared):
    ga = time_steps("ga", {"batch_size": 32}, prepared, steps=4)
    assert ga["with_checks_s"] == ga["step_s"]  # GA runs no check between its updates
    # PGU evaluates retain accuracy after every pass over the 300 forget samples (10 steps); it never stops
    pgu = time_steps("pgu", {"batch_size": 32, "stop": "retain_drop", "early_stop_thres": 100.0}, prepared, steps=12)
    assert pgu["with_checks_s"] > pgu["step_s"] > 0


def test_overhead_table_times_fine_tune_on_the_same_samples(prepared):
    text, rows = overhead_table([("ga", "ga", {}), ("neggrad+", "neggrad+", {})], prepared, batch_size=32, steps=3)
    by = {r["label"]: r for r in rows}
    assert by["ga"]["samples"] == 32 and by["neggrad+"]["samples"] == 64
    assert "batch 64:" in text.splitlines()[0]  # FT was timed at 64 samples for NegGrad+
    assert by["ga"]["same_ratio"] == pytest.approx(by["ga"]["ratio"])  # same batch: the two ratios agree
    assert by["neggrad+"]["same_ratio"] != by["neggrad+"]["ratio"]
    assert all(len(line.split("|")) == 11 for line in text.splitlines() if line.startswith("| "))


def test_overhead_cli_times_the_chosen_methods(tmp_path, capsys):
    from unlearnkit.cli import main

    out = tmp_path / "o.md"
    assert main(["overhead", "--dataset", "digits", "--methods", "ga,lur", "--steps", "3", "--batch-size", "16",
                 "--cache", str(tmp_path), "--out", str(out)]) == 0
    labels = [line.split("|")[1].strip() for line in out.read_text().splitlines() if line.startswith("| ")][1:]
    assert labels == ["ga", "lur", "lur (first order)"]
    assert main(["overhead", "--dataset", "digits", "--methods", "nope", "--cache", str(tmp_path)]) == 2
    assert "unknown ['nope']" in capsys.readouterr().err


def test_every_timed_row_pays_its_own_set_up(prepared, monkeypatch):
    from unlearnkit import subspace

    computed = []
    real = subspace.full_statistics
    monkeypatch.setattr(subspace, "full_statistics", lambda *a, **k: computed.append(1) or real(*a, **k))
    for _ in range(2):  # a second PGU row must not reuse the first row's full-data statistics
        time_steps("pgu", {"batch_size": 32, "stop": "none"}, prepared, steps=3)
    assert len(computed) == 2
