"""`unlearnkit list | run | bench | tune | audit | overhead | scaling | samples | report`: the command line;
methods' flags are generated from their dataclass fields."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from pathlib import Path
from typing import Any

import unlearnkit
from unlearnkit import distributed
from unlearnkit.bench import report as reporting
from unlearnkit.bench.grid import grid_jobs, grid_selection, tuned_jobs
from unlearnkit.bench.runner import bench, read_records, record_key, run
from unlearnkit.bench.scenarios import Scenario
from unlearnkit.checkpoint import atomic_write, save_model, sidecar
from unlearnkit.method import METHODS, build, supported_tasks
from unlearnkit.registry import DATASETS, FORMATS, MODELS, TASKS

SCENARIO_FLAGS = ("dataset", "forget", "model", "width", "checkpoint", "train_size", "task")


def first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n", 1)[0]


def parse_value(text: str, hint: Any) -> Any:
    """Turn a flag's text into the field's type (int, float, bool, str, Optional, or JSON)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        if text.lower() == "none":
            return None
        hint = args[0] if len(args) == 1 else hint
    if hint is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")
        return text.lower() in ("true", "1", "yes")
    if hint in (int, float, str):
        return hint(text)
    if typing.get_origin(hint) is typing.Literal:
        return text  # the method's own check names the choices
    return json.loads(text)


def field_parser(parser: argparse.ArgumentParser, cls: type) -> None:
    hints = typing.get_type_hints(cls)
    doc = cls.__doc__ or ""
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        help_line = next((ln.split(":", 1)[1].strip() for ln in doc.splitlines()
                          if ln.strip().startswith(f"{f.name}:")), "")
        default = f.default if f.default is not dataclasses.MISSING else "(computed)"
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f"hp_{f.name}", default=argparse.SUPPRESS,
                            type=lambda t, h=hints[f.name]: parse_value(t, h),
                            help=f"{help_line} [default: {default}]")


def scenario_args(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The scenario flags, less those a command does not use (`skip`): refused, rather than ignored."""
    flags = {
        "dataset": dict(default="digits", help=f"built-in ({', '.join(DATASETS.names())}) or FORMAT:PATH"),
        "forget": dict(default="random:0.1", help="random:F | class:C[,C] | subclass:C:F | ids:FILE | group:NAME"),
        "model": dict(default=None, help=f"one of {', '.join(MODELS.names())} (default: per dataset)"),
        "width": dict(type=int, default=None, help="model width (default: per dataset)"),
        "checkpoint": dict(default=None, help="a trained original (safetensors); never modified"),
        "train_size": dict(type=int, default=None, help="use a stratified subset of the training set"),
        "task": dict(default="classification", help=f"one of {', '.join(TASKS.names())}"),
        "seed": dict(type=int, default=0),
        "cache": dict(type=Path, default=None, help="model cache (default $UNLEARNKIT_CACHE or ~/.cache/unlearnkit)"),
    }
    g = parser.add_argument_group("scenario")
    for name, options in flags.items():
        if name not in skip:
            g.add_argument("--" + name.replace("_", "-"), **options)


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (and `--help` named for the rest)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="unlearnkit", description=__doc__)
    p.add_argument("--version", action="version", version=f"unlearnkit {unlearnkit.__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    sub.add_parser("list", help="list methods, datasets and models")
    run_p = sub.add_parser("run", help="run one method on one scenario and seed")
    methods = run_p.add_subparsers(dest="method", required=True, metavar="METHOD", parser_class=Parser)
    for name in METHODS.ordered():
        cls = METHODS[name]
        mp = methods.add_parser(name, help=first_line(cls.__doc__), description=cls.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        scenario_args(mp)
        mp.add_argument("--out", type=Path, default=None, help="write the record (JSON) here")
        mp.add_argument("--device", default=None, help="run on this device, e.g. cuda (default: cpu)")
        mp.add_argument("--save", type=Path, default=None, help="save the unlearned model (safetensors) here")
        mp.add_argument("--json", action="store_true", help="print the record as JSON instead of the summary")
        field_parser(mp, cls)
    b = sub.add_parser("bench", help="run a grid (TOML) into a resumable JSONL, then report")
    b.add_argument("grid", type=Path)
    b.add_argument("--out", type=Path, required=True, help="results JSONL (appended; finished runs are skipped)")
    b.add_argument("--cache", type=Path, default=None)
    b.add_argument("--width", type=int, default=None, help="override every scenario's model width (e.g. 64: the papers' ResNet-18)")
    b.add_argument("--device", default=None, help="run models on this device, e.g. cuda (default: cpu)")
    b.add_argument("--prune", action="store_true",
                   help="first drop records whose key is not in this grid (e.g. after a method's defaults changed)")
    b.add_argument("--report", type=Path, default=None, help="also write the Markdown report here")
    b.add_argument("--plot", type=Path, default=None, help="also write the Avg. Gap vs time plot (PNG) here")
    b.add_argument("--histograms", type=Path, default=None, help="also write per-sample loss histograms (PNG) here")
    b.add_argument("--store-models", type=Path, default=None, metavar="DIR",
                   help="also write every original and Retrain the grid uses into DIR (a store the tables sit on, "
                        "e.g. benchmarks/models; read back through $UNLEARNKIT_MODELS, or automatically there)")
    t = sub.add_parser("tune", help="the same hyper-parameter search for every method, on a validation request")
    t.add_argument("method", nargs="?", default=None, help="the method to tune (or --grid)")
    t.add_argument("--grid", type=Path, default=None, help="tune every method of every scenario of this grid")
    scenario_args(t, skip=("seed",))  # the validation request has its own seed
    t.add_argument("--trials", type=int, default=16, help="trials per method (the first: its defaults)")
    t.add_argument("--timeout", type=float, default=600.0, help="wall-clock cap per method, seconds")
    t.add_argument("--objective", default="gap", choices=["gap", "retrain-free"])
    t.add_argument("--space", action="append", default=[], metavar="FIELD=LOW:HIGH[:log] | FIELD=A,B",
                   help="search this range or these choices for a field (repeatable)")
    t.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", help="fix a field (repeatable)")
    t.add_argument("--methods", default="", help="with --grid: comma-separated methods to tune")
    t.add_argument("--only", default="", help="with --grid: comma-separated forget rules to tune (default: all)")
    t.add_argument("--reported-seeds", default="0,1,2", help="seeds the tables report (the validation request avoids "
                                                            "their forget sets; a grid's own seeds with --grid)")
    t.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite file beside --out)")
    t.add_argument("--out", type=Path, required=True, help="tuning records JSONL (appended)")
    t.add_argument("--device", default=None)
    a = sub.add_parser("audit", help="gold-standard audits (U-LiRA, KLOM) of a grid's methods from one pool of models")
    a.add_argument("grid", type=Path)
    a.add_argument("--out", type=Path, required=True, help="audit records JSONL (appended; finished audits are skipped)")
    a.add_argument("--models", type=int, default=16, help="models per kind in the pool (originals, Retrains, each method's)")
    a.add_argument("--methods", default="", help="comma-separated methods to audit (default: the grid's)")
    a.add_argument("--only", default="", help="comma-separated forget rules to audit (default: all the grid's)")
    a.add_argument("--cache", type=Path, default=None)
    a.add_argument("--device", default=None, help="run models on this device, e.g. cuda (default: cpu)")
    o = sub.add_parser("overhead", help="time one unlearning step of every method vs one plain fine-tune step")
    scenario_args(o, skip=("task",))  # a classification scenario
    o.add_argument("--batch-size", type=int, default=128)
    o.add_argument("--steps", type=int, default=30, help="updates timed per method")
    o.add_argument("--widths", default="", help="also time PGU's statistics pass at these widths, e.g. 8,16,32")
    o.add_argument("--methods", default="", help="comma-separated methods to time (default: every method)")
    o.add_argument("--out", type=Path, default=None, help="write the Markdown here (default: print)")
    s = sub.add_parser("scaling", help="method time as |forget| and |train| grow; throughput vs plain training")
    scenario_args(s, skip=("forget", "task"))  # random forget sets of --fractions, classification
    s.add_argument("--methods", default="ft,ga,rl,salun,sfr-on,nabla-tau,pgu,lur,ltu", help="comma-separated")
    s.add_argument("--fractions", default="0.01,0.05,0.1,0.3", help="forget fractions at the base --train-size")
    s.add_argument("--train-sizes", default="2500,5000,10000", help="training-set sizes at a fixed forget count")
    s.add_argument("--forget-count", type=int, default=250, help="|forget| for the train-size curve")
    s.add_argument("--set", action="append", default=[], metavar="METHOD.FIELD=JSON",
                   help="a hyper-parameter for one method, e.g. sfr-on.iterations=300 (repeatable)")
    s.add_argument("--out", type=Path, default=None, help="write the Markdown here (default: print)")
    s.add_argument("--plot", type=Path, default=None, help="write the curves (PNG) here")
    g = sub.add_parser("samples", help="a generation grid's samples per class: original, Retrain, every method")
    g.add_argument("grid", type=Path)
    g.add_argument("--out", type=Path, required=True, help="PNG path")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--per-class", type=int, default=6)
    g.add_argument("--cache", type=Path, default=None)
    r = sub.add_parser("report", help="render tables (and a plot) from a results JSONL")
    r.add_argument("results", type=Path)
    r.add_argument("--out", type=Path, default=None, help="write the Markdown here (default: print)")
    r.add_argument("--plot", type=Path, default=None)
    r.add_argument("--histograms", type=Path, default=None, help="per-sample loss histograms (PNG)")
    r.add_argument("--audit", type=Path, default=None, help="audit records (unlearnkit audit) to add as columns")
    r.add_argument("--throughput", action="store_true", help="print samples/s of every method and Retrain instead")
    return p


def summary(record: dict[str, Any], original: dict[str, Any]) -> str:
    """A run in a few lines: the method's metrics between the original's and Retrain's."""
    m, o, task = record["metrics"], original["metrics"], record["task"]
    names = task["metrics"]
    retrain = record.get("retrain_metrics") or {}
    rows = [("original (before)", o), (record["method"], m), ("retrain (the goal)", retrain)]
    width = max(len(r[0]) for r in rows)
    lines = [f"{record['method']} on {record['scenario']}, seed {record['seed']}: {m['seconds']:.1f} s "
             f"({m['rte']:.2f} × Retrain's time, {m.get('samples_rte', float('nan')):.2f} × its training samples)",
             " " * width + "".join(f"{k:>12}" for k in names)]
    for label_, values in rows:
        lines.append(f"{label_:<{width}}" + "".join(f"{values[k]:>12.2f}" if k in values else f"{'':>12}"
                                                   for k in names))
    lines.append(f"Avg. Gap to Retrain: {m['gap']:.2f} (doing nothing: {o['gap']:.2f}); lower is closer to retraining.")
    if task["name"] == "classification":
        lines.append("UA = 100 − accuracy on the forgotten samples, RA / TA = retain / test accuracy, MIA = % of "
                     "forgotten samples a membership attack calls unseen: forgetting worked when the method's row "
                     "moved from the original's to Retrain's.")
    return "\n".join(lines)


def writable_file(flag: str, path: Path | None) -> None:
    """ValueError unless `path` (when given) can be written as a file: not a directory, and its
    folder is one or can be made."""
    if path is None:
        return
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a directory; give a file path")
    folder = next((p for p in path.absolute().parents if p.exists()), None)
    if folder is None or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ValueError(f"{flag} {path}: cannot write there ({folder} is not a writable folder)")


def tune_command(args: argparse.Namespace) -> int:
    from unlearnkit.bench.tune import tune
    from unlearnkit.method import search_space

    writable_file("--out", args.out)
    fixed = {}
    for item in args.set:
        field, _, value = item.partition("=")
        fixed[field] = json.loads(value)
    if args.grid:
        jobs, chosen = grid_selection(args.grid, args.methods, args.only)
        seeds = sorted({j[3] for j in jobs})
        todo: dict[tuple[str, str], tuple[str, dict[str, Any], Scenario]] = {}
        for name, hp, scenario, _ in jobs:
            if METHODS.meta(name)["family"] == "reference" or (chosen and name not in chosen):
                continue
            searched = set(search_space(METHODS[name]))
            if not searched and not args.space:
                print(f"unlearnkit tune: {name}: nothing to search (it declares no searchable field), its defaults "
                      "stand", file=sys.stderr)
                continue
            todo.setdefault((name, scenario.name), (name, {k: v for k, v in hp.items() if k not in searched}, scenario))
        for name, hp, scenario in todo.values():
            tune(name, scenario, args.trials, args.timeout, args.out, args.storage, args.objective, {**hp, **fixed},
                 args.space, seeds, args.cache, args.device)
        return 0
    if not args.method:
        raise ValueError("name a METHOD to tune, or give --grid")
    scenario = Scenario(**{k: getattr(args, k) for k in SCENARIO_FLAGS})
    seeds = [int(s) for s in args.reported_seeds.split(",") if s]
    rec = tune(args.method, scenario, args.trials, args.timeout, args.out, args.storage, args.objective, fixed,
               args.space, seeds, args.cache, args.device)
    print(json.dumps({k: rec[k] for k in ("method", "scenario", "objective", "trials", "seconds", "default_value",
                                          "best_value", "best")}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        device = distributed.init_from_env()  # under torchrun: join the process group
        if device and getattr(args, "device", None) is None:
            args.device = device
        if not distributed.is_main():
            sys.stdout = open(os.devnull, "w")  # one process prints the tables
        code = dispatch(args)
        distributed.barrier()  # every process done before the group goes
        distributed.shutdown()
        return code
    except KeyboardInterrupt:
        print("interrupted: finished runs are saved; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:  # one clear line, no traceback, unless --debug
        if args.debug:
            raise
        print(f"unlearnkit: error: {e}", file=sys.stderr)
        return 2


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "list":
        print("methods (family; tasks):")
        for n in METHODS.ordered():
            meta = METHODS.meta(n)
            print(f"  {n:17s} {first_line(METHODS[n].__doc__)} [{meta['family']}; {', '.join(supported_tasks(METHODS[n]))}]")
        for title, reg in (("datasets", DATASETS), ("data formats (FORMAT:PATH)", FORMATS), ("models", MODELS),
                           ("tasks", TASKS)):
            print(f"{title}:")
            for n in reg.names():
                print(f"  {n:17s} {reg.meta(n).get('doc') or first_line(reg[n].__doc__)}")
        return 0
    if args.command == "run":
        hparams = {k[3:]: v for k, v in vars(args).items() if k.startswith("hp_")}
        scenario = Scenario(**{k: getattr(args, k) for k in SCENARIO_FLAGS})
        outputs = {"--out": args.out, "--save": args.save,
                   "--save's metadata": args.save and sidecar(args.save)}
        protected = [Path(args.checkpoint), sidecar(Path(args.checkpoint))] if args.checkpoint else []
        seen: dict[Path, str] = {p.resolve(): "--checkpoint" for p in protected}
        for flag, path in outputs.items():
            if path is None:
                continue
            if path.resolve() in seen:
                raise ValueError(f"{flag} {path} would overwrite {seen[path.resolve()]}: give another path "
                                 "(the original and every output are kept apart)")
            seen[path.resolve()] = flag
            writable_file(flag, path)
        build(args.method, hparams)  # refuse a bad field before any data is read
        record = run(args.method, hparams, scenario, args.seed, args.cache, keep_model=bool(args.save),
                     device=args.device, progress=True)
        model = record.pop("_model", None)
        if args.save:
            save_model(model, args.save, {"method": args.method, "hparams": record["hparams"], "scenario": scenario.name})
        if args.json:
            print(json.dumps({k: record[k] for k in ("method", "scenario", "seed", "hparams", "metrics")}, indent=1))
        else:
            print(summary(record, run("original", {}, scenario, args.seed, args.cache, device=args.device)))
        if args.out:
            atomic_write(args.out, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
        if record["metrics"].get("diverged"):
            print(f"unlearnkit: error: {args.method} diverged: the unlearned model gives non-finite outputs "
                  "(its metrics are not meaningful; the record says \"diverged\")", file=sys.stderr)
            return 3
        return 0
    if args.command == "bench":
        for flag, path in (("--out", args.out), ("--report", args.report), ("--plot", args.plot),
                           ("--histograms", args.histograms)):
            writable_file(flag, path)
        if args.store_models:
            os.environ["UNLEARNKIT_STORE_MODELS"] = str(args.store_models)
        jobs, variants = tuned_jobs(args.grid, grid_jobs(args.grid))
        if args.width is not None:
            jobs = [(n, hp, dataclasses.replace(sc, width=args.width), seed) for n, hp, sc, seed in jobs]
        before = {r["key"] for r in read_records(args.out)}
        records = bench(jobs, args.out, args.cache, device=args.device, prune=args.prune, variants=variants)
        emit(records, args.report, args.plot, histograms=args.histograms)
        keys = {record_key(*job) for job in jobs}
        missing = keys - {r["key"] for r in records}
        diverged = [r for r in records if r["key"] in keys and r["metrics"].get("diverged")]
        new = [r for r in diverged if r["key"] not in before]
        if diverged:
            print(f"unlearnkit: {'error' if new else 'note'}: {len(diverged)} run(s) diverged (non-finite outputs), "
                  f"{len(new)} of them in this invocation, e.g. {diverged[0]['method']} on {diverged[0]['scenario']} "
                  f"seed {diverged[0]['seed']}; their records are marked and left out of the tables' means",
                  file=sys.stderr)
        # Not 0 when stopped by a signal (a calling script stops), nor when a run of this call diverged.
        return 130 if missing else 3 if new else 0
    if args.command == "tune":
        return tune_command(args)
    if args.command == "audit":
        from unlearnkit.bench.audit import audit

        writable_file("--out", args.out)
        jobs, chosen = grid_selection(args.grid, args.methods, args.only)
        audits = audit([j for j in jobs if not chosen or j[0] in chosen], args.out, args.models, args.cache,
                       args.device)
        print(reporting.audit_table(audits))
        return 0
    if args.command == "overhead":
        return overhead(args)
    if args.command == "scaling":
        return scaling(args)
    if args.command == "samples":
        from unlearnkit.bench.samples import sample_grid

        writable_file("--out", args.out)
        print(sample_grid(grid_jobs(args.grid), args.out, args.seed, args.per_class, args.cache))
        return 0
    records = read_records(args.results)
    if not records:
        raise ValueError(f"no records in {args.results}")
    if args.throughput:
        print(reporting.throughput_table(records))
        return 0
    audits = read_records(args.audit) if args.audit else []
    if args.audit and not audits:
        raise ValueError(f"no audit records in {args.audit}")
    return emit(records, args.out, args.plot, print_table=args.out is None, histograms=args.histograms, audits=audits)


def emit(records: list[dict[str, Any]], md: Path | None, png: Path | None, print_table: bool = True,
         histograms: Path | None = None, audits: list[dict[str, Any]] = ()) -> int:  # type: ignore[assignment]
    table = reporting.markdown(records, audits)
    if print_table:
        print(table)
    if md:
        atomic_write(md, table.encode())
    if png:
        reporting.plot(records, png)
    if histograms and reporting.plot_loss_histograms(records, histograms) is None:
        print("unlearnkit: note: no record has loss histograms (records from before they were kept)", file=sys.stderr)
    return 0



def scaling(args: argparse.Namespace) -> int:
    from unlearnkit.bench import scaling as measure

    writable_file("--out", args.out)
    writable_file("--plot", args.plot)
    methods: dict[str, dict[str, Any]] = {m: {} for m in args.methods.split(",") if m}
    for item in args.set:
        target, _, value = item.partition("=")
        name, _, field = target.rpartition(".")
        if name not in methods or not field:
            raise ValueError(f"--set {item!r}: expected METHOD.FIELD=VALUE for one of {list(methods)}")
        methods[name][field] = json.loads(value)
    base = Scenario(**{k: getattr(args, k) for k in SCENARIO_FLAGS if hasattr(args, k)})  # the flags it has
    result = measure.measure(methods, base, [float(f) for f in args.fractions.split(",")],
                             [int(n) for n in args.train_sizes.split(",")], args.forget_count, args.seed, args.cache)
    print(measure.write(result, args.out, args.plot))
    return 0


def overhead(args: argparse.Namespace) -> int:
    from unlearnkit.bench.overhead import overhead_table, statistics_scaling
    from unlearnkit.bench.scenarios import prepare

    writable_file("--out", args.out)

    def scenario(width: int | None = args.width) -> Scenario:
        return Scenario(args.dataset, args.forget, args.model, width, checkpoint=args.checkpoint,
                        train_size=args.train_size)

    chosen = [m for m in args.methods.split(",") if m] or METHODS.ordered()
    unknown = set(chosen) - set(METHODS.names())
    if unknown:
        raise ValueError(f"--methods: unknown {sorted(unknown)}; known: {', '.join(METHODS.names())}")
    chosen = [n for n in chosen if METHODS.meta(n)["family"] != "reference" and n != "ft"]  # FT is the yardstick
    variants = [(n, n, {}) for n in chosen]
    for n in chosen:  # the cheaper settings a method offers, timed beside its default
        fields = {f.name: f.default for f in dataclasses.fields(METHODS[n])}
        if fields.get("first_order") is False:
            variants.append((f"{n} (first order)", n, {"first_order": True}))
        if fields.get("check_every") == 1:
            variants.append((f"{n} (check_every=4)", n, {"check_every": 4}))
    prepared = prepare(scenario(), args.seed, args.cache)
    table, _ = overhead_table(sorted(variants), prepared, args.batch_size, args.steps)
    text = f"Scenario: {scenario().name}, seed {args.seed}.\n\n{table}"
    if args.widths:
        text += "\nPGU's one-off statistics pass by model width:\n\n" + statistics_scaling(
            scenario, tuple(int(w) for w in args.widths.split(",")), args.seed)
    print(text)
    if args.out:
        atomic_write(args.out, text.encode())
    return 0
