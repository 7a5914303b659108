"""Run one method on one scenario and seed into a flat record; run grids into a resumable JSONL."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
import json
import os
import platform
import signal
import sys
import threading
import time
from collections import defaultdict
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

import unlearnkit
from unlearnkit.bench.report import KEY_NEUTRAL
from unlearnkit.bench.scenarios import Prepared, Progress, Scenario, cached_training, check_device, original_key, prepare
from unlearnkit.checkpoint import atomic_write, digest
from unlearnkit.distributed import barrier, world
from unlearnkit.evaluate import evaluate, evaluation_warnings, loss_histograms
from unlearnkit.method import build, check_request, check_supported
from unlearnkit.methods.reference import Retrain
from unlearnkit.metrics import avg_gap
from unlearnkit.models import weights_fingerprint as fingerprint


_REFERENCE_METRICS: dict[str, tuple[dict[str, float], dict | None]] = {}


def reference(prepared: Prepared, cache: Path | None = None, extra_signals: tuple[str, ...] = ()
              ) -> tuple[torch.nn.Module, dict, dict[str, float], dict | None]:
    """The Retrain model for this request (trained once per forget set and seed, then cached),
    its sidecar (with the training seconds), its metrics and its loss histograms (None when the
    task has none); metrics and histograms are computed once per process."""
    request = prepared.request
    key = digest(original_key(prepared.scenario), prepared.scenario.checkpoint, request.forget, request.seed)
    model = prepared.new_model()
    meta = cached_training(model, "retrain", key, cache, lambda m, cb: Retrain()(m, replace(request, callbacks=cb)))
    metrics_key = digest(key, request.classes, extra_signals, dataclasses.asdict(request.task))
    if metrics_key not in _REFERENCE_METRICS:
        histograms = histograms_of(model, prepared)
        _REFERENCE_METRICS[metrics_key] = (evaluate(model, request, prepared.test, extra_signals=extra_signals),
                                           histograms)
    metrics, histograms = _REFERENCE_METRICS[metrics_key]
    return model, meta, dict(metrics), histograms


def run(name: str, hparams: dict[str, Any], scenario: Scenario, seed: int, cache: Path | None = None,
        extra_signals: tuple[str, ...] = (), keep_model: bool = False, device: str | None = None,
        progress: bool = False) -> dict[str, Any]:
    """Seed, build the request, time the method, evaluate, compare to Retrain. Everything runs on
    `device` (default cpu); the record's `env` names the device it ran on, and `wall_seconds` is
    everything the call took (loading, any model it had to train, evaluation). The cost is kept in
    seconds (`seconds`, `rte` = / Retrain's) and in a unit no other load on the machine changes:
    `samples`, the training samples the request handed out (each one forward and backward), and
    `samples_rte` = / Retrain's (its recipe's epochs × |retain|). `progress` shows a bar of the
    method's updates."""
    began = time.perf_counter()
    method = build(name, hparams)
    check_supported(method, scenario.task)  # before any data is read or any model trained
    check_device(device)
    check_divisible(method, scenario)
    prepared = prepare(scenario, seed, cache, device)
    check_request(method, prepared.request)  # what the method needs of the request, before Retrain trains
    task = prepared.request.task
    ref_model, ref_meta, ref_metrics, ref_histograms = reference(prepared, cache, extra_signals)
    retrain_samples = prepared.request.recipe.epochs * len(prepared.request.retain)  # one pass per epoch
    if method == Retrain():
        model, seconds, metrics, setup_seconds = ref_model, ref_meta["seconds"], dict(ref_metrics), 0.0
        samples = retrain_samples
    else:
        counter = SampleCounter()
        request = replace(prepared.request, callbacks=(counter, *([Progress(name)] if progress else [])))
        setup_seconds = one_off_setup(method, prepared.original, replace(prepared, request=request))
        torch.manual_seed(seed)
        start = time.perf_counter()
        model = method(prepared.original, request)
        seconds = time.perf_counter() - start
        samples = counter.samples  # whole batches (each process is told of every one)
        metrics = evaluate(model, prepared.request, prepared.test, extra_signals=extra_signals)
    seconds += setup_seconds
    metrics.update(gap=avg_gap(metrics, ref_metrics, task.gap_metrics), seconds=seconds, rte=seconds / ref_meta["seconds"],
                   setup_seconds=setup_seconds, samples=float(samples), samples_rte=samples / retrain_samples)
    record = {
        "key": record_key(name, hparams, scenario, seed),
        "method": name, "hparams": dataclasses.asdict(method), "scenario": scenario.name,
        "scenario_spec": scenario.as_dict(), "seed": seed, "metrics": metrics,
        "retrain_seconds": ref_meta["seconds"], "version": unlearnkit.__version__,
        "retrain_metrics": {k: ref_metrics[k] for k in task.metrics if k in ref_metrics},
        "task": {"name": task.name, "metrics": list(task.metrics), "gap_metrics": list(task.gap_metrics),
                 "fields": dataclasses.asdict(task)},
        "env": environment(next(model.parameters()).device),
        "models": {"original": fingerprint(prepared.original), "retrain": fingerprint(ref_model)},
    }
    warnings = evaluation_warnings(metrics, prepared.request) if task.name == "classification" else []
    if warnings:
        record["warnings"] = warnings
    if ref_histograms is not None:  # per-sample forget / test losses, for the report's histograms
        record["loss_histograms"] = {"method": histograms_of(model, prepared), "retrain": ref_histograms}
    record["wall_seconds"] = time.perf_counter() - began
    if keep_model:
        record["_model"] = model
    return record


def check_divisible(method: Any, scenario: Scenario) -> None:
    """Under torchrun every batch is split evenly across the processes: a batch size the number of
    processes does not divide is refused (the shards' mean gradients would be weighted unevenly).
    A method that picks its batch size from the request's kind (PGU's official configurations,
    `resolved`) is checked with the size it will use."""
    if world() == 1:
        return
    if hasattr(method, "resolved"):
        method = method.resolved(classwise=scenario.forget.partition(":")[0] == "class")
    sizes = {"the method's batch_size": getattr(method, "batch_size", None),
             "the recipe's batch_size": scenario.train_recipe.batch_size}
    for what, size in sizes.items():
        if size is not None and size % world():
            raise ValueError(f"{what} {size} is not divisible by the {world()} processes; choose a multiple of "
                             f"{world()}")


class SampleCounter:
    """A `loop.Callback` counting the samples a request hands out."""

    def __init__(self) -> None:
        self.samples = 0

    def on_batch(self, size: int) -> None:
        self.samples += size


def histograms_of(model: torch.nn.Module, prepared: Prepared) -> dict | None:
    """Per-sample loss histograms (forget and test sets) for classification; None for other tasks."""
    if prepared.request.task.name != "classification":
        return None
    return loss_histograms(model, prepared.request, prepared.test)


def clear_warm_caches(method: Any) -> None:
    """Empty the method module's `PER_REQUEST_CACHES` (Fisher diagonals, PGU's statistics), so the
    next timed run pays its own set-up."""
    for cache in getattr(sys.modules[type(method).__module__], "PER_REQUEST_CACHES", ()):
        cache.clear()


def one_off_setup(method: Any, model: torch.nn.Module, prepared: Prepared) -> float:
    """Clear the method's warm caches (no warm caches: every timed run pays its own set-up), then
    run its optional `prepare(model, request)` — work that belongs to the trained model, like PGU's
    full-data statistics — and return its seconds. They are recorded as `setup_seconds` and
    included in `seconds` and `rte`."""
    clear_warm_caches(method)
    start = time.perf_counter()
    if hasattr(method, "prepare"):
        method.prepare(model, prepared.request)
    return time.perf_counter() - start


def record_key(name: str, hparams: dict[str, Any], scenario: Scenario, seed: int) -> str:
    fields = {k: v for k, v in dataclasses.asdict(build(name, hparams)).items()
              if k not in KEY_NEUTRAL or KEY_NEUTRAL[k] != v}
    return digest(name, fields, scenario.as_dict(), seed)


def environment(device: torch.device) -> dict[str, str]:
    """Versions, the processor, and the device the timed model actually ran on."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "threads": str(torch.get_num_threads()), "device": name, "cpu": cpu_name(), "processes": str(world())}


def cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records from a JSONL file; a torn last line (a crash mid-write elsewhere) is ignored."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record, atomically: the file is rewritten via a temp file and a rename."""
    with locked(path):
        old = path.read_text() if path.is_file() else ""
        if old and not old.endswith("\n"):
            old += "\n"
        atomic_write(path, (old + json.dumps(record, sort_keys=True) + "\n").encode())


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder of `path` while its records are read and rewritten, so
    that processes sharing one records file (several `tune` workers on one search, two `bench` runs)
    never drop each other's records. POSIX `flock` on the folder itself (no stray lock file);
    without `fcntl` (Windows) there is no lock. Not re-entrant: take it once per rewrite."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover (Windows)
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (some network mounts): write unlocked, as before
            pass
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def bench(grid: Iterable[tuple[str, dict[str, Any], Scenario, int]], out: Path, cache: Path | None = None,
          progress: bool = True, device: str | None = None, prune: bool = False,
          variants: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Run every (method, hparams, scenario, seed) whose key is not yet in `out`; resumable.

    Jobs run scenario by scenario and, within a scenario, seed by seed (every method of seed 0
    before any of seed 1), so an interrupted long suite leaves whole tables of its first seeds
    rather than every method's first seed missing its Retrain. With `prune`, records whose key is
    no longer in the grid (e.g. made before a method's defaults changed) are dropped first.

    One seed of one scenario (a block) always sits on one original and one Retrain: before a block
    with runs left is continued, its finished runs whose `models` fingerprints differ from the
    models now in the cache (trained again on another machine, or written before fingerprints were
    kept) are dropped and run again. A finished block is never touched, nor are records the grid
    does not produce.

    The first SIGINT or SIGTERM (Ctrl-C) lets the run in progress finish and be recorded, then
    stops; a second one aborts at once (that run is lost, every finished one is kept). `variants`
    maps a record key to fields its record gains (a tuned row: {"variant": "tuned", "tuning": ...}),
    which the tables' labels and cost column read; an entry with "copy": True is a grid job whose
    record also stands for the tuned row: a copy under `tuned_copy_key` carries those fields."""
    from tqdm import tqdm

    blocks: dict[tuple[str, int], list[tuple[str, dict[str, Any], Scenario, int]]] = defaultdict(list)
    for job in seed_major(list(grid)):
        blocks[(json.dumps(job[2].as_dict(), sort_keys=True), job[3])].append(job)
    copies = {k: {f: v for f, v in fields.items() if f != "copy"} for k, fields in (variants or {}).items()
              if fields.get("copy")}
    if prune:
        wanted = {record_key(*job) for jobs in blocks.values() for job in jobs} | set(map(tuned_copy_key, copies))
        with locked(out):
            write_records(out, [r for r in read_records(out) if r.get("key") in wanted])
    done = {r["key"] for r in read_records(out)}
    bar = tqdm(total=sum(record_key(*j) not in done for jobs in blocks.values() for j in jobs),
               desc="unlearnkit bench", unit="run", disable=not progress)
    with stop_after_current_run() as stopping, closing(bar):  # an error is printed below the bar, not on it
        for jobs in blocks.values():
            if stopping.is_set():
                break
            if all(record_key(*j) in done for j in jobs):
                continue
            stale = drop_stale(out, {record_key(*j) for j in jobs}, models_now(jobs[0][2], jobs[0][3], cache, device))
            if stale:
                bar.write(f"unlearnkit bench: {jobs[0][2].name} seed {jobs[0][3]}: {stale} finished run(s) sit on "
                          "another original or Retrain than the cached ones; running them again")
                bar.total += stale
                done = {r["key"] for r in read_records(out)}
            for name, hparams, scenario, seed in (j for j in jobs if record_key(*j) not in done):
                if stopping.is_set():
                    break
                bar.set_postfix_str(f"{name} | {scenario.name} | seed {seed}")
                record = run(name, hparams, scenario, seed, cache, device=device)
                if record["key"] not in copies:
                    record.update((variants or {}).get(record["key"], {}))
                append_record(out, record)  # rank 0 only, under torchrun
                barrier()
                if record["metrics"].get("diverged"):
                    bar.write(f"unlearnkit bench: {name} diverged on {scenario.name} seed {seed} (non-finite outputs); "
                              "its record is marked and left out of the tables' means")
                bar.update()
        if stopping.is_set():
            bar.write(f"unlearnkit bench: stopped; {len(read_records(out))} records in {out}, "
                      "the same command continues")
    write_copies(out, copies)
    return read_records(out)


def tuned_copy_key(key: str) -> str:
    """The key of the tuned row's copy of the record `key` (`bench`'s `variants`)."""
    return digest(key, "tuned")


def write_copies(out: Path, copies: dict[str, dict[str, Any]]) -> None:
    """Keep each copy (`bench`'s `variants` with "copy") equal to its record plus its fields."""
    if not copies:
        return
    with locked(out):
        records = read_records(out)
        by_key = {r["key"]: r for r in records}
        wanted = {tuned_copy_key(k): {**by_key[k], **fields, "key": tuned_copy_key(k)}
                  for k, fields in copies.items() if k in by_key}
        as_text = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731 (as text, a diverged NaN equals itself)
        if not all(as_text(by_key.get(k)) == as_text(v) for k, v in wanted.items()):
            write_records(out, [r for r in records if r["key"] not in wanted] + list(wanted.values()))


def models_now(scenario: Scenario, seed: int, cache: Path | None = None, device: str | None = None) -> dict[str, str]:
    """Fingerprints of the original and the Retrain that runs of this scenario and seed would use now
    (training and caching whichever is missing)."""
    prepared = prepare(scenario, seed, cache, device)
    return {"original": fingerprint(prepared.original), "retrain": fingerprint(reference(prepared, cache)[0])}


def drop_stale(out: Path, keys: set[str], models: dict[str, str]) -> int:
    """Drop the records with one of `keys` that were made on other `models`; return how many."""
    with locked(out):
        records = read_records(out)
        kept = [r for r in records if r.get("key") not in keys or r.get("models") == models]
        if len(kept) < len(records):
            write_records(out, kept)
    return len(records) - len(kept)


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    atomic_write(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode())


@contextmanager
def stop_after_current_run() -> Iterator[threading.Event]:
    """An event set by the first SIGINT/SIGTERM; the second raises KeyboardInterrupt as usual.
    Outside the main thread (where handlers cannot be installed) the event is never set."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return

    def handler(signum: int, frame: Any) -> None:
        if event.is_set():
            raise KeyboardInterrupt
        event.set()
        print("\nunlearnkit bench: finishing the run in progress, then stopping (again to abort)",
              file=sys.stderr, flush=True)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield event
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def seed_major(jobs: list[tuple[str, dict[str, Any], Scenario, int]]) -> list[tuple[str, dict[str, Any], Scenario, int]]:
    """`jobs` reordered by (scenario in order of first appearance, seed), otherwise in grid order."""
    scenarios = [json.dumps(job[2].as_dict(), sort_keys=True) for job in jobs]
    first: dict[str, int] = {}
    for s in scenarios:
        first.setdefault(s, len(first))
    order = sorted(range(len(jobs)), key=lambda i: (first[scenarios[i]], jobs[i][3]))
    return [jobs[i] for i in order]
