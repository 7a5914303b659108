"""Datasets: built-in offline data, a user's own formats, augmentation, models."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unlearnkit.data import random_crop_flip
from unlearnkit.data import DatasetNotFound, load_data
from unlearnkit.datasets import decode_jpeg_archive
from unlearnkit.models import build_model


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_directory(tmp_path):
    rng = np.random.RandomState(0)
    for prefix, n in (("train", 20), ("t10k", 8)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.randint(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 3)
    data = load_data(f"idx:{tmp_path}")
    assert data.train.x.shape == (20, 1, 28, 28) and len(data.test) == 8 and data.num_classes == 3
    assert abs(float(data.train.x.mean())) < 1e-4  # standardised with train statistics


def test_cifar_python_batches(tmp_path):
    rng = np.random.RandomState(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.randint(0, 256, (4, 3072)).astype(np.uint8), b"labels": [0, 1, 2, 9]}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    data = load_data(f"cifar-batches:{tmp_path}")
    assert data.train.x.shape == (20, 3, 32, 32) and data.num_classes == 10 and data.augment is not None


def test_cifar_batches_cannot_execute_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (tmp_path / name).write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_data(f"cifar-batches:{tmp_path}")


def test_image_folder_tree(tmp_path):
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.fromarray(np.full((6, 6, 3), 40 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    data = load_data(f"folder:{tmp_path}")
    assert len(data.train) + len(data.test) == 10 and data.train.x.shape[1:] == (3, 6, 6)


def test_missing_data_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotFound, match="not found"):
        load_data(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(KeyError, match="unknown dataset"):
        load_data("imagenet")


def test_digits_builtin():
    data = load_data("digits")
    assert data.num_classes == 10 and data.in_shape == (1, 8, 8) and len(data.train) + len(data.test) == 1797


def test_fashion_mnist_is_real_when_installed():
    try:
        data = load_data("fashion-mnist")
    except DatasetNotFound as e:
        pytest.skip(str(e))
    assert len(data.train) == 60000 and len(data.test) == 10000 and data.num_classes == 10
    assert torch.bincount(data.test.y).tolist() == [1000] * 10


def test_shared_cifar10_archive_decodes():
    candidates = [Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.npz"]
    npz = next((p for p in candidates if p.is_file()), None)
    if npz is None:
        pytest.skip("the shared CIFAR-10 archive is not present")
    imgs = decode_jpeg_archive(npz, limit=16)
    assert imgs.shape == (16, 32, 32, 3) and imgs.dtype == np.uint8 and imgs.std() > 10


def test_augmentation_shapes_and_determinism():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    aug = random_crop_flip(2)
    a, b = aug(x, torch.Generator().manual_seed(0)), aug(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    zero_pad = random_crop_flip(0)(x, torch.Generator().manual_seed(1))
    assert all(torch.equal(z, o) or torch.equal(z, o.flip(-1)) for z, o in zip(zero_pad, x))


@pytest.mark.parametrize("name,shape", [("mlp", (1, 8, 8)), ("cnn", (1, 28, 28)), ("resnet18", (3, 32, 32))])
def test_models_build_and_run(name, shape):
    model = build_model(name, shape, 10, width=8)
    assert model(torch.randn(2, *shape)).shape == (2, 10)
