"""Records -> paper-style tables (mean ± std over seeds, Retrain first, Avg. Gap) and plots.

Tables and plots come from the records file alone, never from live objects."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from unlearnkit.checkpoint import atomic_write
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
    """The method name, plus the hyper-parameters that differ between its runs in this report (a
    row of a kind of its own, e.g. tuned, is labelled by that kind instead)."""
    if record.get("variant"):
        return f"{record['method']} ({record['variant']})"
    h = hparams_of(record)
    extra = ",".join(f"{k}={h[k]}" for k in sorted(varying))
    return f"{record['method']}({extra})" if extra else record["method"]


def varying_fields(records: list[dict[str, Any]]) -> dict[str, set[str]]:
    """method -> the hyper-parameters that differ between its records (they label its rows)."""
    varying: dict[str, set[str]] = defaultdict(set)
    first: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("variant"):
            continue
        h = hparams_of(r)
        ref = first.setdefault(r["method"], h)
        varying[r["method"]] |= {k for k in h if h[k] != ref.get(k)}
    return varying


def group(records: list[dict[str, Any]], others: list[dict[str, Any]] = ()  # type: ignore[assignment]
          ) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """scenario -> method label -> records (one per seed). Labels name the hyper-parameters that
    vary within the scenario (among `records` and `others`, e.g. its audits)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for scenario in dict.fromkeys(r["scenario"] for r in records):
        mine = [r for r in records if r["scenario"] == scenario]
        varying = varying_fields(mine + [o for o in others if o["scenario"] == scenario])
        for r in mine:
            out[scenario][label(r, varying[r["method"]])].append(r)
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def order(labels: list[str]) -> list[str]:
    """Rows in the registry's order (reference rows, baselines, reproduced methods), variants together."""
    rank = {n: i for i, n in enumerate(METHODS.ordered())}
    return sorted(labels, key=lambda l: (rank.get(l.split("(")[0], len(rank)), l))


def seed_gaps(recs: list[dict[str, Any]], ref: list[dict[str, Any]]) -> list[float]:
    """Each seed's Avg. Gap: mean over the task's gap metrics (UA, RA, TA, MIA for classification) of
    |method − Retrain| on the same request and seed, against this table's Retrain record of that
    seed (the record's own `gap`, measured when it ran, where the table has none)."""
    keys = gap_metrics_of(recs[0])
    by_seed = {r["seed"]: r for r in ref}
    return [avg_gap(r["metrics"], by_seed[r["seed"]]["metrics"], keys) if r["seed"] in by_seed else r["metrics"]["gap"]
            for r in recs]


def ties_with_best(gaps: dict[str, dict[int, float]], alpha: float = 0.05) -> tuple[str | None, set[str]]:
    """The row with the smallest mean Avg. Gap, and the rows a paired t-test over their shared
    seeds (scipy.stats.ttest_rel) cannot tell from it at level `alpha`: with a handful of seeds,
    two gaps a few tenths apart are often a tie, and the table says so instead of ranking noise.
    A row sharing fewer than two seeds with the best, or with identical differences on every seed,
    is not called a tie unless its gaps equal the best's."""
    if not gaps:
        return None, set()
    best = min(gaps, key=lambda n: statistics.fmean(gaps[n].values()))
    ties = set()
    for name, g in gaps.items():
        shared = sorted(set(g) & set(gaps[best]))
        if name == best or len(shared) < 2:
            continue
        a, b = [gaps[best][s] for s in shared], [g[s] for s in shared]
        diff = [y - x for x, y in zip(a, b)]
        if all(d == diff[0] for d in diff):
            tie = diff[0] == 0
        else:
            import warnings

            from scipy.stats import ttest_rel

            with warnings.catch_warnings():  # nearly equal gaps: scipy warns of precision loss; the p-value stands
                warnings.simplefilter("ignore", RuntimeWarning)
                tie = float(ttest_rel(b, a).pvalue) >= alpha
        if tie:
            ties.add(name)
    return best, ties


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


def kept(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records whose model stayed finite: a diverged run is counted, never averaged."""
    return [r for r in recs if not r["metrics"].get("diverged")] or recs[:0]


ULIRA_MARGIN = 5.0  # U-LiRA accuracy points above the Retrain row's at which a method counts as told apart from Retrain


def audit_cells(audits: list[dict[str, Any]], name: str, varying: dict[str, set[str]]) -> dict[str, float] | None:
    found = [a["audit"] for a in audits if label(a, varying[a["method"]]) == name]
    return found[0] if found else None


def disagreement(name: str, recs: list[dict[str, Any]], ref: list[dict[str, Any]], gold: dict[str, float],
                 gold_ref: dict[str, float]) -> str | None:
    """Where the SVC MIA and U-LiRA tell different stories about `name`: the MIA within two of
    Retrain's seed stds (at least 2 points) of Retrain's while U-LiRA tells the models apart
    (accuracy more than ULIRA_MARGIN points above the Retrain row's), or the reverse. Retrain's
    spread, not the method's: a method whose MIA swings over seeds is not "like Retrain"."""
    mia, _ = mean_std([r["metrics"]["MIA"] for r in recs])
    ref_mia, ref_sd = mean_std([r["metrics"]["MIA"] for r in ref])
    mia_like = abs(mia - ref_mia) <= max(2.0, 2 * ref_sd)
    gold_like = gold["ULiRA"] - gold_ref["ULiRA"] <= ULIRA_MARGIN
    if mia_like == gold_like:
        return None
    if mia_like:
        return (f"{name}: the SVC MIA ({mia:.1f}) is within noise of Retrain's ({ref_mia:.1f}), but U-LiRA tells its "
                f"models from retrained ones ({gold['ULiRA']:.1f}% vs the Retrain row's {gold_ref['ULiRA']:.1f}%)")
    return (f"{name}: the SVC MIA ({mia:.1f}) differs from Retrain's ({ref_mia:.1f}), but U-LiRA cannot tell its models "
            f"from retrained ones ({gold['ULiRA']:.1f}% vs the Retrain row's {gold_ref['ULiRA']:.1f}%)")


def markdown(records: list[dict[str, Any]], audits: list[dict[str, Any]] = ()) -> str:  # type: ignore[assignment]
    """One table per scenario: each metric's mean ± std over seeds, MIA's spread over its attacks,
    Avg. Gap as the mean ± std of each seed's gap to Retrain, the best gap in bold and the rows a
    paired test over seeds cannot tell from it marked ≈. Diverged runs are listed, not averaged.
    With `audits` (records of `unlearnkit audit`), the scenario's table gains U-LiRA and KLOM
    columns, and the rows where the SVC MIA and U-LiRA disagree are listed under it."""
    parts = []
    for scenario, methods in group(records, list(audits)).items():
        varying = varying_fields([r for recs in methods.values() for r in recs]
                                 + [a for a in audits if a["scenario"] == scenario])
        gold = [a for a in audits if a["scenario"] == scenario]
        ref = kept(methods.get("retrain", []))
        metrics = metrics_of(next(iter(methods.values()))[0])
        spread = any("MIA_std" in r["metrics"] for recs in methods.values() for r in recs)
        audit_columns = ("U-LiRA acc (%)", "KLOM₉₅ forget / retain / val") if gold else ()
        columns = (*metrics, *(("MIA attack σ",) if spread else ()), *audit_columns, "Avg. Gap", "RTE (× Retrain)")
        rows, gaps, elsewhere, flags = [], {}, False, []
        gold_ref = audit_cells(gold, "retrain", varying) if gold else None
        for name in order(list(methods)):
            recs, good = methods[name], kept(methods[name])
            cells = [f"{m:.2f} ± {s:.2f}" if good else "–" for m, s in
                     (mean_std([r["metrics"][k] for r in good]) if good else (0, 0) for k in metrics)]
            if spread:
                sigmas = [r["metrics"]["MIA_std"] for r in good if "MIA_std" in r["metrics"]]
                cells.append(f"{statistics.fmean(sigmas):.2f}" if sigmas else "–")
            if gold:
                a = audit_cells(gold, name, varying)
                if a and "diverged" in a:
                    cells += [f"diverged ({a['diverged']} models)", "–"]
                    a = None
                else:
                    cells += [f"{a['ULiRA']:.1f}" if a else "–",
                              " / ".join(f"{a.get(f'KLOM_{g}', float('nan')):.2f}" for g in ("forget", "retain", "val"))
                              if a else "–"]
                if a and gold_ref and good and ref and not name.startswith(("retrain", "original")):
                    flags.append(disagreement(name, good, ref, a, gold_ref))
            gap_cell = "–"
            if ref and good:
                per_seed = seed_gaps(good, ref)
                if not name.startswith("retrain"):
                    gaps[name] = {r["seed"]: g for r, g in zip(good, per_seed)}
                gap_cell = "{:.2f} ± {:.2f}".format(*mean_std(per_seed))
            rte = mean_std([r["metrics"]["rte"] for r in good]) if good else None
            tuning = recs[0].get("tuning")
            diverged, flagged = len(recs) - len(good), sum(other_models(r, ref) for r in good)
            notes = [f"{n} {what}" for n, what in ((diverged, "diverged"), (flagged, "†")) if n]
            seeds = f"{len(recs)} ({', '.join(notes)})" if notes else str(len(recs))
            elsewhere |= bool(flagged)
            cost = "{:.2f} ± {:.2f}".format(*rte) if rte else "–"
            if tuning:
                cost += f" (+ {tuning['rte']:.2f} tuning)"
            rows.append([name, *cells, gap_cell, cost, seeds])
        best, ties = ties_with_best(gaps)
        at = len(columns) - 1  # the Avg. Gap cell
        header = "| method | " + " | ".join(columns) + " | seeds |"
        lines = [f"### {scenario}", "", header, "|" + "---|" * (len(columns) + 2)]
        for row in rows:
            if row[0] == best:
                row[at] = f"**{row[at]}**"
            elif row[0] in ties:
                row[at] = f"≈ {row[at]}"
            lines.append("| " + " | ".join(row) + " |")
        retrain_s = [r["retrain_seconds"] for recs in methods.values() for r in recs]
        lines += ["", f"Retrain took {statistics.fmean(retrain_s):.1f} s on average. Avg. Gap: the mean over "
                  "seeds of each seed's mean |method − Retrain| over the gap metrics, ± its std; bold: the smallest; "
                  "≈: not distinguishable from it by a paired t-test over seeds (p ≥ 0.05). RTE = method seconds "
                  "(set-up included) / Retrain seconds on the same request and seed. \"diverged\": seeds whose "
                  "model produced non-finite outputs, left out of every mean."]
        if any(recs[0].get("tuning") for recs in methods.values()):
            lines[-1] += (" \"(tuned)\": the method with the values `unlearnkit tune` found on a validation request "
                          "(another seed, a forget set disjoint from every reported one), with the same trial budget "
                          "for every method; \"+ x tuning\": the search's seconds / the validation Retrain's.")
        if spread:
            lines[-1] += (" MIA: MIA-Efficacy, the mean of 5 SVC attacks each fitted on its own balanced draw "
                          "of members and non-members; MIA attack σ: the std over those attacks (mean over seeds).")
        if gold:
            pool = gold[0]["pool"]
            lines[-1] += (f" U-LiRA and KLOM: `unlearnkit audit` on seed {gold[0]['seed']}'s request, a pool of "
                          f"{pool['models']} models per kind (the Retrain row: a second pool of retrained models, the "
                          "audits' floor). U-LiRA acc: how often a per-example likelihood-ratio attack tells the "
                          "method's models from retrained ones (50 = indistinguishable). KLOM₉₅: the 95th percentile of "
                          "per-sample KL between the two pools' margin histograms (lower is closer; 11.51 = ln(1/10⁻⁵) is "
                          "its ceiling: histograms that do not overlap).")
            flags = [f for f in flags if f]
            lines += ["", "Where the SVC MIA and U-LiRA disagree: " + ("; ".join(flags) + "." if flags else "nowhere.")]
        if elsewhere:
            lines[-1] += (" \"†\": seeds run against another Retrain or original than this table's Retrain row of "
                          "that seed (run again where the model cache held other copies: CPU training is not "
                          "bit-reproducible across machines); their Avg. Gap to that row mixes the two.")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def throughput_table(records: list[dict[str, Any]]) -> str:
    """Samples per second of each method (training samples handed out, forward and backward, over
    its seconds, set-up included) beside Retrain's (plain training: its recipe's epochs × |retain|
    over its training seconds), and their ratio, measured on the hardware each record names."""
    parts = []
    for scenario, methods in group(records).items():
        ref = methods.get("retrain", [])
        lines = [f"### Throughput: {scenario}", "",
                 "| method | samples / s | × plain training (Retrain) | device |", "|---|---|---|---|"]
        for name in order(list(methods)):
            recs = [r for r in methods[name] if r["metrics"].get("samples") and r["metrics"]["seconds"] > 0]
            if not recs:
                continue
            rate = statistics.fmean(r["metrics"]["samples"] / r["metrics"]["seconds"] for r in recs)
            base = [r["metrics"]["samples"] / r["metrics"]["seconds"] for r in ref if r["metrics"].get("samples")]
            ratio = f"{rate / statistics.fmean(base):.2f}" if base else "–"
            lines.append(f"| {name} | {rate:,.0f} | {ratio} | {recs[0]['env']['device']} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def audit_table(audits: list[dict[str, Any]]) -> str:
    """The audit records alone, one table per scenario (`unlearnkit audit` prints it)."""
    parts = []
    for scenario in dict.fromkeys(a["scenario"] for a in audits):
        mine = [a for a in audits if a["scenario"] == scenario]
        varying = varying_fields(mine)
        rows = {label(a, varying[a["method"]]): a for a in mine}
        lines = [f"### {scenario} (audit pool: {next(iter(rows.values()))['pool']['models']} models per kind)", "",
                 "| method | U-LiRA acc (%) | U-LiRA AUC | per-example acc p10–p90 | KLOM₉₅ forget | KLOM₉₅ retain "
                 "| KLOM₉₅ val |", "|---|---|---|---|---|---|---|"]
        for name in order(list(rows)):
            a = rows[name]["audit"]
            if "diverged" in a:
                lines.append(f"| {name} | diverged ({a['diverged']} models) | – | – | – | – | – |")
                continue
            lines.append(f"| {name} | {a['ULiRA']:.1f} | {a['ULiRA_auc']:.3f} | {a['ULiRA_p10']:.0f}–{a['ULiRA_p90']:.0f} "
                         f"| {a['KLOM_forget']:.2f} | {a['KLOM_retain']:.2f} | {a['KLOM_val']:.2f} |")
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
        retrain = kept(methods.get("retrain", []))
        for name in order(list(methods)):
            recs = kept(methods[name])  # a diverged run has no place on the plot (the tables count it)
            if not recs:
                continue
            x, xs = mean_std([max(r["metrics"]["rte"], 1e-4) for r in recs])
            y = statistics.fmean(seed_gaps(recs, retrain))  # no Retrain here: each record's own gap
            ax.errorbar(x, y, xerr=xs, fmt="o", capsize=3)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("time / Retrain time")
        ax.set_ylabel("Avg. Gap to Retrain (lower is better)")
        ax.set_title(scenario, fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically (through `atomic_write`: under torchrun only rank
    0 writes) and close it."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    plt.close(fig)
    atomic_write(path, buffer.getvalue())
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
