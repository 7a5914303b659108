"""`unlearnkit tune`: a search that persists and resumes, never worse than the defaults, on a
validation request whose forget set no reported request shares."""

from __future__ import annotations

import pytest
import torch

from unlearnkit.bench import tune as tuning
from unlearnkit.bench.scenarios import prepare
from unlearnkit.bench.scenarios import Scenario
from unlearnkit.cli import main
from unlearnkit.request import parse_forget


@pytest.mark.parametrize("forget", ["random:0.1", "class:3", "subclass:3:0.5"])
def test_the_validation_request_shares_no_id_with_any_reported_request(tmp_path, forget):
    scenario = Scenario("digits", forget)
    validation = tuning.validation_prepared(scenario, [0, 1, 2], tmp_path)
    ids = validation.request.forget
    for seed in (0, 1, 2):
        reported = prepare(scenario, seed, tmp_path).request.forget
        assert not torch.isin(ids, reported).any(), seed
    labels = validation.request.labels
    if forget == "class:3":
        assert validation.request.classes == (4,) and (labels[ids] == 4).all()
    else:
        assert len(ids) == len(parse_forget(forget, labels, 0)[0]) and validation.request.classes == ()
    if forget.startswith("subclass"):
        assert (labels[ids] == 4).all()  # half of the next class
    assert validation.request.seed == tuning.VALIDATION_SEED


def test_a_search_persists_resumes_without_repeating_and_is_never_worse_than_the_defaults(tmp_path, monkeypatch):
    built = []
    real = tuning.build
    monkeypatch.setattr(tuning, "build", lambda name, hp=None: built.append(hp) or real(name, hp))
    out = tmp_path / "tune.jsonl"
    first = tuning.tune("salun", Scenario("digits", "random:0.1"), 2, 600, out, cache=tmp_path, fixed={"batch_size": 32})
    calls = len(built)
    again = tuning.tune("salun", Scenario("digits", "random:0.1"), 4, 600, out, cache=tmp_path, fixed={"batch_size": 32})
    assert first["trials"] == 2 and again["trials"] == 4
    assert len(built) - calls == 1 + 2  # the default method once, then only the two trials not run before
    assert again["best_value"] <= again["default_value"] == first["default_value"]
    assert built[1] == {"batch_size": 32, "keep": 0.5, "epochs": 10, "lr": 0.013}  # trial 0: the defaults
    assert set(again["best"]) == {"batch_size", "keep", "epochs", "lr"} and (tmp_path / "tune.db").is_file()
    assert tuning.tuned_search(out, "salun", Scenario("digits", "random:0.1"))["trials"] == 4
    assert [set(o) for o in again["trial_objectives"]] == [{"gap", "retrain-free"}] * 4  # both read on every trial
    assert min(o["gap"] for o in again["trial_objectives"]) == again["best_value"]


def test_the_retrain_free_objective_runs_without_a_retrain(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "reference", lambda prepared, cache=None: (None, {"seconds": 1.0}, None, None))
    rec = tuning.tune("ft", Scenario("digits", "class:3"), 2, 600, tmp_path / "t.jsonl", cache=tmp_path,
                      objective="retrain-free", fixed={"batch_size": 32})
    assert rec["objective"] == "retrain-free" and rec["best_value"] <= rec["default_value"]
    assert [set(o) for o in rec["trial_objectives"]] == [{"retrain-free"}] * 2  # no Retrain was there


@pytest.mark.parametrize("argv, msg", [
    (["tune", "nope", "--trials", "2"], "unknown method 'nope'"),
    (["tune", "ft", "--space", "wat=1:2"], "has no field 'wat'"),
    (["tune", "ft", "--space", "lr=0.1:0.01"], "empty range"),
    (["tune", "ft", "--trials", "0"], "at least one trial"),
    (["tune", "ft", "--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open the Optuna storage"),
    (["tune", "ft", "--forget", "group:x"], "random, class or subclass"),
])
def test_bad_tuning_input_is_one_line_and_writes_nothing(argv, msg, tmp_path, capsys):
    out = tmp_path / "t.jsonl"
    assert main(argv + ["--out", str(out), "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1, err
    assert not out.exists()
