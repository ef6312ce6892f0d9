"""Checkpoints of :func:`qnn.training.fit`: atomic writes, weights-only loading, config checks.

A checkpoint is a dict of plain data (tensors, dicts, lists, numbers, strings), so it loads with
``torch.load(path, weights_only=True)``::

    {"format": "qnn.training.checkpoint", "version": 1, "epoch": k,
     "model": model.state_dict(), "optimizer": optimizer.state_dict(),
     "shuffle_rng": ByteTensor, "torch_rng": ByteTensor, "cuda_rng": ByteTensor | None,
     "config": {...}, "history": History.to_dict()}
"""

from __future__ import annotations

import enum
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["load_checkpoint", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "qnn.training.checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
_REQUIRED = ("epoch", "model", "optimizer", "shuffle_rng", "torch_rng", "config", "history")


def resolve_path(checkpoint, who: str = "fit") -> Path | None:
    """``checkpoint`` as a file path: a directory (existing, or written with a trailing
    separator) means ``<dir>/checkpoint.pt``."""
    if checkpoint is None:
        return None
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"{who}: checkpoint must be a path (str or os.PathLike) or None; got {checkpoint!r}")
    text = os.fspath(checkpoint)
    if not text:
        raise ValueError(f"{who}: checkpoint must be a non-empty path; got ''")
    path = Path(text)
    if path.is_dir() or text.endswith(("/", os.sep)):
        path = path / CHECKPOINT_NAME
    return path


def plain(obj: Any, where: str) -> Any:
    """``obj`` with everything a weights-only load refuses converted to plain data (numpy
    scalars and arrays, paths, enums, devices, dtypes); anything else is a ``TypeError``."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, enum.Enum):
        return plain(obj.value, where)
    if isinstance(obj, (os.PathLike, torch.device, torch.dtype)):
        return str(obj)
    if isinstance(obj, dict):
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"fit: cannot store {where} in a weights-only checkpoint: "
                                f"dict keys must be str or int; got {k!r}")
            out[k] = plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise TypeError(f"fit: cannot store {where} in a weights-only checkpoint: expected tensors, "
                    f"dicts, lists, numbers or strings; got {type(obj).__name__}")


def save_atomic(state: dict, path: Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, fsync, then ``os.replace``: a crash
    leaves either the previous checkpoint or the new one, never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, *, who: str = "load_checkpoint") -> dict:
    """Load and validate a :func:`qnn.training.fit` checkpoint (weights-only, onto the CPU).

    ``path`` may be the file or its directory (``<dir>/checkpoint.pt``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable torch file, or not a qnn.training checkpoint
            (foreign or corrupted content); the message names the file and what was found.

    Example:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> from qnn.training import fit
        >>> d = tempfile.mkdtemp()
        >>> X, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
        >>> _ = fit(nn.Linear(3, 2), (X, y), epochs=2, batch_size=8, checkpoint=d, progress=False)
        >>> ck = load_checkpoint(d)
        >>> ck["epoch"], ck["config"]["epochs"]
        (2, 2)
        >>> import shutil; shutil.rmtree(d)
    """
    p = resolve_path(path, who)
    if not p.is_file():
        raise FileNotFoundError(f"{who}: no checkpoint file at {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupted, truncated, foreign pickle with unsafe globals, ...
        raise ValueError(
            f"{who}: cannot read checkpoint {p}: expected a torch file that loads with "
            f"weights_only=True; got {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        got = f"a dict with keys {sorted(map(str, state))[:8]}" if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{who}: {p} is not a qnn.training checkpoint: expected a dict with "
                         f"'format': {CHECKPOINT_FORMAT!r}; got {got}")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{who}: checkpoint {p} has format version {state.get('version')!r}; "
                         f"this qnn reads version {CHECKPOINT_VERSION}")
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise ValueError(f"{who}: checkpoint {p} is incomplete: missing {missing}")
    if not isinstance(state["epoch"], int) or state["epoch"] < 0:
        raise ValueError(f"{who}: checkpoint {p} has an invalid epoch {state['epoch']!r}")
    for k in ("shuffle_rng", "torch_rng"):
        if not (isinstance(state[k], torch.Tensor) and state[k].dtype == torch.uint8):
            raise ValueError(f"{who}: checkpoint {p} has an invalid {k}: expected a uint8 tensor")
    return state


def config_mismatch(saved: dict, now: dict) -> list[str]:
    """Human-readable differences between two configuration fingerprints."""
    diffs = []
    for k in sorted(set(saved) | set(now)):
        a, b = saved.get(k, "<absent>"), now.get(k, "<absent>")
        if a != b:
            a_s, b_s = repr(a), repr(b)
            if len(a_s) > 120 or len(b_s) > 120:
                a_s, b_s = a_s[:117] + "...", b_s[:117] + "..."
            diffs.append(f"{k} {a_s} (checkpoint) != {b_s} (now)")
    return diffs
