"""Records -> paper-style tables (mean ± std over seeds, Retrain first, Avg. Gap) and plots.

Tables and plots come from the records file alone, never from live objects."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from unlearnkit.method import METHODS
from unlearnkit.metrics import avg_gap

METRICS = ("UA", "RA", "TA", "MIA")  # classification; a record names its task's metrics


def metrics_of(record: dict[str, Any]) -> tuple[str, ...]:
    return tuple(record.get("task", {}).get("metrics", METRICS))


def gap_metrics_of(record: dict[str, Any]) -> tuple[str, ...]:
    return tuple(record.get("task", {}).get("gap_metrics", METRICS))


KEY_NEUTRAL = {"optimizer": "sgd", "check_every": 1}  # fields added later: absent from old records, left out of keys at these values


def hparams_of(record: dict[str, Any]) -> dict[str, Any]:
    """The record's hyper-parameters, with fields added since it was written at their neutral values."""
    return {**KEY_NEUTRAL, **record["hparams"]}


def label(record: dict[str, Any], varying: set[str]) -> str:
    """The method name, plus the hyper-parameters that differ between its runs in this report."""
    h = hparams_of(record)
    extra = ",".join(f"{k}={h[k]}" for k in sorted(varying))
    return f"{record['method']}({extra})" if extra else record["method"]


def group(records: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """scenario -> method label -> records (one per seed)."""
    varying: dict[str, set[str]] = defaultdict(set)
    first: dict[str, dict[str, Any]] = {}
    for r in records:
        h = hparams_of(r)
        ref = first.setdefault(r["method"], h)
        varying[r["method"]] |= {k for k in h if h[k] != ref.get(k)}
    out: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        out[r["scenario"]][label(r, varying[r["method"]])].append(r)
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def order(labels: list[str]) -> list[str]:
    """Rows in the registry's order (reference rows, baselines, reproduced methods), variants together."""
    rank = {n: i for i, n in enumerate(METHODS.ordered())}
    return sorted(labels, key=lambda l: (rank.get(l.split("(")[0], len(rank)), l))


def gap_of_means(recs: list[dict[str, Any]], ref: list[dict[str, Any]]) -> float:
    """Avg. Gap as the SalUn line defines it: each metric averaged over seeds first, then the mean
    over the task's gap metrics (UA, RA, TA, MIA for classification) of |method − Retrain|. Retrain
    is averaged over the seeds the method ran (a grid still in progress has methods on fewer seeds),
    or over all of its own when it shares none of them."""
    keys = gap_metrics_of(recs[0])
    seeds = {r["seed"] for r in recs}
    ref = [r for r in ref if r["seed"] in seeds] or ref
    return statistics.fmean(abs(mean_std([r["metrics"][k] for r in recs])[0] - mean_std([r["metrics"][k] for r in ref])[0])
                            for k in keys)


def other_models(record: dict[str, Any], retrain: list[dict[str, Any]]) -> bool:
    """Whether `record` was measured against another Retrain or original than the Retrain record of
    its seed: by the models' fingerprints where both records keep them, else (records written
    before fingerprints) by the run's own Avg. Gap disagreeing with one against that record."""
    ref = next((r for r in retrain if r["seed"] == record["seed"]), None)
    if ref is None or ref is record:
        return False
    if "models" in record and "models" in ref:
        return record["models"] != ref["models"]
    gap = avg_gap(record["metrics"], ref["metrics"], gap_metrics_of(record))
    return not math.isclose(gap, record["metrics"]["gap"], rel_tol=1e-9, abs_tol=1e-9)


def markdown(records: list[dict[str, Any]]) -> str:
    """One table per scenario: mean ± std over seeds, Avg. Gap of the means; the smallest in bold."""
    parts = []
    for scenario, methods in group(records).items():
        ref = methods.get("retrain", [])
        metrics = metrics_of(next(iter(methods.values()))[0])
        columns = (*metrics, "Avg. Gap", "RTE (× Retrain)")
        rows, gaps, elsewhere = [], {}, False
        for name in order(list(methods)):
            recs = methods[name]
            cells = [f"{m:.2f} ± {s:.2f}" for m, s in (mean_std([r["metrics"][k] for r in recs]) for k in metrics)]
            gap = gap_of_means(recs, ref) if ref else float("nan")
            if not name.startswith("retrain"):
                gaps[name] = gap
            rte_m, rte_s = mean_std([r["metrics"]["rte"] for r in recs])
            diverged, flagged = sum(bool(r["metrics"].get("diverged")) for r in recs), sum(other_models(r, ref) for r in recs)
            notes = [f"{n} {what}" for n, what in ((diverged, "diverged"), (flagged, "†")) if n]
            seeds = f"{len(recs)} ({', '.join(notes)})" if notes else str(len(recs))
            elsewhere |= bool(flagged)
            rows.append([name, *cells, f"{gap:.2f}", f"{rte_m:.2f} ± {rte_s:.2f}", seeds])
        best = min(gaps, key=gaps.get) if gaps else None
        header = "| method | " + " | ".join(columns) + " | seeds |"
        lines = [f"### {scenario}", "", header, "|" + "---|" * (len(columns) + 2)]
        for row in rows:
            if row[0] == best:
                row[len(metrics) + 1] = f"**{row[len(metrics) + 1]}**"
            lines.append("| " + " | ".join(row) + " |")
        retrain_s = [r["retrain_seconds"] for recs in methods.values() for r in recs]
        lines += ["", f"Retrain took {statistics.fmean(retrain_s):.1f} s on average. RTE = method seconds "
                  "(set-up included) / Retrain seconds on the same request and seed. \"diverged\": seeds whose "
                  "model produced non-finite outputs (their metrics count non-finite signals as 0)."]
        if elsewhere:
            lines[-1] += (" \"†\": seeds run against another Retrain or original than this table's Retrain row of "
                          "that seed (run again where the model cache held other copies: CPU training is not "
                          "bit-reproducible across machines); their Avg. Gap to that row mixes the two.")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def plot(records: list[dict[str, Any]], path: Path) -> Path:
    """Avg. Gap vs RTE (log scale) for every method, one panel per scenario, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = group(records)
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False)
    for ax, (scenario, methods) in zip(axes[0], groups.items()):
        for name in order(list(methods)):
            recs = methods[name]
            x, xs = mean_std([max(r["metrics"]["rte"], 1e-4) for r in recs])
            y = gap_of_means(recs, methods.get("retrain", recs))
            ax.errorbar(x, y, xerr=xs, fmt="o", capsize=3)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("time / Retrain time")
        ax.set_ylabel("Avg. Gap to Retrain (lower is better)")
        ax.set_title(scenario, fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG atomically (temp file, then rename) and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path



def plot_loss_histograms(records: list[dict[str, Any]], path: Path) -> Path | None:
    """Per scenario (rows) and method (columns): the forget set's per-sample loss distribution
    after the method, after Retrain, and the test set's after the method (seeds pooled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for scenario, methods in group(records).items():
        for name, recs in methods.items():
            kept = [r for r in recs if "loss_histograms" in r]
            if kept and not name.startswith("retrain"):
                groups.setdefault(scenario, {})[name] = kept
    if not groups:
        return None
    cols = min(7, max(len(m) for m in groups.values()))
    rows = [(scenario, names[i:i + cols]) for scenario, methods in groups.items()
            for names in [order(list(methods))] for i in range(0, len(names), cols)]
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.3 * cols, 2.0 * len(rows)), squeeze=False, sharex=True)
    for row, (scenario, names) in zip(axes, rows):
        methods = groups[scenario]
        for ax, name in zip(row, names):
            hists = [r["loss_histograms"] for r in methods[name]]
            edges = hists[0]["method"]["edges"]
            for who, part, style in (("method", "forget", dict(color="C0", fill=True, alpha=0.5, label="forget")),
                                     ("retrain", "forget", dict(color="k", fill=False, label="forget, Retrain")),
                                     ("method", "test", dict(color="C3", fill=False, ls="--", label="test"))):
                counts = [sum(h[who][part][i] for h in hists) for i in range(len(edges) - 1)]
                total = max(1, sum(counts))
                ax.stairs([c / total for c in counts], edges, **style)
            ax.set_xscale("log")
            ax.set_title(f"{name}\n{scenario}", fontsize=6)
            ax.tick_params(labelsize=6)
        for ax in row[len(names):]:
            ax.axis("off")
    axes[0][0].legend(fontsize=5)
    fig.supxlabel("per-sample cross-entropy (log scale)", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
