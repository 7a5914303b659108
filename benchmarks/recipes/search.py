"""Which training recipe gives a benchmark an original that fits its training data?

    python benchmarks/recipes/search.py benchmarks/recipes/candidates.toml --out benchmarks/results/recipes.jsonl

Each candidate (a scenario's dataset, subset size, model, width and recipe) trains the original
through the benchmark's own model cache (`prepare`, so the chosen recipe's original is cached for
the grids that use it), then records its accuracy on the samples it trained on (the training split
minus the 10% held out) and on the test set, and the seconds training took (from the cache's
sidecar: the run that trained it). Resumable: candidates already in `--out` are skipped. Prints
the Markdown table BENCHMARKS.md shows.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import torch

from unlearnkit.bench.runner import append_record, environment, read_records
from unlearnkit.bench.scenarios import Scenario, prepare, recipe_spec
from unlearnkit.checkpoint import digest
from unlearnkit.metrics import accuracy, predict
from unlearnkit.train import Recipe


def candidates(path: Path) -> list[Scenario]:
    grid = tomllib.loads(path.read_text())
    out = []
    for c in grid["candidate"]:
        c = dict(c)
        out.append(Scenario(recipe=Recipe(**c.pop("recipe")), **c))
    return out


def measure(scenario: Scenario, cache: Path | None) -> dict:
    prepared = prepare(scenario, 0, cache)
    train = prepared.request.train
    return {"key": key(scenario), "dataset": scenario.dataset, "train_size": scenario.train_size,
            "model": scenario.model_name, "width": scenario.model_width, "recipe": recipe_spec(scenario.train_recipe),
            "n_train": len(train), "train_acc": accuracy(predict(prepared.original, train)),
            "test_acc": accuracy(predict(prepared.original, prepared.test)),
            "seconds": prepared.original_meta.get("seconds"), "env": environment(torch.device("cpu"))}


def key(scenario: Scenario) -> str:
    return digest(scenario.as_dict())


def table(records: list[dict]) -> str:
    lines = ["| dataset | samples trained on | model | recipe | train acc | test acc | training time (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in records:
        recipe = ", ".join(f"{k}={v}" for k, v in r["recipe"].items() if k not in ("momentum", "label_smoothing"))
        lines.append(f"| {r['dataset']} | {r['n_train']} | {r['model']}{r['width'] or ''} | {recipe} | "
                     f"{r['train_acc']:.2f} | {r['test_acc']:.2f} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("grid", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache", type=Path, default=None)
    args = p.parse_args()
    done = {r["key"] for r in read_records(args.out)}
    for scenario in candidates(args.grid):
        if key(scenario) not in done:
            record = measure(scenario, args.cache)
            append_record(args.out, record)
            print(json.dumps({k: record[k] for k in ("dataset", "recipe", "train_acc", "test_acc", "seconds")}),
                  flush=True)
    wanted = {key(s) for s in candidates(args.grid)}
    print(table([r for r in read_records(args.out) if r["key"] in wanted]))


if __name__ == "__main__":
    main()
