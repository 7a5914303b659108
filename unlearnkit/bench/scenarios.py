"""A scenario is data + model + training recipe + forget rule; `prepare` turns one into a request,
a test set and the original model, training (and caching) the original only once."""

from __future__ import annotations

import functools
import os
from contextlib import closing
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from unlearnkit.checkpoint import CheckpointError, cache_dir, digest, load_model, save_model
from unlearnkit.data import ArrayDataset, Data, holdout, load_data
from unlearnkit.distributed import agree, barrier
from unlearnkit.models import build_model, weights_fingerprint
from unlearnkit.registry import MODELS, TASKS
from unlearnkit.request import UnlearnRequest, parse_forget
from unlearnkit.train import Recipe, train_model

FORGET_KINDS = ("random", "class", "subclass", "ids", "file", "group")
DEFAULT_GENERATOR = ("unet", 32)  # the model of a generation scenario unless it names one
TEXT = ("movie-reviews", "imdb", "rotten-tomatoes", "csv", "jsonl")
DEFAULT_MODEL = {"digits": ("mlp", None), "fashion-mnist": ("cnn", 16), "mnist": ("cnn", 16), "cifar10": ("resnet18", 16),
                 **{name: ("embbag", 64) for name in TEXT}}
DEFAULT_RECIPE = {
    "digits": Recipe(epochs=30, lr=0.05, batch_size=64),
    "fashion-mnist": Recipe(epochs=8, lr=0.05, batch_size=128),
    "mnist": Recipe(epochs=5, lr=0.05, batch_size=128),
    "cifar10": Recipe(epochs=18, lr=0.1, batch_size=128),  # ResNet-18 width 16 on 2 CPU cores: see BENCHMARKS.md
    **{name: Recipe(epochs=5, lr=0.1, batch_size=128) for name in TEXT},
    "minilm": Recipe(epochs=20, lr=0.05, batch_size=128),  # an MLP head on frozen sentence embeddings
}


@dataclass(frozen=True)
class Scenario:
    """What to unlearn from what.

    Args:
        dataset: a built-in dataset name or FORMAT:PATH (see `unlearnkit.datasets`).
        forget: forget rule: random:F, class:C[,C], subclass:C:F or ids:FILE.
        model: model name (mlp, cnn, resnet18); default depends on the dataset.
        width: model width knob (hidden units / channels); default depends on the dataset.
        recipe: how the original (and Retrain) are trained; default depends on the dataset.
        val_fraction: share of the training data held out (never trained on) as `request.val`;
            with a `checkpoint` nothing is held out (the user's model trained on all of it).
        checkpoint: optional path of a user's trained original (safetensors); never modified.
        train_size: use only this many training samples (a fixed class-stratified subset), to
            fit a benchmark into a CPU budget; None = all of them. Shown in the scenario name.
        task: what the model does (a name in `TASKS`: classification, generation).
        task_options: the task's fields (e.g. generation's sampler, steps, samples_per_class).
    """

    dataset: str = "digits"
    forget: str = "random:0.1"
    model: str | None = None
    width: int | None = None
    recipe: Recipe | None = None
    val_fraction: float = 0.1
    checkpoint: str | None = None
    train_size: int | None = None
    task: str = "classification"
    task_options: dict | None = None

    def __post_init__(self) -> None:
        """Refuse what cannot work before any data is read or any model trained."""
        for name, value, low in (("width", self.width, 1), ("train_size", self.train_size, 2)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (isinstance(self.val_fraction, (int, float)) and 0 <= self.val_fraction < 1):
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        task = TASKS[self.task](**(self.task_options or {}))  # an unknown task or a bad field: refused now
        if self.model is not None:
            made_for = MODELS.meta(self.model).get("task", "classification")
            if made_for != self.task:
                raise ValueError(f"model {self.model!r} is a {made_for} model; the {self.task} task needs one of "
                                 f"{[m for m in MODELS.names() if MODELS.meta(m).get('task', 'classification') == self.task]}")
        kind = self.forget.partition(":")[0]
        if kind not in FORGET_KINDS:
            raise ValueError(f"unknown forget rule {self.forget!r}; use random:F, class:C[,C], subclass:C:F, "
                             "ids:FILE or group:NAME")
        evaluated = getattr(task, "forget_kinds", FORGET_KINDS)
        if kind not in evaluated:
            raise ValueError(f"the {self.task} task's metrics need a forget rule of kind {', '.join(evaluated)}, "
                             f"got {self.forget!r}")
        if self.checkpoint is not None and Path(self.checkpoint).is_dir():
            raise CheckpointError(f"checkpoint {self.checkpoint} is a directory, not a checkpoint file")
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise CheckpointError(f"checkpoint not found: {self.checkpoint}")

    @property
    def name(self) -> str:
        size = f"[{self.train_size // 1000}k]" if self.train_size and self.train_size % 1000 == 0 else (
            f"[{self.train_size}]" if self.train_size else "")
        return f"{self.dataset}{size} {self.model_name}{self.model_width or ''} {self.forget}"

    @property
    def default_model(self) -> tuple[str, int | None]:
        return DEFAULT_GENERATOR if self.task == "generation" else DEFAULT_MODEL.get(self.data_kind, ("mlp", None))

    @property
    def model_name(self) -> str:
        return self.model or self.default_model[0]

    @property
    def model_width(self) -> int | None:
        return self.width if self.width is not None else self.default_model[1]

    @property
    def train_recipe(self) -> Recipe:
        return self.recipe or DEFAULT_RECIPE.get(self.data_kind, Recipe())

    @property
    def data_kind(self) -> str:
        """The dataset name, or the format of a FORMAT:PATH spec (csv:reviews.csv -> csv)."""
        return self.dataset if self.dataset in DEFAULT_RECIPE else self.dataset.partition(":")[0]

    def as_dict(self) -> dict:
        spec = {**asdict(self), "model": self.model_name, "width": self.model_width, "recipe": recipe_spec(self.train_recipe)}
        if spec["task"] == "classification":
            del spec["task"]  # keys of classification runs stay as they were before tasks existed
        if spec["task_options"] is None:
            del spec["task_options"]
        return spec


def recipe_spec(recipe: Recipe) -> dict:
    """The recipe as a dict, without fields at defaults added later (so earlier keys stay valid)."""
    spec = asdict(recipe)
    for name, default in (("optimizer", "sgd"), ("augment", "default")):
        if spec[name] == default:
            del spec[name]
    return spec


@dataclass
class Prepared:
    scenario: Scenario
    data: Data
    request: UnlearnRequest
    test: ArrayDataset
    original: nn.Module
    original_meta: dict = field(default_factory=dict)
    device: str = "cpu"

    def new_model(self) -> nn.Module:
        """A freshly initialised model of the scenario, on the device the benchmark runs on."""
        kw = dict(self.data.model_kwargs)
        if self.scenario.model_width is not None:
            kw["width"] = self.scenario.model_width
        model = build_model(self.scenario.model_name, self.data.in_shape, self.data.num_classes, **kw).to(self.device)
        if torch.device(self.device).type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules()):
            model = model.to(memory_format=torch.channels_last)  # the fast path for convolutions on a GPU
        return model


@functools.lru_cache(maxsize=4)
def _data(spec: str, val_fraction: float, train_size: int | None) -> tuple[Data, ArrayDataset, ArrayDataset]:
    data = load_data(spec)
    full = data.train
    if train_size is not None:
        if not 0 < train_size <= len(full):
            raise ValueError(f"train_size must be in (0, {len(full)}], got {train_size}")
        full = stratified_subset(full, train_size)
    train, val = holdout(full, val_fraction, seed=0)
    return data, train, val


def stratified_subset(data: ArrayDataset, size: int, seed: int = 0) -> ArrayDataset:
    """`size` samples with the class proportions of `data`, chosen by a fixed seed, in stored order."""
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for c in data.y.unique():
        members = (data.y == c).nonzero().flatten()
        k = round(size * len(members) / len(data))
        picks.append(members[torch.randperm(len(members), generator=gen)[:k]])
    idx = torch.cat(picks).sort().values
    return data.select(idx)


def check_device(device: str | None) -> str:
    """`device` (default cpu) if torch can run on it here; else a ValueError saying why not."""
    device = device or "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device (a CPU build, or no GPU here)")
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    return device


def prepare(scenario: Scenario, seed: int, cache: Path | None = None, device: str | None = None) -> Prepared:
    """Load the data, build the seed's request, and get the original model (trained once, cached).
    Models live on `device` (default cpu; e.g. "cuda"); data stays on the CPU and moves per batch."""
    device = check_device(device)
    # A user's checkpoint was trained on all of the training split: no part of it is held out.
    data, train, val = _data(scenario.dataset, 0.0 if scenario.checkpoint else scenario.val_fraction,
                             scenario.train_size)
    ids, classes = parse_forget(scenario.forget, train.y, seed, train.groups)
    task = TASKS[scenario.task](**(scenario.task_options or {}))
    augment = scenario.train_recipe.augmentation(data.augment)
    request = UnlearnRequest(train, ids, data.num_classes, val=val if len(val) else None, augment=augment, seed=seed,
                             recipe=scenario.train_recipe, classes=classes, task=task)
    if torch.device(device).type == "cuda":  # the fast path: inputs resident on the GPU
        for part in (train, val, data.test):
            part.preload(device)
    prepared = Prepared(scenario, data, request, data.test, nn.Identity(), device=device)
    torch.manual_seed(0)  # the original's initialisation must not depend on what ran before
    model = prepared.new_model()
    if scenario.checkpoint:
        prepared.original_meta = load_model(model, Path(scenario.checkpoint))
        if not all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()):
            raise CheckpointError(f"checkpoint {scenario.checkpoint} has non-finite weights (NaN or inf): "
                                  "there is no trained model to unlearn from")
    else:
        prepared.original_meta = cached_training(model, "original", original_key(scenario), cache,
                                                 lambda m, cb: train_model(m, train, torch.arange(len(train)),
                                                                           scenario.train_recipe, 0, augment, task, cb))
    task.check_model(model, train.x[:1], data.num_classes)
    prepared.original = model
    return prepared


def original_key(s: Scenario) -> str:
    task = () if s.task == "classification" else (s.task, s.task_options or {})
    return digest("original", s.dataset, s.model_name, s.model_width, recipe_spec(s.train_recipe), s.val_fraction,
                  s.train_size, *task)


class Progress:
    """A `loop.Callback` that shows updates as they happen (tqdm, on stderr; gone when closed)."""

    def __init__(self, what: str, total: int | None = None) -> None:
        from tqdm import tqdm

        self.bar = tqdm(desc=what, total=total, unit="update", leave=False, mininterval=1.0)

    def on_update(self, step: int) -> None:
        self.bar.update()

    def close(self) -> None:
        self.bar.close()


def model_stores() -> list[Path]:
    """Read-only stores of trained models, searched before the cache: the directories in
    $UNLEARNKIT_MODELS (separated by ':'; set and empty: none), or by default `benchmarks/models`
    of the source tree this package runs from (the models the committed tables sit on)."""
    if "UNLEARNKIT_MODELS" in os.environ:
        return [Path(p) for p in os.environ["UNLEARNKIT_MODELS"].split(":") if p]
    committed = Path(__file__).resolve().parents[2] / "benchmarks" / "models"
    return [committed] if committed.is_dir() else []


def cached_training(model: nn.Module, kind: str, key: str, cache: Path | None, train) -> dict:
    """Load `model` from a model store (`model_stores`, when the stored weights match the
    fingerprint in their sidecar) or the cache under `key`, or train it and save it to the cache:
    `train(model, callbacks)` returns the trained model (`model` itself, or a new one as a method
    returns; its weights are then loaded into `model`) and passes `callbacks` (a progress bar) on. With $UNLEARNKIT_STORE_MODELS set to a directory, the
    model is also written there (how `unlearnkit bench --store-models DIR` fills a store).

    The sidecar records the wall-clock seconds the training took, so ratios to Retrain stay
    meaningful when Retrain itself comes from the cache, and the weights' fingerprint."""
    name = f"{kind}-{key}.safetensors"
    meta = None
    for store in model_stores():
        if (store / name).is_file():
            meta = load_model(model, store / name)
            if meta.get("fingerprint") == weights_fingerprint(model):
                break
            print(f"unlearnkit: ignoring {store / name}: its weights do not match the fingerprint in its sidecar",
                  file=sys.stderr)
            meta = None
    path = (cache or cache_dir()) / "models" / name
    if meta is None and agree(path.is_file()):  # under torchrun every process takes rank 0's decision
        meta = load_model(model, path)
    if meta is None:
        torch.manual_seed(0)
        print(f"unlearnkit: training the {kind} model (not cached yet) ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        with closing(Progress(f"training the {kind} model")) as bar:
            trained = train(model, (bar,))
        if trained is not model:
            model.load_state_dict(trained.state_dict())
        meta = {"kind": kind, "key": key, "seconds": time.perf_counter() - start, "torch": torch.__version__,
                "fingerprint": weights_fingerprint(model)}
        print(f"unlearnkit: trained the {kind} model in {meta['seconds']:.1f} s; cached at {path}", file=sys.stderr)
        save_model(model, path, meta)  # rank 0 only, under torchrun
        barrier()
    out = os.environ.get("UNLEARNKIT_STORE_MODELS")
    if out and not (Path(out) / name).is_file():
        save_model(model, Path(out) / name, {**meta, "fingerprint": weights_fingerprint(model)})
    return meta
