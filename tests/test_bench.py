"""Runner records, resumable grids, reports, the CLI, checkpoints and the Python API."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from torch import nn

import unlearnkit
from unlearnkit.bench import report, runner
from unlearnkit.bench.grid import grid_jobs
from unlearnkit.bench.scenarios import Scenario, prepare
from unlearnkit.checkpoint import CheckpointError, load_model, save_model
from unlearnkit.cli import main
from unlearnkit.data import ArrayDataset
from unlearnkit.method import build

GRID = """
seeds = [0, 1]
[defaults]
batch_size = 64
[[scenario]]
dataset = "digits"
forget = ["random:0.1", "class:3"]
[scenario.methods."ga@class"]
lr = 1e-4
[methods.retrain]
[methods.ga]
lr = [1e-3, 1e-2]
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_record_fields_and_retrain_reference(cache):
    rec = runner.run("ga", {"lr": 1e-3}, Scenario("digits", "random:0.1"), 0, cache)
    assert rec["method"] == "ga" and rec["hparams"]["lr"] == 1e-3 and rec["seed"] == 0
    assert set(rec["metrics"]) >= {"UA", "RA", "TA", "MIA", "gap", "seconds", "rte"}
    assert rec["wall_seconds"] >= rec["metrics"]["seconds"] > 0  # the whole call: method, evaluation, loading
    ref = runner.run("retrain", {}, Scenario("digits", "random:0.1"), 0, cache)
    assert ref["metrics"]["gap"] == 0 and ref["metrics"]["rte"] == pytest.approx(1.0)
    assert ref["metrics"]["RA"] > 95 and ref["metrics"]["TA"] > 90  # the cached Retrain is a trained model
    assert rec["metrics"]["rte"] == pytest.approx(rec["metrics"]["seconds"] / ref["metrics"]["seconds"])
    again = runner.run("ga", {"lr": 1e-3}, Scenario("digits", "random:0.1"), 0, cache)
    assert {k: again["metrics"][k] for k in ("UA", "RA", "TA", "MIA")} == {k: rec["metrics"][k] for k in ("UA", "RA", "TA", "MIA")}
    hist = rec["loss_histograms"]
    n_forget = round(0.1 * 0.9 * 0.8 * 1797)  # digits: 80% train, 10% of it held out, 10% forgotten
    assert sum(hist["method"]["forget"]) == sum(hist["retrain"]["forget"]) == n_forget
    assert len(hist["method"]["test"]) == len(hist["method"]["edges"]) - 1 and sum(hist["method"]["test"]) > 0


def test_loss_histogram_figure(cache, tmp_path):
    recs = [runner.run(m, {}, Scenario("digits", "class:3"), 0, cache) for m in ("retrain", "ga")]
    assert report.plot_loss_histograms(recs, tmp_path / "h.png").stat().st_size > 0
    for r in recs:
        del r["loss_histograms"]
    assert report.plot_loss_histograms(recs, tmp_path / "none.png") is None


def test_grid_expands_lists_and_overrides(tmp_path):
    (tmp_path / "g.toml").write_text(GRID)
    jobs = grid_jobs(tmp_path / "g.toml")
    assert len(jobs) == 2 * 2 + 2 * 2 * 2 - 2  # class-wise GA override collapses the lr sweep
    assert {j[1]["lr"] for j in jobs if j[0] == "ga" and j[2].forget == "class:3"} == {1e-4}
    assert all(j[1]["batch_size"] == 64 for j in jobs if j[0] == "ga")
    assert all(j[1] == {} for j in jobs if j[0] == "retrain")  # the reference keeps the original's recipe


def test_bench_resumes_without_losing_or_repeating(tmp_path, cache, monkeypatch):
    (tmp_path / "g.toml").write_text(GRID)
    jobs = grid_jobs(tmp_path / "g.toml")
    out = tmp_path / "results.jsonl"
    real_run, calls = runner.run, []

    def crashing(*args, **kw):
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        calls.append(args[0])
        return real_run(*args, **kw)

    monkeypatch.setattr(runner, "run", crashing)
    with pytest.raises(RuntimeError):
        runner.bench(jobs, out, cache, progress=False)
    assert len(runner.read_records(out)) == 3
    monkeypatch.setattr(runner, "run", real_run)
    with out.open("a") as f:
        f.write('{"torn": ')  # a torn line from a crash elsewhere must not break resuming
    records = runner.bench(jobs, out, cache, progress=False)
    keys = [r["key"] for r in records]
    assert len(keys) == len(jobs) == len(set(keys))

    table = report.markdown(records)
    assert table.index("| retrain |") < table.index("| ga(lr=0.001) |")
    assert "± " in table and "### digits mlp class:3" in table and "**" in table
    png = report.plot(records, tmp_path / "plot.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_an_unfinished_seed_made_on_other_models_is_run_again_whole(tmp_path, cache, capsys):
    grid = tmp_path / "g.toml"
    grid.write_text('seeds = [0, 1]\n[[scenario]]\ndataset = "digits"\n[methods.retrain]\n[methods.ga]\nepochs = 1\n')
    out = tmp_path / "r.jsonl"
    records = runner.bench(grid_jobs(grid), out, cache, progress=False)
    prepared = prepare(Scenario("digits"), 1, cache)
    assert {r["models"]["original"] for r in records} == {runner.fingerprint(prepared.original)}
    assert len({r["models"]["retrain"] for r in records}) == 2  # one Retrain per seed's forget set
    # every run made on another machine's models, and seed 1's GA not run yet
    moved = [{**r, "models": {"original": "elsewhere", "retrain": "elsewhere"}, "metrics": {**r["metrics"], "UA": -1.0}}
             for r in records if (r["seed"], r["method"]) != (1, "ga")]
    runner.write_records(out, moved)
    capsys.readouterr()
    again = {(r["seed"], r["method"]): r for r in runner.bench(grid_jobs(grid), out, cache, progress=False)}
    assert len(again) == 4
    assert again[(0, "ga")]["metrics"]["UA"] == again[(0, "retrain")]["metrics"]["UA"] == -1.0  # finished: untouched
    assert again[(1, "retrain")]["metrics"]["UA"] != -1.0  # unfinished: its Retrain ran again beside the new GA
    assert again[(1, "retrain")]["models"] == again[(1, "ga")]["models"] == records[-1]["models"]
    assert "seed 1: 1 finished run(s) sit on another original or Retrain" in "".join(capsys.readouterr())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_first_signal_finishes_the_run_in_progress_and_a_second_aborts(tmp_path, cache, monkeypatch, signum):
    (tmp_path / "g.toml").write_text(GRID)
    jobs, out = grid_jobs(tmp_path / "g.toml"), tmp_path / "results.jsonl"
    real_run, signals = runner.run, iter([1, 2])

    def interrupted(*args, **kw):
        for _ in range(next(signals, 0)):
            os.kill(os.getpid(), signum)  # handled at once, in the middle of this run
        return real_run(*args, **kw)

    monkeypatch.setattr(runner, "run", interrupted)
    assert len(runner.bench(jobs, out, cache, progress=False)) == 1  # the run in progress finished
    with pytest.raises(KeyboardInterrupt):
        runner.bench(jobs, out, cache, progress=False)  # two signals: abort, that run is lost
    assert len(runner.read_records(out)) == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    assert len(runner.bench(jobs, out, cache, progress=False)) == len(jobs)  # and it resumes


def test_cli_bench_stopped_by_a_signal_exits_non_zero(tmp_path, cache, monkeypatch):
    (tmp_path / "g.toml").write_text(GRID)
    real_run, argv = runner.run, ["bench", str(tmp_path / "g.toml"), "--out", str(tmp_path / "r.jsonl"),
                                  "--cache", str(cache)]
    stop_once = iter([True])
    monkeypatch.setattr(runner, "run", lambda *a, **k: (next(stop_once, False) and os.kill(os.getpid(), signal.SIGINT))
                        or real_run(*a, **k))
    assert main(argv) == 130  # a calling script (`set -e`) stops too, instead of moving on
    assert main(argv) == 0  # resumed to the end


def test_bench_runs_seed_by_seed_and_the_cli_overrides_width_and_device(tmp_path, cache, capsys):
    (tmp_path / "g.toml").write_text(GRID)
    order = [(j[2].forget, j[3]) for j in runner.seed_major(grid_jobs(tmp_path / "g.toml"))]
    assert order == sorted(order, key=lambda fs: (fs[0] != "random:0.1", fs[1]))  # scenario, then seed
    assert order[:3] == [("random:0.1", 0)] * 3  # every method of seed 0 before any of seed 1
    (tmp_path / "one.toml").write_text('[[scenario]]\ndataset = "digits"\n[methods.ga]\nepochs = 1\n')
    out = tmp_path / "one.jsonl"
    assert main(["bench", str(tmp_path / "one.toml"), "--out", str(out), "--width", "48", "--device", "cpu",
                 "--cache", str(cache)]) == 0
    (rec,) = runner.read_records(out)
    with out.open("a") as f:
        f.write(json.dumps({**rec, "key": "made-by-an-older-default"}) + "\n")
    assert main(["bench", str(tmp_path / "one.toml"), "--out", str(out), "--width", "48", "--cache", str(cache)]) == 0
    assert len(runner.read_records(out)) == 2  # kept, unless asked
    assert main(["bench", str(tmp_path / "one.toml"), "--out", str(out), "--width", "48", "--prune",
                 "--cache", str(cache)]) == 0
    assert [r["key"] for r in runner.read_records(out)] == [rec["key"]]
    assert rec["scenario_spec"]["width"] == 48 and rec["scenario"] == "digits mlp48 random:0.1"
    assert rec["env"]["device"] == "cpu"
    if not torch.cuda.is_available():
        assert main(["bench", str(tmp_path / "one.toml"), "--out", str(tmp_path / "c.jsonl"), "--device", "cuda",
                     "--cache", str(cache)]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_run_with_checkpoint_never_modifies_it(tmp_path, cache, capsys):
    prepared = prepare(Scenario("digits"), 0, cache)
    ckpt = tmp_path / "orig.safetensors"
    save_model(prepared.original, ckpt, {"note": "user model"})
    before = sha(ckpt)
    out, saved = tmp_path / "rec.json", tmp_path / "unlearned.safetensors"
    code = main(["run", "ft", "--checkpoint", str(ckpt), "--epochs", "1", "--cache", str(cache),
                 "--out", str(out), "--save", str(saved)])
    assert code == 0 and sha(ckpt) == before
    assert json.loads(out.read_text())["hparams"]["epochs"] == 1
    model = prepared.new_model()
    assert load_model(model, saved)["method"] == "ft"
    assert main(["run", "ft", "--checkpoint", str(ckpt), "--save", str(ckpt), "--cache", str(cache)]) == 2
    assert "would overwrite --checkpoint" in capsys.readouterr().err and sha(ckpt) == before


@pytest.mark.parametrize("argv,msg", [
    (["run", "ga", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["run", "ga", "--forget", "class:42"], "unknown class"),
    (["run", "ga", "--checkpoint", "/nonexistent.safetensors"], "checkpoint not found"),
    (["run", "ga", "--model", "resnet99"], "unknown model"),
    (["report", "/nonexistent.jsonl"], "no records"),
    (["bench", "/nonexistent.toml", "--out", "/tmp/x.jsonl"], "grid file not found"),
])
def test_cli_errors_are_one_clear_line(argv, msg, capsys, cache):
    assert main([*argv, "--cache", str(cache)] if argv[0] == "run" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_corrupt_and_mismatched_checkpoints(tmp_path, cache, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert main(["run", "ga", "--checkpoint", str(bad), "--cache", str(cache)]) == 2
    assert "corrupt" in capsys.readouterr().err
    other = tmp_path / "other.safetensors"
    save_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), other)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(prepare(Scenario("digits"), 0, cache).new_model(), other)


def test_cli_list_and_help(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in ("retrain", "ft", "ga", "digits", "resnet18"))
    with pytest.raises(SystemExit):
        main(["run", "ga", "--help"])
    assert "--lr" in capsys.readouterr().out


def test_python_api_any_module_and_dataset():
    class Plain(torch.utils.data.Dataset):  # not an ArrayDataset: the generic path
        def __init__(self):
            g = torch.Generator().manual_seed(0)
            self.x, self.y = torch.randn(60, 3, generator=g), torch.randint(0, 3, (60,), generator=g)

        def __len__(self):
            return 60

        def __getitem__(self, i):
            return self.x[i], int(self.y[i])

    net = nn.Linear(3, 3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = unlearnkit.unlearn(net, Plain(), [0, 1, 2], "ga", lr=0.1, epochs=2)
    assert all(torch.equal(net.state_dict()[k], before[k]) for k in before)  # the user's model is untouched
    assert not torch.equal(out.weight, net.weight)
    with pytest.raises(ValueError, match="outputs"):
        unlearnkit.unlearn(nn.Linear(3, 5), Plain(), [0], "ga")
    with pytest.raises(KeyError, match="unknown method"):
        unlearnkit.unlearn(net, Plain(), [0], "nope")
    with pytest.raises(ValueError, match="no hyper-parameter"):
        unlearnkit.unlearn(net, Plain(), [0], "ga", wat=1)


def test_user_data_through_array_dataset():
    ds = ArrayDataset(torch.randn(10, 2), torch.arange(10) % 2)
    req = unlearnkit.make_request(nn.Linear(2, 2), ds, [0, 1])
    assert req.num_classes == 2 and len(req.retain) == 8


def gap_record(method, seed, ua, ra=100.0, ta=90.0, mia=10.0):
    return {"method": method, "hparams": {}, "scenario": "s", "seed": seed, "retrain_seconds": 1.0,
            "metrics": {"UA": ua, "RA": ra, "TA": ta, "MIA": mia, "gap": 0.0, "rte": 0.5}}


def test_avg_gap_is_the_mean_of_each_seeds_gap_worked_by_hand():
    # Seed 0: Retrain (UA 10, RA 100, TA 90, MIA 10), method (0, 96, 88, 14): |Δ| = 10, 4, 2, 4 -> 20 / 4 = 5.
    # Seed 1: Retrain (10, 100, 90, 10), method (20, 100, 90, 10): |Δ| = 10, 0, 0, 0 -> 2.5.
    # Avg. Gap = mean(5, 2.5) = 3.75 ± std(5, 2.5) = 1.7678. (The gap of the means would be
    # mean(|10-10|, |98-100|, |89-90|, |12-10|) = 1.25: a different figure, not used.)
    records = [gap_record("retrain", 0, 10.0), gap_record("retrain", 1, 10.0),
               gap_record("ga", 0, 0.0, 96.0, 88.0, 14.0), gap_record("ga", 1, 20.0)]
    assert report.seed_gaps(records[2:], records[:2]) == [5.0, 2.5]
    row = next(line for line in report.markdown(records).splitlines() if line.startswith("| ga |"))
    assert row.split("|")[6].strip().strip("*") == "3.75 ± 1.77"


def test_avg_gap_compares_each_seed_with_retrain_of_that_seed():
    # Retrain ran seeds 0-2 (UA 10, 10, 40); the method matches Retrain exactly on seeds 0 and 2.
    ref = [gap_record("retrain", 0, 10.0), gap_record("retrain", 1, 10.0), gap_record("retrain", 2, 40.0)]
    assert report.seed_gaps([gap_record("ft", 0, 10.0)], ref) == [0.0]
    assert report.seed_gaps([gap_record("ft", 0, 10.0), gap_record("ft", 2, 40.0)], ref) == [0.0, 0.0]
    assert report.seed_gaps([gap_record("ft", 2, 10.0)], ref) == [30 / 4]


def test_ties_with_the_best_come_from_a_paired_test_over_seeds():
    gaps = {"a": {0: 1.0, 1: 1.2, 2: 0.9}, "b": {0: 1.1, 1: 1.1, 2: 1.2},  # a few tenths apart, noisy: a tie
            "c": {0: 5.0, 1: 5.1, 2: 4.9}, "d": {0: 1.5}}  # clearly worse; one seed only: never a tie
    best, ties = report.ties_with_best(gaps)
    assert best == "a" and ties == {"b"}
    row = lambda name: next(l for l in report.markdown(  # noqa: E731
        [gap_record("retrain", s, 10.0) for s in range(3)]
        + [gap_record(n, s, 10.0 + 4 * g) for n, by in gaps.items() for s, g in by.items()]).splitlines()
        if l.startswith(f"| {name} |"))
    assert "**" in row("a") and "≈" in row("b") and "≈" not in row("c") and "≈" not in row("d")


def test_methods_refuse_tasks_they_do_not_support():
    from dataclasses import dataclass
    from typing import ClassVar

    from unlearnkit.method import METHODS, check_supported, supported_tasks
    from unlearnkit.tasks import Classification

    @dataclass(frozen=True)
    class Other(Classification):
        name: ClassVar[str] = "other"

    assert "generation" in supported_tasks(METHODS["ft"]) and supported_tasks(METHODS["scrub"]) == ("classification",)
    with pytest.raises(ValueError, match="scrub does not support the other task"):
        check_supported(METHODS["scrub"](), Other().name)
    net, ds = nn.Linear(2, 2), ArrayDataset(torch.randn(10, 2), torch.arange(10) % 2)
    with pytest.raises(ValueError, match="does not support the other task"):
        unlearnkit.unlearn(net, ds, [0], "scrub", task=Other())
    with pytest.raises(ValueError, match="method ga does not support the other task"):
        unlearnkit.unlearn(net, ds, [0], "ga", task=Other())
    assert isinstance(unlearnkit.unlearn(net, ds, [0], "ga", task=Classification(), epochs=1), nn.Module)


def test_report_columns_follow_the_records_task():
    task = {"name": "gen", "metrics": ["UA", "FID"], "gap_metrics": ["UA"]}

    def rec(method, ua, fid):
        return {"method": method, "hparams": {}, "scenario": "s", "seed": 0, "retrain_seconds": 1.0, "task": task,
                "metrics": {"UA": ua, "FID": fid, "gap": 0.0, "rte": 0.5}}

    text = report.markdown([rec("retrain", 100.0, 5.0), rec("ga", 90.0, 50.0)])
    assert "| method | UA | FID | Avg. Gap |" in text
    row = next(line for line in text.splitlines() if line.startswith("| ga |"))
    assert row.split("|")[4].strip().strip("*") == "10.00 ± 0.00"  # the gap over UA only


def test_report_reads_records_written_before_a_field_existed():
    def rec(method, hparams):
        return {"method": method, "hparams": hparams, "scenario": "s", "seed": 0, "retrain_seconds": 1.0,
                "metrics": {"UA": 1.0, "RA": 1.0, "TA": 1.0, "MIA": 1.0, "gap": 0.0, "rte": 0.5}}

    old, new = rec("ft", {"lr": 0.01}), rec("ft", {"lr": 0.01, "optimizer": "sgd"})
    assert report.markdown([rec("retrain", {}), old, new]).count("| ft |") == 1  # the same variant
    assert "| ft(optimizer=adam) |" in report.markdown([old, rec("ft", {"lr": 0.01, "optimizer": "adam"})])


def test_report_marks_diverged_seeds():
    def rec(method, seed, diverged):
        m = {"UA": 1.0, "RA": 1.0, "TA": 1.0, "MIA": 1.0, "gap": 0.0, "rte": 0.5, **({"diverged": 1.0} if diverged else {})}
        return {"method": method, "hparams": {}, "scenario": "s", "seed": seed, "retrain_seconds": 1.0, "metrics": m}

    text = report.markdown([rec("retrain", 0, False), rec("ga", 0, True), rec("ga", 1, False)])
    assert next(line for line in text.splitlines() if line.startswith("| ga |")).endswith("| 2 (1 diverged) |")


def test_the_plot_leaves_diverged_runs_out(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    def rec(method, seed, ua, rte, diverged=False):
        m = {"UA": ua, "RA": 1.0, "TA": 1.0, "MIA": 1.0, "gap": 0.0, "rte": rte,
             **({"diverged": 1.0} if diverged else {})}
        return {"method": method, "hparams": {}, "scenario": "s", "seed": seed, "retrain_seconds": 1.0, "metrics": m}

    points = {}
    monkeypatch.setattr(Axes, "annotate", lambda self, name, xy, **kw: points.__setitem__(name, xy))
    report.plot([rec("retrain", 0, 1.0, 1.0), rec("retrain", 1, 1.0, 1.0), rec("ga", 0, float("nan"), 9.0, True),
                 rec("ga", 1, 5.0, 0.5), rec("only-diverged", 0, float("nan"), 1.0, True)], tmp_path / "p.png")
    assert points["ga"] == pytest.approx((0.5, 1.0))  # seed 1's gap (|5 - 1| / 4) and time only
    assert set(points) == {"retrain", "ga"}


@pytest.mark.parametrize("grid", sorted((Path(__file__).parents[1] / "benchmarks").glob("*.toml")), ids=lambda p: p.name)
def test_committed_grids_name_registered_methods_and_fields(grid):
    """Every grid that scripts/benchmarks.sh runs builds each of its methods with its fields (a typo
    in a method or field name fails here, not hours into a benchmark) and a forget rule the request
    parser takes (on 10 classes × 10 samples, half of them in the rule's group)."""
    from unlearnkit.request import parse_forget

    jobs = grid_jobs(grid)
    assert jobs
    for name, hparams, scenario, seed in jobs:
        build(name, hparams)
        group = scenario.forget.partition(":")[2]
        ids, _ = parse_forget(scenario.forget, torch.arange(100) % 10, groups=[group] * 50 + ["other"] * 50)
        assert 0 < len(ids) < 100, scenario.forget


def test_report_marks_seeds_measured_against_another_retrain():
    def rec(method, seed, ua, gap, models=None):
        m = {"UA": ua, "RA": 90.0, "TA": 80.0, "MIA": 10.0, "gap": gap, "rte": 0.5}
        return {"method": method, "hparams": {}, "scenario": "s", "seed": seed, "retrain_seconds": 1.0, "metrics": m,
                **({"models": models} if models else {})}

    old = [rec("retrain", 0, 10.0, 0.0), rec("retrain", 1, 12.0, 0.0),
           rec("ga", 0, 14.0, 1.0),  # its own gap (|14 - 10| / 4) agrees with seed 0's Retrain row
           rec("ga", 1, 14.0, 0.75)]  # against seed 1's row it would be 0.5: measured against another Retrain
    row = next(line for line in report.markdown(old).splitlines() if line.startswith("| ga |"))
    assert row.endswith("| 2 (1 †) |") and "\"†\": seeds run against another Retrain" in report.markdown(old)
    same, other = {"original": "a", "retrain": "b"}, {"original": "c", "retrain": "b"}
    new = [rec("retrain", 0, 10.0, 0.0, same), rec("ga", 0, 14.0, 1.0, same), rec("ft", 0, 14.0, 1.0, other)]
    text = report.markdown(new)  # fingerprints decide when both records keep them, the original's included
    assert "| 1 |" in next(line for line in text.splitlines() if line.startswith("| ga |"))
    assert next(line for line in text.splitlines() if line.startswith("| ft |")).endswith("| 1 (1 †) |")


def test_a_model_store_serves_the_committed_models_and_refuses_tampered_ones(tmp_path, monkeypatch, capsys):
    store = tmp_path / "store"
    monkeypatch.setenv("UNLEARNKIT_STORE_MODELS", str(store))
    first = runner.run("ft", {"epochs": 1}, Scenario("digits", "random:0.1"), 0, tmp_path / "cache1")
    monkeypatch.delenv("UNLEARNKIT_STORE_MODELS")
    assert sorted(p.name.split("-")[0] for p in store.glob("*.safetensors")) == ["original", "retrain"]
    capsys.readouterr()
    monkeypatch.setenv("UNLEARNKIT_MODELS", str(store))
    again = runner.run("ft", {"epochs": 1}, Scenario("digits", "random:0.1"), 0, tmp_path / "cache2")  # an empty cache
    assert "training the" not in capsys.readouterr().err  # nothing trained: both models came from the store
    assert again["models"] == first["models"] and again["metrics"]["UA"] == first["metrics"]["UA"]
    from safetensors.torch import load_file, save_file

    original = next(store.glob("original-*.safetensors"))  # tampered with: its sidecar's fingerprint no longer fits
    state = load_file(str(original))
    state = {k: v + 1.0 if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(original))
    prepare(Scenario("digits", "random:0.1"), 0, tmp_path / "cache4")
    err = capsys.readouterr().err
    assert "do not match the fingerprint" in err and "training the original" in err


def test_tuned_rows_run_once_and_a_tuned_default_is_a_copy(tmp_path):
    from unlearnkit.bench.runner import append_record
    from unlearnkit.bench.grid import grid_keys

    grid = tmp_path / "g.toml"
    grid.write_text('seeds = [0]\ntuned = "t.jsonl"\n[[scenario]]\ndataset = "digits"\nforget = ["random:0.1"]\n'
                    '[methods.retrain]\n[methods.ft]\nepochs = 1\n[methods.ga]\nlr = 1e-3\n')
    spec = Scenario("digits", "random:0.1").as_dict()
    for method, best in (("ft", {"epochs": 1}), ("ga", {"lr": 2e-3})):  # ft: the grid's own setting won
        append_record(tmp_path / "t.jsonl", {"kind": "tune", "method": method, "scenario_spec": spec, "objective": "gap",
                                             "best": best, "trials": 4, "seconds": 2.0, "retrain_seconds": 1.0})
    out = tmp_path / "r.jsonl"
    argv = ["bench", str(grid), "--out", str(out), "--cache", str(tmp_path / "cache")]
    assert main(argv) == 0
    records = runner.read_records(out)
    by = {(r["method"], r.get("variant")): r for r in records}
    assert len(records) == 5 and by[("ga", "tuned")]["hparams"]["lr"] == 2e-3
    tuned, own = by[("ft", "tuned")], by[("ft", None)]
    assert tuned["metrics"] == own["metrics"] and tuned["key"] != own["key"]
    assert {r["key"] for r in records} == grid_keys(grid)
    assert main(argv) == 0 and runner.read_records(out) == records  # nothing to run again, no duplicate copy
    assert "| ft (tuned) |" in report.markdown(records) and "| ft |" in report.markdown(records)


def test_a_run_that_diverged_fails_the_call_that_ran_it_only(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text('seeds = [0]\n[[scenario]]\ndataset = "digits"\n[methods.retrain]\n[methods.ga]\nlr = 1e8\nepochs = 3\n')
    argv = ["bench", str(grid), "--out", str(tmp_path / "r.jsonl"), "--cache", str(tmp_path / "cache")]
    assert main(argv) == 3
    assert main(argv) == 0  # resumed: the diverged record stands, nothing new blew up


def _append_many(path: str, worker: int, n: int) -> None:
    for i in range(n):
        runner.append_record(Path(path), {"key": f"{worker}-{i}", "method": "ft"})


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (POSIX)")
def test_processes_appending_to_one_records_file_lose_nothing(tmp_path):
    """Several `tune` workers on one search (or two `bench` runs) append to one JSONL: each append
    is a read and an atomic rewrite, so without the lock two workers would drop each other's records."""
    import multiprocessing

    out = tmp_path / "records.jsonl"
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append_many, args=(str(out), w, 25)) for w in range(3)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    keys = [r["key"] for r in runner.read_records(out)]
    assert sorted(keys) == sorted(f"{w}-{i}" for w in range(3) for i in range(25))
    assert list(tmp_path.iterdir()) == [out]  # no lock file or temporary file left behind
