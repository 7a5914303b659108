"""Data-parallel runs on torch.distributed: `torchrun --nproc_per_node N -m unlearnkit run|bench ...`.

Every process builds the same request and the same batch order (the generators are seeded from
the request), and takes its shard of every batch (`shard`: positions rank, rank + N, ...). The
gradients are then averaged over the processes with an all-reduce before any transform sees them
(`average`, called by `loop.fit`), and the statistics methods gather over data are summed or
averaged across processes where they are computed (`loop.grad_sum`, PGU's covariances,
`loop.virtual_step`'s inner gradient, SFR-on's batch-normalised weights), so N processes compute
what one computes on the same global batches, up to the order of floating-point sums (and
BatchNorm in train mode, which normalises each shard by its own statistics, as DDP does without
SyncBatchNorm). Evaluation forwards are sharded and gathered (`gather`). Only rank 0 writes files.

Why not `DistributedDataParallel`: its gradient all-reduce runs in hooks of `.backward()`, but the
methods need gradients as values (harmonisation, masks, projections, double backward through a
lookahead step), which they take with `torch.autograd.grad`; the all-reduce here is the one DDP
would do, applied where the gradient is. A single process needs no launcher and runs none of this.

The process group uses gloo on a CPU and NCCL on CUDA, with a timeout (`UNLEARNKIT_DIST_TIMEOUT`,
seconds, default 120): when a process dies, the others fail with an error instead of waiting.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import Tensor


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env() -> str | None:
    """Join the process group `torchrun` describes (WORLD_SIZE > 1 in the environment) and return
    this process's device ("cuda:LOCAL_RANK" when CUDA is there, else None); a no-op otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or active():
        return None
    cuda = torch.cuda.is_available()
    timeout = datetime.timedelta(seconds=float(os.environ.get("UNLEARNKIT_DIST_TIMEOUT", "120")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return None


def shard(idx: Tensor) -> Tensor:
    """This process's part of a batch of positions: every world()-th, from rank(), when the
    processes divide the batch evenly; otherwise (an epoch's last, smaller batch) all of it, which
    every process then computes alike. Either way the average of the processes' mean gradients is
    the whole batch's."""
    return idx[rank()::world()] if active() and len(idx) % world() == 0 else idx


def average(grads: dict[str, Tensor]) -> dict[str, Tensor]:
    """Gradients averaged over the processes (one all-reduce per tensor)."""
    if not active():
        return grads
    for g in grads.values():
        dist.all_reduce(g)
        g.div_(world())
    return grads


def total(x: Tensor) -> Tensor:
    """`x` summed over the processes, differentiably (torch.distributed.nn)."""
    if not active():
        return x
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(x)


def mean(x: Tensor) -> Tensor:
    """The whole batch's mean of a per-process batch mean, differentiably: for a loss that is a
    non-linear function of a batch mean (∇τ's gate), so that its averaged gradient is one process's."""
    return total(x) / world() if active() else x


def sum_in_place(tensors: Any) -> None:
    """Sum every tensor of a dict (or list) over the processes, in place."""
    if active():
        for t in tensors.values() if isinstance(tensors, dict) else tensors:
            dist.all_reduce(t)


def draw(sample: Callable[[int], Tensor], local: int, whole: int | None) -> Tensor:
    """Random values for a batch of `local` samples that is a shard of a batch of `whole` (None:
    not a shard): drawn for the whole batch, so the random stream moves as in one process, and
    this process keeps its shard's."""
    if whole is None:
        return sample(local)
    return sample(whole)[rank()::world()]


def gather(local: Tensor, n: int) -> Tensor:
    """The rows of a strided shard (`shard`) from every process, back in their global order: n rows."""
    if not active() or len(local) == n:  # not sharded: every process has all n
        return local
    parts: list[Any] = [None] * world()
    dist.all_gather_object(parts, local.cpu())
    out = torch.empty((n, *local.shape[1:]), dtype=local.dtype)
    for r, part in enumerate(parts):
        out[r::world()] = part
    return out


def broadcast_model(model: torch.nn.Module) -> None:
    """Make every process start from rank 0's weights and buffers (as DDP does when it wraps a model)."""
    if active():
        for t in model.state_dict().values():
            dist.broadcast(t, 0)


def agree(value: Any) -> Any:
    """Rank 0's `value` on every process (a decision all of them must take alike, e.g. "is it cached")."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, 0)
    return box[0]


def barrier() -> None:
    if active():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (under torchrun): every process has finished its collectives; exiting
    with the group still up lets its threads be torn down mid-flight (an abort at exit)."""
    if active():
        dist.destroy_process_group()
