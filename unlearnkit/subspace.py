"""Per-layer input-activation statistics and the subspaces they span (GPM, Saha et al. 2021; PGU).

For every projected layer `y = W x` (Linear, or Conv2d seen as a matrix on unfolded patches) the
statistics are the uncentred, unnormalised covariance C = Σ x xᵀ of its inputs, keyed by the layer's
weight name: each batch's product in float32 by default (float32 matmul is ~2× float64 on a CPU, and
this pass is PGU's main set-up cost; `precision="float64"` as the official code), summed over
batches in float64. A retain basis is the top-k eigenvectors of a covariance, with k set by an
energy threshold τ. Choices:

- forward hooks, so any `nn.Module` works; Linear inputs are rows (tokens too: `(..., d)` → rows);
  Conv2d inputs are unfolded with the layer's kernel size, padding and dilation at stride 1, as the
  official code does even for strided convs (it only rescales C; the official code ignores dilation).
  Grouped or string-padded convs and every other layer type are not projected.
- one mode for every pass: eval (Dropout off, BatchNorm running statistics), as the official code
  (which sets Dropout on, but torchvision's feature extractor then puts every module back in eval).
  Augmentation applies to both passes or to neither (PGU's `stats_augment`), so C_full − C_forget is
  the retain covariance; the official random-forgetting script augments the full pass only.
- eigenvalues of a difference of covariances are clamped at 0 before any square root (the
  official `torch.svd` counts a negative one as |λ|).
- statistics are keyed by `statistics_key` (weights + buffers, dataset, excluded ids) and kept in a
  small in-process cache (`cached_statistics`, `remember`), optionally in a safetensors file.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Literal

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn
from torch.utils.data import Dataset

from unlearnkit.checkpoint import CheckpointError, atomic_write, digest
from unlearnkit.data import Augment, fingerprint, take
from unlearnkit.distributed import rank, sum_in_place, world
from unlearnkit.models import weights_fingerprint
from unlearnkit.request import UnlearnRequest

Stats = dict[str, Tensor]  # {weight name: (d, d) float64 covariance of that layer's inputs}
Energy = Literal["sigma", "sigma2"]


def weight_name(module_name: str) -> str:
    return f"{module_name}.weight" if module_name else "weight"


def projected_layers(model: nn.Module) -> dict[str, nn.Module]:
    """{module name: module} for the layers whose weights get a basis: Linear and plain Conv2d."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, nn.Linear)
            or (isinstance(m, nn.Conv2d) and m.groups == 1 and not isinstance(m.padding, str))}


def layer_rows(module: nn.Module, x: Tensor) -> Tensor:
    """The layer's inputs as rows of the matrix its weight multiplies: (n, d), d = W[0].numel()."""
    if isinstance(module, nn.Conv2d):
        patches = F.unfold(x, module.kernel_size, module.dilation, module.padding, stride=1)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return x.reshape(-1, x.shape[-1])


Precision = Literal["float32", "float64"]


def _accumulate(stats: Stats, name: str, precision: Precision, module: nn.Module, args: tuple, output: Tensor) -> None:
    rows = layer_rows(module, args[0].detach())
    if precision == "float64":
        rows = rows.double()
    stats[name] += (rows.T @ rows).double()  # each batch's product in `precision`, the sum in float64


@torch.no_grad()
def covariance(model: nn.Module, inputs: Iterable[Tensor], precision: Precision = "float32") -> Stats:
    """Σ x xᵀ of every projected layer's inputs over `inputs` (batches), in eval mode, summed in
    float64; each batch's product in `precision` (float32: ~2× faster on a CPU; the official code's
    float64 gives the same bases in our checks)."""
    device = next(model.parameters()).device
    layers = projected_layers(model)
    stats = {weight_name(n): torch.zeros(m.weight[0].numel(), m.weight[0].numel(), dtype=torch.float64,
                                         device=device) for n, m in layers.items()}
    handles = [m.register_forward_hook(partial(_accumulate, stats, weight_name(n), precision))
               for n, m in layers.items()]
    was = model.training
    model.eval()
    try:
        for x in inputs:
            model(x.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    sum_in_place(stats)  # under torchrun each process saw its shards: the sum is over all of them
    return stats


def full_statistics(model: nn.Module, dataset: Dataset, idx: Tensor | None = None, batch_size: int = 256,
                    augment: Augment | None = None, gen: torch.Generator | None = None,
                    precision: Precision = "float32", on_batch: Callable[[int], None] | None = None) -> Stats:
    """The one-off pass: covariances of every projected layer over `dataset[idx]` (all when None),
    each batch augmented by `augment` (drawing from `gen`) when given, and its size told to
    `on_batch`. Under torchrun each process takes every world()-th row of each (augmented) batch,
    even or not: the sum over processes is then one process's sum, row for row."""
    if idx is None:
        idx = torch.arange(len(dataset))  # type: ignore[arg-type]
    gen = gen if gen is not None else torch.Generator().manual_seed(0)

    def load(chunk: Tensor) -> Tensor:
        if on_batch is not None:
            on_batch(len(chunk))
        return take(dataset, chunk)[0]

    batches = (load(chunk) for chunk in idx.split(batch_size))
    if augment is not None:
        batches = (augment(x, gen) for x in batches)  # the whole batch, as one process draws it
    return covariance(model, (x[rank()::world()] for x in batches), precision)


def energy_rank(eigenvalues: Tensor, tau: float, energy: Energy = "sigma", plus_one: bool = False) -> int:
    """k = #{i : Σ_{j≤i} e_j / Σ e ≤ τ} (+1), e = sqrt(λ) ("sigma", official) or λ ("sigma2", GPM).

    `eigenvalues` are in descending order; negative ones count as 0. k is at most their number.
    """
    lam = eigenvalues.double().clamp_min(0)
    e = lam.sqrt() if energy == "sigma" else lam
    if e.sum() <= 0:
        return 0
    k = int((e.cumsum(0) / e.sum() <= tau).sum()) + int(plus_one)
    return min(k, len(e))


def retain_bases(stats: Stats, taus: dict[str, float], energy: Energy = "sigma",
                 plus_one: bool = False) -> dict[str, Tensor]:
    """{weight name: (d, k) orthonormal float32 basis} for each layer in `taus` with τ < 1.

    A layer with τ = 1 gets no basis: PGU then freezes it, as the official code does.
    """
    bases = {}
    for name, tau in taus.items():
        if tau >= 1.0:
            continue
        lam, vecs = torch.linalg.eigh(stats[name])
        lam, vecs = lam.flip(0), vecs.flip(1)
        bases[name] = vecs[:, :energy_rank(lam, tau, energy, plus_one)].float().contiguous()
    return bases


def statistics_key(model: nn.Module, dataset: Dataset, excluded: Tensor, augment: bool = False,
                   precision: Precision = "float32") -> str:
    """What statistics describe: these exact weights and buffers, this dataset, these ids left out.

    The dataset is identified by `data.fingerprint` (cheap, and enough to tell datasets of one run
    apart); `excluded` is order-free.
    """
    return digest(weights_fingerprint(model), fingerprint(dataset), excluded.sort().values,
                  *(("augmented",) if augment else ()), *(("float64",) if precision == "float64" else ()))


def save_statistics(stats: Stats, path: str | Path, key: str) -> None:
    """Write `stats` to a safetensors file, atomically, with `key` in its metadata."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in stats.items()}
    atomic_write(Path(path), safetensors_bytes(tensors, metadata={"key": key}))


def load_statistics(path: str | Path, key: str) -> Stats | None:
    """The statistics saved at `path` if they were saved for `key`; None if absent or for another key."""
    if not Path(path).is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("key") != key:
                return None
            return {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"statistics file {path} is corrupt or not safetensors: {e}") from None


STATISTICS_CACHE: OrderedDict[str, Stats] = OrderedDict()
STATISTICS_CACHE_SIZE = 4  # entries hold d×d float64 per layer (≈0.7 GB for a ResNet-18), kept on the CPU


def remember(key: str, stats: Stats) -> None:
    """Keep `stats` (on the CPU) in the in-process cache under `key`, dropping the oldest entries."""
    STATISTICS_CACHE[key] = {k: v.cpu() for k, v in stats.items()}
    STATISTICS_CACHE.move_to_end(key)
    while len(STATISTICS_CACHE) > STATISTICS_CACHE_SIZE:
        STATISTICS_CACHE.popitem(last=False)


def cached_statistics(model: nn.Module, request: UnlearnRequest, batch_size: int = 256,
                      path: str | None = None, augment: bool = False, precision: Precision = "float32") -> Stats:
    """C_full for this model and request: from the in-process cache, else `path`, else computed
    over every non-excluded training sample (augmented by `request.augment` when `augment`), and
    then written to `path` if given."""
    key = statistics_key(model, request.train, request.excluded, augment, precision)
    stats = STATISTICS_CACHE.get(key)
    if stats is None and path is not None:
        stats = load_statistics(path, key)
    if stats is None:
        stats = full_statistics(model, request.train, torch.cat([request.retain, request.forget]).sort().values,
                                batch_size, request.augment if augment else None, request.generator(31), precision)
        if path is not None:
            save_statistics(stats, path, key)
    remember(key, stats)
    return STATISTICS_CACHE[key]
