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
    assert built[1] == {"batch_size": 32}  # trial 0: the defaults as they are
    assert set(again["best"]) == {"batch_size", "keep", "epochs", "lr"} and (tmp_path / "tune.db").is_file()
    assert tuning.tuned_search(out, "salun", Scenario("digits", "random:0.1"))["trials"] == 4
    assert [set(o) for o in again["trial_objectives"]] == [{"gap", "retrain-free"}] * 4  # both read on every trial
    assert min(o["gap"] for o in again["trial_objectives"]) == again["best_value"]


def test_processes_sharing_a_storage_share_one_trial_budget(tmp_path, monkeypatch):
    """Another machine finishes three trials of the same search while this one runs its first: this
    one then stops, so the search has the 4 trials asked for, not 4 per machine."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    real, calls = tuning.evaluate, []

    def evaluate_while_another_machine_works(*args, **kw):
        if not calls:
            name = optuna.study.get_all_study_names(storage)[0]
            other = optuna.load_study(study_name=name, storage=storage)
            for _ in range(3):
                other.add_trial(optuna.trial.create_trial(value=1e9, user_attrs={"seconds": 1.0}))
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(tuning, "evaluate", evaluate_while_another_machine_works)
    rec = tuning.tune("ga", Scenario("digits", "random:0.1"), 4, 600, tmp_path / "t.jsonl", storage=storage,
                      cache=tmp_path)
    assert len(calls) == 1 and rec["trials"] == 4


def test_a_search_that_spent_its_time_is_finished_and_a_cut_defaults_trial_runs_again(tmp_path, monkeypatch):
    real, calls = tuning.evaluate, []

    def interrupted_once(*args, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # Ctrl-C during the defaults trial: Optuna marks it failed
        return real(*args, **kw)

    monkeypatch.setattr(tuning, "evaluate", interrupted_once)
    out, scenario = tmp_path / "t.jsonl", Scenario("digits", "random:0.1")
    with pytest.raises(KeyboardInterrupt):
        tuning.tune("ga", scenario, 8, 1e-3, out, cache=tmp_path)
    rec = tuning.tune("ga", scenario, 8, 1e-3, out, cache=tmp_path)  # the defaults first, then the cap is spent
    assert rec["trials"] == 1 and rec["default_value"] is not None and rec["default_value"] == rec["best_value"]
    again = tuning.tune("ga", scenario, 8, 1e-3, out, cache=tmp_path)
    assert len(calls) == 2 and again == rec and len(tuning.read_records(out)) == 1  # not run, not appended


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


def test_every_method_of_a_grid_can_be_searched(tmp_path, capsys):
    # PGU's tau defaults to None ("auto": the official configuration), ∇τ declares nothing to search,
    # and SCRUB refuses msteps > epochs: none of them may stop a grid's search.
    grid = tmp_path / "g.toml"
    grid.write_text('seeds = [0]\n[[scenario]]\ndataset = "digits"\nforget = ["random:0.1"]\n'
                    '[methods.retrain]\n[methods.pgu]\nepochs = 3\n[methods.nabla-tau]\n[methods.scrub]\n')
    out = tmp_path / "t.jsonl"
    argv = ["tune", "--grid", str(grid), "--trials", "2", "--out", str(out), "--cache", str(tmp_path)]
    assert main(argv) == 0
    assert "nabla-tau: nothing to search" in capsys.readouterr().err
    records = {r["method"]: r for r in tuning.read_records(out)}
    assert set(records) == {"pgu", "scrub"} and records["pgu"]["best"]["epochs"] == 3
    assert records["pgu"]["trials"] == 2 and records["pgu"]["default_value"] >= records["pgu"]["best_value"]
    assert main(argv) == 0 and len(tuning.read_records(out)) == 2  # finished searches are not appended again
    assert "already searched" in capsys.readouterr().err


def test_a_point_the_method_refuses_is_a_worst_trial_not_a_crash(tmp_path):
    rec = tuning.tune("scrub", Scenario("digits", "random:0.1"), 3, 600, tmp_path / "t.jsonl", cache=tmp_path,
                      space_specs=["msteps=4:5", "epochs=2:3"], fixed={"batch_size": 32})
    assert rec["trials"] == 3 and rec["invalid_trials"] == 2  # every drawn point has msteps > epochs
    assert rec["best_value"] == rec["default_value"] < 1e9 and rec["best"]["msteps"] == 2


def test_search_space_choices_and_bounds_are_read_as_the_fields_are():
    cls = tuning.METHODS["nabla-tau"]
    assert tuning.parse_space(["class_tau=val_mean,chance"], cls)["class_tau"] == ("val_mean", "chance")
    with pytest.raises(tuning.TuneError, match="lr must be > 0"):
        tuning.parse_space(["lr=-1:1"], tuning.METHODS["ft"])
    with pytest.raises(tuning.TuneError, match="class_tau must be one of"):
        tuning.parse_space(["class_tau=val_mean,bogus"], cls)
