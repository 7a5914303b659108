"""`unlearnkit tune`: every method gets the same hyper-parameter search, on a request the tables
never report.

The search runs on Optuna (TPE sampler, seeded) over the fields a method declares searchable
(`hp(..., search=...)` in its own file; `--space` can narrow or widen them). Its first trial is
the method's defaults, so the best trial is never worse than them on the objective.

**No peeking.** Every trial is measured on a *validation request*: the same scenario at seed
`VALIDATION_SEED`, with a forget set disjoint from the forget sets of every reported seed:
- `random:F`: as many samples, drawn from the training samples no reported seed forgets;
- `class:C`: the next class (C + 1 mod K, skipping the reported ones): forgetting class 4 says how
  to forget class 3 without forgetting class 3;
- `subclass:C:F`: the same fraction of the next class (the reported seeds' halves of class C
  together leave too little of it).
Group and ids requests are refused (no disjoint set of the same kind exists).

**Two objectives** (lower is better; every trial records both, so how well the retrain-free one
picks the settings the gap would can be read from any search):
- "gap": Avg. Gap to the Retrain of the validation request (trained once and cached like the others).
- "retrain-free", for a practitioner without a Retrain: measured against held-out data
  (`request.val`, never the test set). Random forgetting: mean of |UA − (100 − VA)|,
  |MIA − MIA_val| and |RA − RA_0|, where VA is the model's held-out accuracy, MIA_val the SVC MIA
  score of held-out samples (what unseen samples look like) and RA_0 the original's retain accuracy.
  Class forgetting: mean of |UA − 100|, |MIA − 100| and |RA − RA_0| (a retrained model never predicts
  the class, and its samples look unseen).

**Equal budget**: the same number of trials and the same wall-clock cap for every method.
Trials persist in an Optuna storage (an SQLite file by default), so an interrupted search resumes
without repeating finished trials; any Optuna storage URL (e.g. PostgreSQL) lets several machines
work on one search at once, within the one budget: trials and seconds are counted over every
process's finished trials (a process may finish the trial it is running when the budget runs out).
No method reports intermediate values, so nothing is pruned.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from unlearnkit.bench.runner import append_record, environment, read_records, reference
from unlearnkit.bench.scenarios import Prepared, Scenario, prepare
from unlearnkit.checkpoint import digest
from unlearnkit.evaluate import balanced_mia, evaluate
from unlearnkit.method import METHODS, Range, build, check_request, check_supported, check_value, search_space
from unlearnkit.metrics import accuracy, avg_gap, confidence, predict
from unlearnkit.request import parse_forget

VALIDATION_SEED = 1000
OBJECTIVES = ("gap", "retrain-free")


class TuneError(ValueError):
    """A search that cannot be run as asked."""


def validation_prepared(scenario: Scenario, reported_seeds: list[int], cache: Path | None = None,
                        device: str | None = None) -> Prepared:
    """The scenario at VALIDATION_SEED, its forget set disjoint from every reported seed's (module docstring)."""
    prepared = prepare(scenario, VALIDATION_SEED, cache, device)
    r = prepared.request
    kind, _, arg = scenario.forget.partition(":")
    groups = getattr(r.train, "groups", None)
    reported = [parse_forget(scenario.forget, r.labels, s, groups) for s in reported_seeds]
    taken = torch.unique(torch.cat([ids for ids, _ in reported]))
    gen = torch.Generator().manual_seed(VALIDATION_SEED)
    if kind in ("class", "subclass"):
        wanted = [int(c) for c in arg.split(":")[0].split(",")]
        classes: list[int] = []
        if r.num_classes < 2 * len(wanted):
            raise TuneError(f"{scenario.forget}: not enough other classes for a disjoint validation request")
        for w in wanted:  # the next class not forgotten by the reported requests nor picked already
            c = (w + 1) % r.num_classes
            while c in wanted or c in classes:
                c = (c + 1) % r.num_classes
            classes.append(c)
        if kind == "subclass":  # the same fraction of the next class
            forget, _ = parse_forget(f"subclass:{classes[0]}:{arg.split(':')[1]}", r.labels, VALIDATION_SEED)
            return replace(prepared, request=replace(r, forget=forget, classes=()))
        forget = torch.isin(r.labels, torch.tensor(classes)).nonzero().flatten()
        return replace(prepared, request=replace(r, forget=forget, classes=tuple(classes)))
    if kind != "random":
        raise TuneError(f"tune needs a random, class or subclass forget rule, not {scenario.forget!r}: "
                        "no disjoint validation request of that kind exists")
    pool = torch.ones(len(r.labels), dtype=torch.bool)
    pool[taken] = False
    candidates = pool.nonzero().flatten()
    n = len(reported[0][0])
    if len(candidates) < n:
        raise TuneError(f"{scenario.forget}: too few samples outside the reported forget sets for a validation request")
    forget = candidates[torch.randperm(len(candidates), generator=gen)[:n]].sort().values
    return replace(prepared, request=replace(r, forget=forget, classes=()))


def retrain_free(metrics: dict[str, float], prepared: Prepared, model: torch.nn.Module) -> float:
    """The retrain-free objective (module docstring), from the metrics and held-out data only."""
    r = prepared.request
    ra0 = accuracy(predict(prepared.original, r.train, r.retain))
    if r.classes:
        return (abs(metrics["UA"] - 100) + abs(metrics["MIA"] - 100) + abs(metrics["RA"] - ra0)) / 3
    val = predict(model, r.val)  # type: ignore[arg-type]
    members = confidence(predict(model, r.train, r.retain))
    mia_val, _, _ = balanced_mia(members, confidence(val), confidence(val), r.generator(37))
    return (abs(metrics["UA"] - (100 - accuracy(val))) + abs(metrics["MIA"] - mia_val) + abs(metrics["RA"] - ra0)) / 3


def parse_space(specs: list[str], cls: type) -> dict[str, Range | tuple]:
    """The method's declared search space, with `FIELD=LOW:HIGH[:log]` or `FIELD=A,B,...` overrides."""
    space = dict(search_space(cls))
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or name not in fields:
            raise TuneError(f"--space {spec!r}: {cls.__name__} has no field {name!r}; it has {sorted(fields)}")
        if ":" in value:
            low, high, *log = value.split(":")
            try:
                lo, hi = float(low), float(high)
            except ValueError:
                raise TuneError(f"--space {spec!r}: expected LOW:HIGH[:log] numbers") from None
            if not lo < hi or (log and lo <= 0):
                raise TuneError(f"--space {spec!r}: empty range (need LOW < HIGH, and LOW > 0 on a log scale)")
            space[name] = Range(lo, hi, bool(log))
        else:
            if not value:
                raise TuneError(f"--space {spec!r}: no choices")
            space[name] = tuple(json_or_text(v) for v in value.split(","))
    for name, s in space.items():  # every end of a range and every choice must be a valid value
        for v in (s.low, s.high) if isinstance(s, Range) else s:
            try:
                check_value(cls, name, int(v) if isinstance(s, Range) and integer_field(cls, name) else v)
            except ValueError as e:
                raise TuneError(f"search space of {name}: {e}") from None
    if not space:
        raise TuneError(f"{cls.__name__} declares no searchable field; give --space FIELD=LOW:HIGH")
    return space


def json_or_text(v: str) -> Any:
    """A --space choice: a JSON value (number, true/false, list) where it parses, else the text."""
    try:
        return json.loads(v)
    except ValueError:
        return v


def integer_field(cls: type, name: str) -> bool:
    """Whether the field `name` of `cls` holds integers (its range is searched as integers)."""
    return "int" in str(next(f.type for f in dataclasses.fields(cls) if f.name == name))


def suggest(trial: Any, cls: type, space: dict[str, Range | tuple]) -> dict[str, Any]:
    """One point of `space` from an Optuna trial, typed as the fields are (ints stay ints)."""
    point = {}
    for name, s in space.items():
        if isinstance(s, Range):
            if integer_field(cls, name):
                point[name] = trial.suggest_int(name, int(s.low), int(s.high), log=s.log)
            else:
                point[name] = trial.suggest_float(name, s.low, s.high, log=s.log)
        else:
            point[name] = trial.suggest_categorical(name, list(s))
    return point


def open_study(storage: str, name: str, seed: int) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="minimize",
                                   sampler=optuna.samplers.TPESampler(seed=seed),
                                   pruner=optuna.pruners.MedianPruner())
    except Exception as e:  # a storage URL that cannot be opened: one line, nothing written
        raise TuneError(f"cannot open the Optuna storage {storage!r}: {type(e).__name__}: {e}") from None


def tune(name: str, scenario: Scenario, trials: int, timeout: float, out: Path, storage: str | None = None,
         objective: str = "gap", fixed: dict[str, Any] | None = None, space_specs: list[str] = (),  # type: ignore
         reported_seeds: list[int] = (0, 1, 2), cache: Path | None = None, device: str | None = None,  # type: ignore
         seed: int = 0) -> dict[str, Any]:
    """Search `name`'s hyper-parameters on the validation request of `scenario` (module docstring)
    for `trials` trials or `timeout` seconds of trials (summed over every process on the storage,
    counting trials of an interrupted run), whichever ends first; append the result to `out` and
    return it. A finished search is returned as recorded, never run again."""
    if trials < 1 or not timeout > 0:
        raise TuneError(f"need at least one trial and a positive time cap, got {trials} trials and {timeout} s")
    if objective not in OBJECTIVES:
        raise TuneError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    cls, fixed = METHODS[name], dict(fixed or {})
    default = build(name, fixed)
    space = {k: v for k, v in parse_space(list(space_specs), cls).items() if k not in fixed}
    check_supported(default, scenario.task)  # the request's own needs: check_request, once it exists
    kind = scenario.forget.partition(":")[0]
    if kind not in ("random", "class", "subclass"):
        raise TuneError(f"tune needs a random, class or subclass forget rule, not {scenario.forget!r}: "
                        "no disjoint validation request of that kind exists")
    key = digest("tune", name, fixed, {k: repr(v) for k, v in space.items()}, scenario.as_dict(), objective,
                 sorted(reported_seeds), VALIDATION_SEED)
    finished = [r for r in read_records(out) if r.get("key") == key]
    if finished and spent_budget(finished[-1], trials, timeout):
        print(f"unlearnkit tune: {name} on {scenario.name}: already searched ({finished[-1]['trials']} trials)",
              file=sys.stderr, flush=True)
        return finished[-1]
    storage = storage or f"sqlite:///{out.with_suffix('.db')}"
    if storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    study = open_study(storage, f"{name}-{key}", seed)  # before any training: a bad URL costs nothing
    validation = validation_prepared(scenario, list(reported_seeds), cache, device)
    check_request(default, validation.request)  # e.g. ∇τ without held-out data: before Retrain trains
    judged_without_retrain = validation.request.val is not None or bool(validation.request.classes)
    if objective == "retrain-free" and not judged_without_retrain:
        raise TuneError("the retrain-free objective needs held-out data (a scenario with a validation split)")
    ref_model, ref_meta, ref_metrics, _ = reference(validation, cache)  # for "gap", and to read both objectives

    def measure(method: Any) -> dict[str, float]:
        """Both objectives of one method ("gap" only when a Retrain is there to compare with;
        "retrain-free" only with held-out data or a class request)."""
        torch.manual_seed(VALIDATION_SEED)
        model = method(validation.original, validation.request)
        metrics = evaluate(model, validation.request, validation.test)
        if metrics.get("diverged"):
            return {"gap": math.inf, "retrain-free": math.inf}
        values = {}
        if judged_without_retrain:
            values["retrain-free"] = retrain_free(metrics, validation, model)
        if ref_metrics is not None:
            values["gap"] = avg_gap(metrics, ref_metrics, validation.request.task.gap_metrics)
        return values

    def run_trial(trial: Any) -> float:
        start = time.perf_counter()
        point = {} if trial.user_attrs.get("defaults") else suggest(trial, cls, space)
        try:  # a point the method refuses (e.g. SCRUB's msteps > epochs) is the worst trial, not a crash
            method = build(name, {**fixed, **point})
            check_request(method, validation.request)
        except (ValueError, TypeError) as e:
            trial.set_user_attr("invalid", str(e))
            method = None
        values = measure(method) if method is not None else {objective: math.inf}
        trial.set_user_attr("seconds", time.perf_counter() - start)
        if "invalid" not in trial.user_attrs:
            trial.set_user_attr("objectives", {k: v if math.isfinite(v) else 1e9 for k, v in values.items()})
        return values[objective] if math.isfinite(values[objective]) else 1e9

    def complete(study: Any) -> list[Any]:
        return [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]

    def budget_spent(study: Any, trial: Any = None) -> bool:
        """The budget counts every process's trials in the storage: several machines on one search
        stop together (each may finish the trial it is running)."""
        done = complete(study)
        over = len(done) >= trials or sum(t.user_attrs.get("seconds", 0.0) for t in done) >= timeout
        if over and trial is not None:  # called back after a trial: stop this process's loop
            study.stop()
        return over

    if not any(t.user_attrs.get("defaults") and t.state.name in ("COMPLETE", "WAITING")
               for t in study.get_trials(deepcopy=False)):  # not yet run, or cut short: run it (again)
        study.enqueue_trial({}, user_attrs={"defaults": True})  # the defaults as they are ("auto" stays so)
    done = complete(study)
    left, spent = trials - len(done), sum(t.user_attrs.get("seconds", 0.0) for t in done)
    if not budget_spent(study):
        print(f"unlearnkit tune: {name} on {scenario.name} (validation seed {VALIDATION_SEED}): {len(done)} trials "
              f"done, up to {left} more within {timeout - spent:.0f} s", file=sys.stderr, flush=True)
        study.optimize(run_trial, n_trials=left, callbacks=[budget_spent])  # the callback keeps the time cap
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = study.best_trial
    defaults_trial = next((t for t in done if t.user_attrs.get("defaults")), None)  # None: it never finished
    best_point = {k: getattr(default, k) for k in space} if best.user_attrs.get("defaults") else best.params
    record = {"kind": "tune", "key": key, "method": name, "scenario": scenario.name, "scenario_spec": scenario.as_dict(),
              "objective": objective, "fixed": fixed, "space": {k: repr(v) for k, v in space.items()},
              "best": {**fixed, **best_point}, "best_value": best.value,
              "default_value": defaults_trial and defaults_trial.value,
              "trial_objectives": [t.user_attrs.get("objectives", {}) for t in done],
              "invalid_trials": sum("invalid" in t.user_attrs for t in done),
              "trials": len(done), "seconds": sum(t.user_attrs.get("seconds", 0.0) for t in done),
              "budget": {"trials": trials, "seconds": timeout},
              "retrain_seconds": ref_meta["seconds"], "validation": {"seed": VALIDATION_SEED,
                                                                      "forget": validation.request.forget.tolist()},
              "reported_seeds": sorted(reported_seeds), "storage": storage, "env": environment(torch.device(device or "cpu"))}
    append_record(out, record)
    return record


def spent_budget(record: dict[str, Any], trials: int, timeout: float) -> bool:
    """Whether the search `record` reports has used a budget of `trials` trials / `timeout` seconds
    of trials. A record without "budget" comes from a loop that stopped at a wall-clock cap, which
    also counted the sampler's and storage's milliseconds: 99% of the cap counts as spent there."""
    cap = timeout if "budget" in record else 0.99 * timeout
    return record["trials"] >= trials or record["seconds"] >= cap


def tuned_search(path: Path, name: str, scenario: Scenario, objective: str = "gap") -> dict[str, Any] | None:
    """The record of the last search of `name` on `scenario` (None when there is none)."""
    found = [r for r in read_records(path) if r.get("kind") == "tune" and r["method"] == name
             and r["scenario_spec"] == scenario.as_dict() and r["objective"] == objective]
    return found[-1] if found else None
