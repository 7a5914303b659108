"""Deletion requests: specs, validation, retain complement, batches, sequential requests."""

from __future__ import annotations

import pytest
import torch

from unlearnkit.data import ArrayDataset
from unlearnkit.request import RequestError, UnlearnRequest, parse_forget


@pytest.fixture
def ds() -> ArrayDataset:
    return ArrayDataset(torch.arange(100).float()[:, None], torch.arange(100) % 5)


def test_specs(ds, tmp_path):
    ids, classes = parse_forget("random:0.1", ds.y, seed=3)
    assert len(ids) == 10 and classes == () and len(ids.unique()) == 10
    assert not torch.equal(ids, parse_forget("random:0.1", ds.y, seed=4)[0])
    assert len(parse_forget("random:7", ds.y)[0]) == 7
    ids, classes = parse_forget("class:2,4", ds.y)
    assert classes == (2, 4) and set(ds.y[ids].tolist()) == {2, 4} and len(ids) == 40
    ids, _ = parse_forget("subclass:1:0.5", ds.y)
    assert len(ids) == 10 and (ds.y[ids] == 1).all()
    f = tmp_path / "ids.txt"
    f.write_text("3, 7\n11")
    assert parse_forget(f"ids:{f}", ds.y)[0].tolist() == [3, 7, 11]
    f.write_text("[5, 6]")
    assert parse_forget(f"ids:{f}", ds.y)[0].tolist() == [5, 6]


@pytest.mark.parametrize("spec,msg", [("class:9", "unknown class"), ("random:1.5", "in (0, 1)"), ("random:100", "count must be in"),
                                      ("wat:1", "unknown forget spec"), ("random:x", "cannot parse"),
                                      ("ids:/nonexistent/ids.txt", "not found"), ("subclass:1:0", "(0, 1]")])
def test_bad_specs(ds, spec, msg):
    with pytest.raises(RequestError, match=msg.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        parse_forget(spec, ds.y)


@pytest.mark.parametrize("forget,msg", [([], "empty"), ([0, 100], "out of range"), ([-1], "out of range"),
                                        ([1, 1, 2], "more than once"), (list(range(100)), "whole training set")])
def test_bad_requests(ds, forget, msg):
    with pytest.raises(RequestError, match=msg):
        UnlearnRequest(ds, torch.tensor(forget, dtype=torch.long), 5)


def test_float_ids_rejected(ds):
    with pytest.raises(RequestError, match="integer"):
        UnlearnRequest(ds, torch.tensor([1.0, 2.0]), 5)


def test_retain_is_the_complement_in_stored_order(ds):
    req = UnlearnRequest(ds, torch.tensor([5, 1, 90]), 5)
    assert torch.equal(req.retain, torch.tensor([i for i in range(100) if i not in (1, 5, 90)]))


def test_batches_are_deterministic_and_cover_the_split(ds):
    req = UnlearnRequest(ds, torch.arange(0, 100, 4), 5, seed=1)
    a = [b.idx for b in req.batches("retain", 16)]
    b = [b.idx for b in req.batches("retain", 16)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    seen = torch.cat(a).sort().values
    assert torch.equal(seen, req.retain)
    pairs = list(req.pairs(8, epochs=2))
    assert len(pairs) == 2 * 4  # 25 forget ids / 8 → 4 batches per epoch
    assert all(torch.isin(p.forget.idx, req.forget).all() and torch.isin(p.retain.idx, req.retain).all() for p in pairs)
    for p in pairs:
        assert torch.equal(p.forget.x[:, 0].long(), p.forget.idx)  # inputs match ids


def test_sequential_requests(ds):
    first = UnlearnRequest(ds, torch.tensor([1, 2, 3]), 5)
    second = first.then(torch.tensor([4, 5]))
    assert torch.equal(second.excluded, torch.tensor([1, 2, 3]))
    assert not torch.isin(second.retain, torch.tensor([1, 2, 3, 4, 5])).any() and len(second.retain) == 95
    with pytest.raises(RequestError, match="already forgotten"):
        second.then(torch.tensor([2]))
    with pytest.raises(RequestError, match="integers"):
        second.then(torch.tensor([6.5]))  # not truncated to id 6
    with pytest.raises(RequestError, match="integers"):
        second.then([6.0])


def test_excluded_ids_are_validated(ds):
    with pytest.raises(RequestError, match="excluded"):
        UnlearnRequest(ds, torch.tensor([1]), 5, excluded=torch.tensor([-1]))
    with pytest.raises(RequestError, match="excluded"):
        UnlearnRequest(ds, torch.tensor([1]), 5, excluded=torch.tensor([3, 3]))


def test_group_spec_selects_by_group_and_selection_keeps_groups():
    ds = ArrayDataset(torch.zeros(6, 1), torch.tensor([0, 1, 0, 1, 0, 1]), groups=["a", "b", "a", "c", "a", "b"])
    ids, classes = parse_forget("group:a", ds.y, groups=ds.groups)
    assert ids.tolist() == [0, 2, 4] and classes == ()
    part = ds.select(torch.tensor([3, 1]))
    assert part.groups.tolist() == ["c", "b"] and part.y.tolist() == [1, 1]
    with pytest.raises(RequestError, match=r"unknown group 'z'.*\['a', 'b', 'c'\]"):
        parse_forget("group:z", ds.y, groups=ds.groups)
    with pytest.raises(RequestError, match="needs a dataset with groups"):
        parse_forget("group:a", ds.y)
    with pytest.raises(ValueError, match="groups has 2 entries"):
        ArrayDataset(torch.zeros(3, 1), torch.zeros(3), groups=["a", "b"])


def test_request_loss_asks_the_task_and_relabels():
    import torch.nn.functional as F

    ds = ArrayDataset(torch.randn(8, 3, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 2)
    req = UnlearnRequest(ds, torch.tensor([0, 1]), 2)
    net = torch.nn.Linear(3, 2)
    b = req.batch(torch.arange(8))
    torch.testing.assert_close(req.loss(net, b), F.cross_entropy(net(b.x), b.y))
    other = 1 - b.y
    torch.testing.assert_close(req.loss(net, b, other, reduction="none"), F.cross_entropy(net(b.x), other, reduction="none"))
