"""Two processes on one machine (torchrun, gloo): the same metrics as one process on the same
global batches; a batch the processes cannot split evenly is refused; a dead process ends the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")

GRID = """seeds = [0]
[defaults]
batch_size = 32
[[scenario]]
dataset = "digits"
forget = ["class:3", "random:0.1"]
[methods.retrain]
[methods.ft]
epochs = 2
[methods.pgu]
epochs = 5
[methods.salun]
epochs = 2
[methods.nabla-tau]
batch_size = 64
[methods.sfr-on]
iterations = 40
"""


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "UNLEARNKIT_MODELS": "", "UNLEARNKIT_CACHE": str(tmp_path / "cache"),
            "UNLEARNKIT_DIST_TIMEOUT": "20", **extra}


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "unlearnkit", *args]


def test_two_processes_give_the_metrics_of_one_on_the_same_global_batches(tmp_path):
    """FT, PGU, SalUn, ∇τ and SFR-on on a class and a random request, one process and two, from the same
    original and Retrain (a model store). Tolerance: every metric equal to within 0.5 points (one
    forget or test sample is ~0.3-0.7 points here); what differs is only the order of float sums."""
    grid = tmp_path / "g.toml"
    grid.write_text(GRID)
    one, two, store = tmp_path / "one.jsonl", tmp_path / "two.jsonl", tmp_path / "store"
    subprocess.run([sys.executable, "-m", "unlearnkit", "bench", str(grid), "--out", str(one), "--store-models",
                    str(store)], env=env(tmp_path / "a"), check=True, capture_output=True)
    done = subprocess.run(torchrun("bench", str(grid), "--out", str(two)), env=env(tmp_path / "b", UNLEARNKIT_MODELS=str(store)),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    a = {(r["method"], r["scenario"]): r for r in map(json.loads, one.read_text().splitlines())}
    b = {(r["method"], r["scenario"]): r for r in map(json.loads, two.read_text().splitlines())}
    assert a.keys() == b.keys() and len(a) == 12
    for key in a:
        assert b[key]["env"]["processes"] == "2" and b[key]["models"] == a[key]["models"]
        for metric in ("UA", "RA", "TA", "MIA"):
            assert abs(a[key]["metrics"][metric] - b[key]["metrics"][metric]) <= 0.5, (key, metric)
        assert a[key]["metrics"]["samples"] == b[key]["metrics"]["samples"]  # counted over both processes
    moved = {k: a[k]["metrics"]["UA"] for k in a if k[1].endswith("class:3")}
    assert moved[("salun", "digits mlp class:3")] > 90  # the comparison covers methods that change the model


def test_a_batch_the_processes_cannot_split_evenly_is_refused(tmp_path):
    done = subprocess.run(torchrun("run", "ft", "--batch-size", "33", "--epochs", "1"), env=env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "batch_size 33 is not divisible by the 2 processes" in done.stderr


@pytest.mark.parametrize("forget, size", [("random:0.1", 128), ("class:3", 100)])
def test_pgu_is_checked_with_the_batch_size_its_official_configuration_picks(forget, size, monkeypatch):
    from unlearnkit.bench import runner
    from unlearnkit.bench.scenarios import Scenario
    from unlearnkit.methods.pgu import PGU

    scenario = Scenario("digits", forget)
    monkeypatch.setattr(runner, "world", lambda: 3)
    with pytest.raises(ValueError, match=f"the method's batch_size {size} is not divisible by the 3 processes"):
        runner.check_divisible(PGU(), scenario)
    monkeypatch.setattr(runner, "world", lambda: 4)
    runner.check_divisible(PGU(), scenario)
    with pytest.raises(ValueError, match="the method's batch_size 90 is not divisible by the 4 processes"):
        runner.check_divisible(PGU(batch_size=90), scenario)  # a size the user sets wins over the official one


def test_a_dead_process_ends_the_job_with_an_error_not_a_hang(tmp_path):
    proc = subprocess.Popen(torchrun("run", "sfr-on", "--iterations", "1000000", "--batch-size", "32"),
                            env=env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        workers: list[int] = []
        while time.time() < deadline and len(workers) < 2:
            time.sleep(1)
            out = subprocess.run(["pgrep", "-f", "-P", str(proc.pid), "unlearnkit"], capture_output=True, text=True)
            workers = [int(p) for p in out.stdout.split()]
        assert len(workers) == 2, "the two workers did not start"
        time.sleep(8)  # into the unlearning loop, where the processes meet in every update
        os.kill(workers[1], signal.SIGKILL)
        _, err = proc.communicate(timeout=90)  # the job ends: torchrun stops the other worker, or its timeout fires
        assert proc.returncode != 0
        assert "Signals.SIGKILL" in err or "SIGKILL" in err or "failed" in err.lower(), err[-1500:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_the_gpu_check_script_runs_its_steps_on_a_cpu(tmp_path):
    """scripts/gpu_check.sh --tiny: the same grid steps (Retrain and the five reproduced methods)
    and the throughput table, on digits, in seconds."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(["bash", str(root / "scripts" / "gpu_check.sh"), "--tiny"],
                          env=env(tmp_path, GPU_CHECK_OUT=str(tmp_path / "out"), PYTHON=sys.executable),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "out" / "gpu_check.md").read_text()
    records = [json.loads(line) for line in (tmp_path / "out" / "gpu_check.jsonl").read_text().splitlines()]
    assert {r["method"] for r in records} == {"retrain", "original", "nabla-tau", "sfr-on", "pgu", "ltu", "lur"}
    assert "### Throughput: digits mlp random:0.1" in table and "| sfr-on |" in table and "× plain training" in table


FISHER = """
import sys, torch
from torch import nn
from unlearnkit import distributed
from unlearnkit.data import ArrayDataset
from unlearnkit.methods.sfron import fisher_diagonal
from unlearnkit.request import UnlearnRequest

distributed.init_from_env()
g = torch.Generator().manual_seed(0)
data = ArrayDataset(torch.randn(64, 5, generator=g), torch.arange(64) % 3)
request = UnlearnRequest(data, torch.arange(16), 3)
model = nn.Linear(5, 3)
model.load_state_dict({"weight": torch.randn(3, 5, generator=g), "bias": torch.zeros(3)})
fisher = fisher_diagonal(model, request.batches("forget", 8), lambda b: request.loss(model, b))
if distributed.rank() == 0:
    torch.save(fisher, sys.argv[1])
distributed.barrier()
distributed.shutdown()
"""


def test_sfron_fisher_is_the_whole_batches_under_two_processes(tmp_path):
    """Each process sees half of each batch: the Fisher diagonal, hence SFR-on's saliency mask, must
    still be that of the whole batches (one process), not of one process's halves."""
    script = tmp_path / "fisher.py"
    script.write_text(FISHER)
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    subprocess.run([sys.executable, str(script), str(one)], env=env(tmp_path), check=True, timeout=120)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(two)], env=env(tmp_path, UNLEARNKIT_DIST_TIMEOUT="100"),
                          capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    a, b = torch.load(one, weights_only=True), torch.load(two, weights_only=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k])
