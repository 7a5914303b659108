"""Checkpoints as safetensors plus a JSON sidecar; atomic writes; a content-keyed model cache.

Loading never executes code: weights come from safetensors, metadata from JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from unlearnkit.distributed import is_main


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, or does not fit the model."""


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file and a rename: readers see old or new, never half.
    The file gets the permissions the user's umask gives a new file (a temporary file is 0600)."""
    if not is_main():
        return  # under torchrun only rank 0 writes
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a file to write")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_model(model: nn.Module, path: Path, meta: dict[str, Any] | None = None) -> None:
    """Save the state dict to `path` (.safetensors) and `meta` to `path`.json, both atomically."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, safetensors_bytes(state))
    atomic_write(sidecar(path), json.dumps(meta or {}, indent=1, sort_keys=True).encode())


def sidecar(path: Path) -> Path:
    return Path(str(path) + ".json")


def load_model(model: nn.Module, path: Path) -> dict[str, Any]:
    """Load weights from `path` into `model` (strict: every key and shape must match); return meta."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or not safetensors: {e}") from None
    own = model.state_dict()
    missing, extra = own.keys() - state.keys(), state.keys() - own.keys()
    wrong = [k for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    if missing or extra or wrong:
        raise CheckpointError(f"checkpoint {path} does not fit the model: missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(extra)[:3]}, wrong shape {wrong[:3]}")
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in state.items()})
    meta_path = sidecar(path)
    if not meta_path.is_file():
        return {}
    try:
        return json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint metadata {meta_path} is corrupt: {e}") from None


def digest(*parts: Any) -> str:
    """A short stable hash of JSON-able parts and tensors (used as cache keys)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"|")
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    """Where trained models are cached: $UNLEARNKIT_CACHE, else ~/.cache/unlearnkit."""
    return Path(os.environ.get("UNLEARNKIT_CACHE") or Path.home() / ".cache" / "unlearnkit")
