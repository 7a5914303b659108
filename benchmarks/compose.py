"""Compose BENCHMARKS.md from the files `scripts/benchmarks.sh` writes. No number here is typed by
hand: every figure comes from benchmarks/results/*, which that script regenerates."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def machines(records: list[dict]) -> str:
    """Where `records` ran: each distinct processor, torch thread count, device and torch version,
    with how many runs ran there (records written before the processor was kept say so)."""
    from collections import Counter

    runs = Counter((r["env"].get("cpu", "a processor not recorded"), r["env"]["threads"], r["env"]["device"],
                    r["env"]["torch"]) for r in records)
    return "; ".join(f"{cpu}, {threads} torch thread{'s' * (threads != '1')}, device {device}, torch {torch}"
                     + (f" ({n} runs)" if len(runs) > 1 else "") for (cpu, threads, device, torch), n in runs.items())


def all_records() -> list[dict]:
    from unlearnkit.bench.runner import read_records

    return [r for path in sorted(RESULTS.glob("*.jsonl")) for r in read_records(path)]


def main() -> None:
    env = all_records()[0]["env"]
    protocol = protocol_of("fashion.toml")
    cifar = (cifar_section() + cifar_section("cifar10_random30", toml="cifar10_random30.toml", title=": random 30%")
             + cifar_section("cifar10_w64", " --width 64 --device cuda"))
    print(f"""# Benchmarks

Regenerate everything on this page with one command (resumable; trained models are cached):

```bash
bash scripts/benchmarks.sh
```

It runs `unlearnkit bench` on `benchmarks/cifar10.toml`, `cifar10_random30.toml`, `quick.toml` (digits), `fashion.toml`, `text.toml` and
`generation.toml`
(records in `benchmarks/results/*.jsonl`), `unlearnkit overhead` (the step-cost table),
`unlearnkit samples` (the generation grid), `unlearnkit scaling` and `benchmarks/compose.py`
(this page). Each record also stores the torch thread count it ran with. `bash scripts/benchmarks.sh --gpu`
runs the CIFAR-10 suite at the papers' full width (64) on a CUDA device, into its own section.

Machines, over every record on this page: {machines(all_records())}; Python {env['python']}. Each
section below says where its own runs ran. Times are wall-clock seconds measured in the same run as Retrain's
training, reported as RTE = method seconds / Retrain seconds (Retrain = 1.00).

{cifar}
{digits_section()}
## Fashion-MNIST, small CNN

{protocol}

Metrics (README, "Verification"): UA = 100 − forget accuracy, RA, TA (class-wise: without the
forgotten class), MIA = MIA-Efficacy (SVC on confidence, fitted on at most 2,500 members and
2,500 non-members), Avg. Gap = mean |Δ| to Retrain over those four, on the same request and seed;
mean ± std over 3 seeds. Bold: the smallest Avg. Gap. A method label with `(lr=…)` marks a
learning-rate variant run side by side. One-off set-up that belongs to the trained model rather
than to the request (PGU's full-data statistics) is paid on every run here (no warm caches) and
included in RTE; the step-cost section below reports it separately.

{(RESULTS / "fashion.md").read_text()}
![Avg. Gap vs time](benchmarks/results/fashion.png)

## Cost of one unlearning step

Time of one update of each method divided by the time of one plain fine-tune step on the same
model, measured in the same run (`unlearnkit overhead`). A step is whatever the method does
between two parameter updates, so a method that takes a lookahead step pays for it here; the
evaluations a method runs to decide when to stop or to set its target (PGU's per-epoch val and
forget accuracy, ∇τ's held-out loss τ) are timed apart, and the "with stopping checks" column puts
them back in (mean over the timed steps, so it depends on how many checks fall in the window).
Set-up is the time before the first update (saliency masks, Fisher diagonals, MI heads, PGU's
statistics and bases). "Samples / step" counts what the request hands
out per update: NegGrad+, ∇τ and LUR take a forget and a retain batch, LTU a support and a query
batch of each. Two ratios: against a fine-tune step at the common batch size, and against a
fine-tune step on as many samples as the method's step consumed ("on the same batch"; the
fine-tune step is timed at that size in the same run), as a mean and a median over the steps.
`pgu (check_every=4)` evaluates PGU's stopping rule after every 4th epoch instead of after every
epoch (the official rule, the `pgu` row).

{(RESULTS / "overhead.md").read_text()}
{overhead_on("cifar10")}{optional_sections()}""")


def cifar_section(name: str = "cifar10", flags: str = "", toml: str = "cifar10.toml", title: str = "") -> str:
    """A CIFAR-10 / ResNet-18 suite (`name`.jsonl, run by `unlearnkit bench benchmarks/TOML` plus
    `flags`): its table, how much of the grid is done, where it ran."""
    records_path = RESULTS / f"{name}.jsonl"
    if not records_path.is_file():
        return ""
    from unlearnkit.bench.runner import read_records, record_key, seed_major
    from unlearnkit.cli import grid_jobs

    jobs = seed_major(grid_jobs(ROOT / toml))
    records = read_records(records_path)
    width = records[0]["scenario_spec"]["width"]
    jobs = [(n, hp, dataclasses.replace(sc, width=width), seed) for n, hp, sc, seed in jobs]
    done = {r["key"] for r in records}
    finished = sum(record_key(*job) in done for job in jobs)
    hours = lambda rs: sum(r["metrics"]["seconds"] for r in rs) / 3600  # noqa: E731
    retrains = [r for r in records if r["method"] == "retrain"]
    compute = (f"The recorded runs took {hours(records):.1f} h of compute: {hours(retrains):.1f} h of Retrain "
               f"training ({len(retrains)} request{'s' * (len(retrains) != 1)}) and "
               f"{hours(records) - hours(retrains):.1f} h of unlearning "
               "(set-up included); training the originals and evaluating every run come on top."
               + end_to_end(records))
    status = ("every run of the grid is done" if finished == len(jobs) else
              f"**incomplete: {finished} of the grid's {len(jobs)} runs are done** (runs go scenario by "
              "scenario and seed by seed; the same command continues where this stopped)")
    figure = lambda suffix, text: (text if (RESULTS / f"{name}{suffix}.png").is_file() else "")  # noqa: E731
    published = ("""Published figures for this setting: none are shown. The method specs give no CIFAR-10 table (their
§5.2 lists the tables still to be read from the papers' PDFs), and the copies of SalUn's Table 1
and SFR-on's random-forgetting table that could be found offline are images, so no number was
transcribed.""" if toml == "cifar10.toml" else "")
    return f"""
## CIFAR-10, ResNet-18 (width {width}){title}

`unlearnkit bench benchmarks/{toml}{flags} --out benchmarks/results/{name}.jsonl` (records in
`benchmarks/results/{name}.jsonl`); {status}. Ran on {machines(records)}. The original's test accuracy is TA in the
`original` row; Retrain's wall-clock training time is RTE's denominator (`retrain_seconds` in
every record). {compute}

{protocol_of(toml)}

{published}

{cifar_reading(records)}{random30_reading(records)}

{(RESULTS / f"{name}.md").read_text() if (RESULTS / f"{name}.md").is_file() else ""}
{figure("", f"![Avg. Gap vs time](benchmarks/results/{name}.png)")}

{figure("_hist", "Per-sample forget-set loss after each method (blue), after Retrain (black) and test loss (red):")}
{figure("_hist", f"![loss histograms](benchmarks/results/{name}_hist.png)")}
"""


def end_to_end(records: list[dict]) -> str:
    """The wall-clock time of the runs that record it (`wall_seconds`: loading, set-up, the method and
    its evaluation), plus the Retrain training they stand on."""
    timed = [r for r in records if "wall_seconds" in r]
    if not timed:
        return ""
    hours = (sum(r["wall_seconds"] for r in timed) + sum(r["metrics"]["seconds"] for r in timed if r["method"] == "retrain")) / 3600
    share = "every run" if len(timed) == len(records) else f"the {len(timed)} of {len(records)} runs that record it"
    return (f" End to end (Retrain training, then each run's loading, set-up, method and evaluation, from "
            f"`wall_seconds`), {share} took {hours:.1f} h.")


def digits_section() -> str:
    """The digits / MLP suite: the README's quick job, its records kept under benchmarks/results."""
    if not (RESULTS / "digits.md").is_file():
        return ""
    return f"""## Digits, MLP (the quick suite)

`unlearnkit bench benchmarks/quick.toml --out benchmarks/results/digits.jsonl` (the README's main job,
`scripts/quick.sh`, runs the same grid into `runs/quick/`).

{protocol_of("quick.toml")}

{(RESULTS / "digits.md").read_text()}
![Avg. Gap vs time](benchmarks/results/digits.png)
"""


FOUNDING = {"nabla-tau", "sfr-on", "pgu", "ltu", "lur"}


def scenario_methods(records: list[dict], forget: str) -> dict[str, list[dict]]:
    """Method label -> its records (by seed) in the scenario whose forget rule is `forget`, grouped
    as the report's table groups them."""
    from unlearnkit.bench.report import group

    methods = next((ms for sc, ms in group(records).items() if sc.endswith(" " + forget)), {})
    return {m: sorted(rs, key=lambda r: r["seed"]) for m, rs in methods.items()}


def means_on_seeds(methods: dict[str, list[dict]], method: str, metric: str) -> tuple[float, float]:
    """`method`'s mean `metric` and Retrain's on the seeds that method ran."""
    from statistics import fmean

    seeds = {r["seed"] for r in methods[method]}
    return (fmean(r["metrics"][metric] for r in methods[method]),
            fmean(r["metrics"][metric] for r in methods["retrain"] if r["seed"] in seeds))


def against_retrain(methods: dict[str, list[dict]], method: str, metric: str) -> str:
    """`method`'s mean `metric` beside Retrain's on the seeds that method ran."""
    mine, ref = means_on_seeds(methods, method, metric)
    return f"{mine:.2f} against Retrain's {ref:.2f}"


def cifar_reading(records: list[dict]) -> str:
    """What the random-10% table says about the benchmark model itself; every number is read from
    the records, grouped as the table groups them, and a method is compared with Retrain on the
    seeds that method ran."""
    from unlearnkit.bench.report import gap_of_means

    random = scenario_methods(records, "random:0.1")
    if not {"original", "retrain", "nabla-tau", "sfr-on"} <= set(random):
        return ""
    rows = lambda m: random.get(m, [])  # noqa: E731
    pair = lambda m, metric: against_retrain(random, m, metric)  # noqa: E731

    tas = ", ".join(f"{r['metrics']['TA']:.2f} (seed {r['seed']})" for r in rows("original"))
    means = {k: means_on_seeds(random, "nabla-tau", k) for k in ("UA", "RA", "TA", "MIA")}
    nt = {k: abs(mine - ref) for k, (mine, ref) in means.items()}
    split = ", ".join(f"{k} {100 * v / sum(nt.values()):.0f}%" for k, v in nt.items())
    return f"""**Reading the random-10% table** (means over the seeds each method ran). The original is trained once
per machine (seeds change the forget set and Retrain); training on a CPU is not bit-reproducible across
machines, so a seed run on another machine sits on a copy trained there, and the original's test accuracy
in each seed's record is {tas}. Within a seed, every row sits on one original and one Retrain: records keep
both models' fingerprints, and the runner runs an unfinished seed again rather than mix models. The original's accuracy on its own retain set is {pair('original', 'RA')}. The width-16 model
trained for 18 epochs is under-fit, unlike the papers' ResNet-18s (trained for 182, 50 and 200 epochs in
the SalUn, ∇τ and SFR-on code), so its forget set already looks much like unseen data and doing nothing
(`original`) scores an Avg. Gap of {gap_of_means(rows('original'), rows('retrain')):.2f}. Two founding
methods, run with their published defaults, behave differently here than on a converged model. ∇τ's ≈3
retain epochs of AdamW keep improving the fit: RA {pair('nabla-tau', 'RA')}, and MIA-Efficacy (fitted on
retain vs test confidence) falls to {pair('nabla-tau', 'MIA')}; its summed |Δ| to Retrain splits as {split}.
SFR-on's ascent (α0 = {rows('sfr-on')[0]['hparams']['alpha']:g}, its default, set for a converged CIFAR-10 model; its spec notes it needs
re-tuning per setting) over-forgets: UA {pair('sfr-on', 'UA')}, TA {pair('sfr-on', 'TA')}.{pgu_cost(rows('pgu'))}"""


def random30_reading(records: list[dict]) -> str:
    """The random-30% table (cifar10_random30.toml) in words, every number read from its records."""
    from unlearnkit.bench.report import gap_of_means
    from unlearnkit.methods.nabla_tau import initial_alpha

    ms = scenario_methods(records, "random:0.3")
    if not {"original", "retrain", "nabla-tau"} <= set(ms):
        return ""
    gap = lambda m: gap_of_means(ms[m], ms["retrain"])  # noqa: E731
    baselines = [m for m in ms if m.split("(")[0] not in FOUNDING | {"original", "retrain"}]
    closest = min(baselines, key=gap, default=None)
    best = f" The closest baseline run here is {closest} ({gap(closest):.2f})." if closest else ""
    side = "closer to" if gap("nabla-tau") < gap("original") else "further from"
    sfr = (f" SFR-on (α0 = {ms['sfr-on'][0]['hparams']['alpha']:g}, its default): {gap('sfr-on'):.2f}, UA {against_retrain(ms, 'sfr-on', 'UA')}, "
           f"TA {against_retrain(ms, 'sfr-on', 'TA')}." if "sfr-on" in ms else "")
    seeds = ", ".join(str(r["seed"]) for r in ms["retrain"])
    return f"""**Reading the random-30% table** (seed {seeds}). Doing nothing scores an Avg. Gap of
{gap('original'):.2f}. ∇τ with every default (α0 = {initial_alpha(3, 7):.2f} by its 5/3 × forget-fraction rule) scores
{gap('nabla-tau'):.2f}, {side} Retrain than doing nothing: RA {against_retrain(ms, 'nabla-tau', 'RA')}, UA
{against_retrain(ms, 'nabla-tau', 'UA')}, MIA-Efficacy {against_retrain(ms, 'nabla-tau', 'MIA')}.{sfr}{best}"""


def pgu_cost(rows: list[dict]) -> str:
    """PGU's RTE with and without its one-off full-data statistics pass (no warm caches here)."""
    if not rows:
        return ""
    from statistics import fmean

    setup = fmean(r["metrics"]["setup_seconds"] for r in rows)
    rte = fmean(r["metrics"]["rte"] for r in rows)
    rest = fmean((r["metrics"]["seconds"] - r["metrics"]["setup_seconds"]) / r["retrain_seconds"] for r in rows)
    return (f" PGU's RTE ({rte:.2f}) includes its one-off statistics pass over the training set ({setup:.0f} s, "
            f"work that belongs to the trained model: `stats_path` keeps it beside the model for later requests); "
            f"without it, {rest:.2f}.")


def overhead_on(name: str) -> str:
    """The step-cost table on another model (`overhead_NAME.md`, command in scripts/benchmarks.sh)."""
    path = RESULTS / f"overhead_{name}.md"
    note = ("A fine-tune step's cost per sample depends on its batch size (the first line gives each "
            "size timed); the strictest reading divides a method's cost per sample by the lowest of those.")
    return (f"\nThe same measurement on the {name} model, for the founding methods. {note}\n\n{path.read_text()}"
            if path.is_file() else "")


def protocol_of(toml: str) -> str:
    """The leading comment block of a grid file: its protocol, written once, next to the settings."""
    return "\n".join(line[2:] for line in (ROOT / toml).read_text().splitlines() if line.startswith("# "))


def optional_sections() -> str:
    """Text, generation and scaling sections, each present once its results exist."""
    parts = []
    if (RESULTS / "text.md").is_file():
        parts.append(f"""## Movie reviews (text): bag-of-embeddings model and a head on a pretrained sentence encoder

`unlearnkit bench benchmarks/text.toml` (records in `benchmarks/results/text.jsonl`).

{protocol_of("text.toml")}

{(RESULTS / "text.md").read_text()}
![Avg. Gap vs time](benchmarks/results/text.png)

Per-sample loss on the forget set after each method (blue) and after Retrain (black), and on the
test set after the method (red, dashed), seeds pooled: a method whose blue matches the black
leaves a loss-threshold attacker nothing to find.

![loss histograms](benchmarks/results/text_hist.png)
""")
    if (RESULTS / "generation.md").is_file():
        parts.append(f"""## Class-conditional generation: forgetting a Fashion-MNIST class in a DDPM

`unlearnkit bench benchmarks/generation.toml` and `unlearnkit samples benchmarks/generation.toml`.

{protocol_of("generation.toml")}

{(RESULTS / "generation.md").read_text()}
Samples per class (rows; the forgotten class marked `*`) from the same noise, seed 0:

![samples](benchmarks/results/generation_samples.png)
""")
    if (RESULTS / "scaling.md").is_file():
        parts.append(f"""## Scaling and throughput

`unlearnkit scaling` (arguments in `scripts/benchmarks.sh`): each method's time (one-off set-up
included) as the forget set grows at a fixed training set, and as the training set grows at a fixed
forget set (one original per size); the exponent is the least-squares slope of log time against
log size. A method whose cost follows what it touches shows ~1 against what it iterates over and
~0 against the rest. Throughput counts the samples a method draws from the request per second,
against plain training of the same model on the same machine.

{(RESULTS / "scaling.md").read_text()}
![scaling](benchmarks/results/scaling.png)
""")
    return "\n".join(parts)


if __name__ == "__main__":
    main()
