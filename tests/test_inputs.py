"""A catalogue of bad input, one or more per kind a new user tripped on: every one ends in one
clear line and a non-zero exit before any model is trained; a run that blows the model up fails
loudly; files are written with the user's umask."""

from __future__ import annotations

import json
import math
import os
import stat

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import unlearnkit
from unlearnkit.cli import main
from unlearnkit.data import ArrayDataset
from unlearnkit.request import RequestError

BAD_FIELDS = [
    (["run", "ga", "--epochs", "-1"], "epochs must be >= 1"),
    (["run", "ft", "--epochs", "0"], "epochs must be >= 1"),
    (["run", "ga", "--lr", "-1"], "lr must be > 0"),
    (["run", "ft", "--lr", "0"], "lr must be > 0"),
    (["run", "ft", "--lr", "nan"], "lr must be finite"),
    (["run", "salun", "--lr", "inf"], "lr must be finite"),
    (["run", "ft", "--momentum", "nan"], "momentum must be finite"),
    (["run", "rl", "--weight-decay", "nan"], "weight_decay must be finite"),
    (["run", "ft", "--momentum", "-5"], "momentum must be >= 0"),
    (["run", "ft", "--batch-size", "0"], "batch_size must be >= 1"),
    (["run", "pgu", "--stop", "sometimes"], "stop must be one of"),
    (["run", "nabla-tau", "--class-tau", "test_set"], "class_tau must be one of"),
]
BAD_SCENARIOS = [
    (["run", "ft", "--width", "0"], "width must be an integer >= 1"),
    (["run", "ft", "--width", "-5"], "width must be an integer >= 1"),
    (["run", "ft", "--device", "bogus"], "unknown device 'bogus'"),
    (["run", "ft", "--model", "unet"], "model 'unet' is a generation model"),
    (["run", "ft", "--forget", "half:3"], "unknown forget rule"),
    (["run", "ft", "--train-size", "1"], "train_size must be an integer >= 2"),
    (["run", "scrub", "--task", "generation", "--forget", "class:3"], "scrub does not support the generation task"),
    (["run", "ft", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["run", "ft", "--task", "generation", "--forget", "random:0.1"], "metrics need a forget rule of kind class"),
]


@pytest.mark.parametrize("field, value, msg", [
    ("steps", 0, "steps must be >= 1"), ("steps", 2000, "steps must be <= T = 1000"),
    ("steps", 2.5, "steps must be an integer"), ("samples_per_class", 0, "samples_per_class must be >= 1"),
    ("seed", -1, "seed must be >= 0"), ("guidance", math.nan, "guidance must be finite"),
    ("guidance", -1.0, "guidance must be >= 0"), ("p_uncond", 1.0, "p_uncond must be < 1"),
    ("sampler", "euler", "sampler must be one of"), ("guidance", True, "guidance must be a number"),
    ("T", 1, "T must be >= 2"), ("schedule", "cosin", "schedule must be one of")])
def test_a_grid_scenario_with_a_bad_generation_field_is_refused_when_read(field, value, msg):
    from unlearnkit.bench.scenarios import Scenario

    with pytest.raises(ValueError, match=msg):
        Scenario("digits", "class:3", task="generation", task_options={field: value})


def run_cli(argv, capsys, tmp_path):
    code = main(argv + ["--cache", str(tmp_path / "cache")] if argv[0] in ("run", "tune") else argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("argv, msg", BAD_FIELDS + BAD_SCENARIOS)
def test_bad_input_is_one_line_before_any_training(argv, msg, capsys, tmp_path):
    code, err = run_cli(argv, capsys, tmp_path)
    assert code == 2 and msg in err and len(err.splitlines()) == 1, err
    assert "training the" not in err and not (tmp_path / "cache" / "models").exists()  # nothing was trained


def test_forget_ids_that_are_not_integers_are_refused(capsys, tmp_path):
    for content, msg in (("[1.5, 2.7, 3.9]", "must hold integers"), ("[true, false]", "must hold integers"),
                         ("1 2 x", "must hold integers"), ("[]", "empty")):
        ids = tmp_path / "ids.json"
        ids.write_text(content)
        code, err = run_cli(["run", "ft", "--forget", f"ids:{ids}"], capsys, tmp_path)
        assert code == 2 and msg in err and len(err.splitlines()) == 1, (content, err)
    code, err = run_cli(["run", "ft", "--forget", f"ids:{tmp_path}"], capsys, tmp_path)
    assert code == 2 and "is a directory" in err


@pytest.mark.parametrize("forget, msg", [([], "empty"), ([1.5, 2.0], "must be integers"), ([True, False], "must be integers"),
                                         (torch.tensor([0.0, 1.0]), "must be integers"), ([[1, 2]], "must be integers"),
                                         ([0, 0], "more than once"), (list(range(20)), "whole training set"),
                                         ([25], "out of range")])
def test_the_api_refuses_bad_forget_sets_in_its_own_words(forget, msg):
    data = ArrayDataset(torch.randn(20, 3), torch.arange(20) % 2)
    with pytest.raises(RequestError, match=msg):
        unlearnkit.unlearn(nn.Linear(3, 2), data, forget, "ft")


def test_the_api_refuses_bad_fields_and_shapes_in_its_own_words():
    data = ArrayDataset(torch.randn(20, 3), torch.arange(20) % 2)
    with pytest.raises(ValueError, match="lr must be finite"):
        unlearnkit.unlearn(nn.Linear(3, 2), data, [0, 1], "ft", lr=math.nan)
    with pytest.raises(ValueError, match="the model has 5 outputs but the data has 2 classes"):
        unlearnkit.unlearn(nn.Linear(3, 5), data, [0, 1], "ft")
    with pytest.raises(ValueError, match="num_classes is 1"):
        unlearnkit.make_request(nn.Linear(3, 2), data, [0, 1], num_classes=1)
    with pytest.raises(ValueError, match="num_classes is 0"):
        unlearnkit.make_request(nn.Linear(3, 2), data, [0, 1], num_classes=0)  # 0 is not "infer it"
    negative = ArrayDataset(torch.randn(10, 3), torch.tensor([-1, 0, 1, 0, 1, 0, 1, 0, 1, 0]))
    with pytest.raises(ValueError, match="labels must be class indices >= 0"):
        unlearnkit.make_request(nn.Linear(3, 2), negative, [0, 1])


def test_a_nan_checkpoint_and_a_directory_are_refused_before_any_work(capsys, tmp_path):
    from unlearnkit.bench.scenarios import Scenario, prepare

    model = prepare(Scenario("digits"), 0, tmp_path / "c0").original
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state[next(iter(state))].fill_(math.nan)
    save_file(state, str(tmp_path / "nan.safetensors"))
    capsys.readouterr()
    code, err = run_cli(["run", "ft", "--checkpoint", str(tmp_path / "nan.safetensors")], capsys, tmp_path)
    assert code == 2 and "non-finite weights" in err and len(err.splitlines()) == 1, err
    for path, msg in ((tmp_path, "is a directory, not a checkpoint file"), (tmp_path / "none.st", "not found")):
        code, err = run_cli(["run", "ft", "--checkpoint", str(path)], capsys, tmp_path)
        assert code == 2 and msg in err, err


def test_a_method_that_needs_held_out_data_is_refused_before_retrain_trains(capsys, tmp_path):
    """With --checkpoint nothing is held out: ∇τ (and LTU without its extra loss) cannot run, and
    say so before the runner spends minutes training the Retrain reference."""
    from safetensors.torch import save_model as save

    from unlearnkit.bench.scenarios import Scenario, prepare

    save(prepare(Scenario("digits"), 0, tmp_path / "c0").original, str(tmp_path / "orig.safetensors"))
    capsys.readouterr()
    for method in ("nabla-tau", "ltu"):
        code, err = run_cli(["run", method, "--checkpoint", str(tmp_path / "orig.safetensors")], capsys, tmp_path)
        assert code == 2 and ("held-out data" in err or "no forgetting signal" in err), err
        assert "training the retrain model" not in err, err


def test_outputs_that_cannot_be_written_are_refused_before_any_work(capsys, tmp_path):
    for argv, msg in ((["run", "ft", "--out", str(tmp_path)], "is a directory; give a file path"),
                      (["run", "ft", "--save", str(tmp_path)], "is a directory; give a file path"),
                      (["run", "ft", "--out", str(tmp_path / "a-file" / "x.json")], "cannot write there")):
        (tmp_path / "a-file").write_text("")
        code, err = run_cli(argv, capsys, tmp_path)
        assert code == 2 and msg in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "cache" / "models").exists()


def test_a_grid_with_a_bad_value_writes_no_record(capsys, tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text('seeds = [0]\n[[scenario]]\ndataset = "digits"\n[methods.retrain]\n[methods.ft]\nlr = -1\n')
    out = tmp_path / "r.jsonl"
    code, err = run_cli(["bench", str(grid), "--out", str(out), "--cache", str(tmp_path / "cache")], capsys, tmp_path)
    assert code == 2 and "lr must be > 0" in err and len(err.splitlines()) == 1 and not out.exists(), err


def test_a_run_that_blows_the_model_up_fails_loudly(capsys, tmp_path):
    out = tmp_path / "rec.json"
    code = main(["run", "ga", "--lr", "1e8", "--epochs", "3", "--batch-size", "32", "--out", str(out),
                 "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and "ga diverged" in err[-1]
    assert json.loads(out.read_text())["metrics"]["diverged"] == 1.0  # the record is kept, and marked


def test_results_and_models_get_the_users_umask(capsys, tmp_path):
    old = os.umask(0o022)
    try:
        out, saved = tmp_path / "rec.json", tmp_path / "m.safetensors"
        assert main(["run", "ft", "--epochs", "1", "--out", str(out), "--save", str(saved),
                     "--cache", str(tmp_path / "cache")]) == 0
    finally:
        os.umask(old)
    for path in (out, saved, tmp_path / "m.safetensors.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
