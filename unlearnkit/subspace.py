"""Per-layer input-activation statistics and the subspaces they span (GPM, Saha et al. 2021; PGU).

For every projected layer `y = W x` (Linear, or Conv2d seen as a matrix on unfolded patches) the
statistics are the uncentred, unnormalised covariance C = Σ x xᵀ of its inputs, keyed by the layer's
weight name: each batch's product in the model's dtype (float32 matmul is ~2× float64 on a CPU, and
this pass is PGU's main set-up cost), summed over batches in float64. A retain basis is the top-k
eigenvectors of a covariance, with k set by an energy threshold τ. Choices (see
specs/ltu-lur-pgu.md §1.3, §1.8):

- forward hooks, so any `nn.Module` works; Linear inputs are rows (tokens too: `(..., d)` → rows);
  Conv2d inputs are unfolded with the layer's kernel size, padding and dilation at stride 1, as the
  official code does even for strided convs (it only rescales C; the official code ignores dilation).
  Grouped or string-padded convs and every other layer type are not projected.
- one mode for every pass: eval (Dropout off, BatchNorm running statistics), no augmentation.
  The official code puts Dropout on and augments for the full pass only, so its C_full − C_forget
  is not the retain covariance; here it is, up to the rounding of each batch's product.
- eigenvalues of a difference of covariances are clamped at 0 before any square root.
- statistics are keyed by `statistics_key` (weights + buffers, dataset, excluded ids) and kept in a
  small in-process cache (`cached_statistics`, `remember`), optionally in a safetensors file.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from pathlib import Path
from typing import Iterable, Literal

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn
from torch.utils.data import Dataset

from unlearnkit.checkpoint import CheckpointError, atomic_write, digest
from unlearnkit.data import fingerprint, take
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


def _accumulate(stats: Stats, name: str, module: nn.Module, args: tuple, output: Tensor) -> None:
    rows = layer_rows(module, args[0].detach())
    stats[name] += (rows.T @ rows).double()  # each batch's product in the model's dtype, the sum in float64


@torch.no_grad()
def covariance(model: nn.Module, inputs: Iterable[Tensor]) -> Stats:
    """Σ x xᵀ of every projected layer's inputs over `inputs` (batches), in eval mode, float64."""
    device = next(model.parameters()).device
    layers = projected_layers(model)
    stats = {weight_name(n): torch.zeros(m.weight[0].numel(), m.weight[0].numel(), dtype=torch.float64,
                                         device=device) for n, m in layers.items()}
    handles = [m.register_forward_hook(partial(_accumulate, stats, weight_name(n))) for n, m in layers.items()]
    was = model.training
    model.eval()
    try:
        for x in inputs:
            model(x.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return stats


def full_statistics(model: nn.Module, dataset: Dataset, idx: Tensor | None = None,
                    batch_size: int = 256) -> Stats:
    """The one-off pass: covariances of every projected layer over `dataset[idx]` (all when None)."""
    if idx is None:
        idx = torch.arange(len(dataset))  # type: ignore[arg-type]
    return covariance(model, (take(dataset, chunk)[0] for chunk in idx.split(batch_size)))


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


def statistics_key(model: nn.Module, dataset: Dataset, excluded: Tensor) -> str:
    """What statistics describe: these exact weights and buffers, this dataset, these ids left out.

    The dataset is identified by `data.fingerprint` (cheap, and enough to tell datasets of one run
    apart); `excluded` is order-free.
    """
    return digest(weights_fingerprint(model), fingerprint(dataset), excluded.sort().values)


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
                      path: str | None = None) -> Stats:
    """C_full for this model and request: from the in-process cache, else `path`, else computed
    over every non-excluded training sample (and then written to `path` if given)."""
    key = statistics_key(model, request.train, request.excluded)
    stats = STATISTICS_CACHE.get(key)
    if stats is None and path is not None:
        stats = load_statistics(path, key)
    if stats is None:
        stats = full_statistics(model, request.train, torch.cat([request.retain, request.forget]).sort().values,
                                batch_size)
        if path is not None:
            save_statistics(stats, path, key)
    remember(key, stats)
    return STATISTICS_CACHE[key]
