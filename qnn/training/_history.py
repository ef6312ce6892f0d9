"""History: the per-epoch records of a :func:`qnn.training.fit` run."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Iterator

__all__ = ["History"]

# Record key -> key of the paper's JSON layout ("Quantum Creep" protocol).
_PAPER_KEYS = {
    "train_loss": "train_losses",
    "test_loss": "test_losses",
    "train_accuracy": "train_accs",
    "test_accuracy": "test_accs",
}


class History:
    """Per-epoch records of a training run, plus the run's configuration and run records.

    Attributes:
        epochs (list[dict]): one dict per finished epoch, e.g. ``{"epoch": 1, "train_loss": ...,
            "train_accuracy": ..., "test_loss": ..., "test_accuracy": ..., "seconds": ...}``.
        config (dict): the configuration fingerprint of the run (see :func:`qnn.training.fit`).
        runs (list[dict]): one :func:`qnn.training.run_record` per invocation of ``fit`` that
            trained (the first one started the run, later ones resumed it), each with the key
            ``"start_epoch"`` (the epochs already done when it started).

    A History holds only plain data, so it pickles, deep-copies, round-trips through JSON and
    loads with ``torch.load(weights_only=True)`` (importing :mod:`qnn.training` registers it).

    Example:
        >>> h = History([{"epoch": 1, "train_loss": 0.9, "train_accuracy": 0.5},
        ...              {"epoch": 2, "train_loss": 0.7, "train_accuracy": 0.75}])
        >>> h.last()["train_loss"]
        0.7
        >>> h.column("train_accuracy")
        [0.5, 0.75]
        >>> History.from_json(h.to_json()) == h
        True
        >>> h.to_paper_dict()["train_accs"]
        [0.5, 0.75]
    """

    def __init__(self, epochs: list[dict] | None = None, *, config: dict | None = None,
                 runs: list[dict] | None = None) -> None:
        if not isinstance(config, (dict, type(None))):
            raise TypeError(f"History: config must be a dict; got {type(config).__name__}")
        self.epochs: list[dict[str, Any]] = _check_list_of_dicts(epochs, "epochs")
        self.config: dict[str, Any] = dict(config) if config is not None else {}
        self.runs: list[dict[str, Any]] = _check_list_of_dicts(runs, "runs")

    # ---- access
    def __len__(self) -> int:
        return len(self.epochs)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.epochs)

    def __getitem__(self, i: int) -> dict:
        return self.epochs[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        return (self.epochs, self.config, self.runs) == (other.epochs, other.config, other.runs)

    def __repr__(self) -> str:
        last = f", last={self.epochs[-1]!r}" if self.epochs else ""
        return f"History(n_epochs={len(self.epochs)}{last})"

    @property
    def record(self) -> dict | None:
        """The run record of the invocation that started the run (``None`` before any)."""
        return self.runs[0] if self.runs else None

    def last(self) -> dict:
        """A copy of the last epoch's record; ``ValueError`` when no epoch is recorded."""
        if not self.epochs:
            raise ValueError("History.last: no epoch recorded yet")
        return dict(self.epochs[-1])

    def column(self, key: str) -> list:
        """The values of ``key`` over the epochs that have it, in order."""
        return [e[key] for e in self.epochs if key in e]

    def to_paper_dict(self) -> dict[str, list[float]]:
        """The "Quantum Creep" paper's layout: ``{"train_losses", "test_losses", "train_accs",
        "test_accs"}``, one value per epoch, accuracies in [0, 1] (empty lists for what the run
        did not measure)."""
        return {paper: self.column(key) for key, paper in _PAPER_KEYS.items()}

    # ---- plain data / JSON
    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (a deep copy): ``{"epochs": [...], "config": {...}, "runs": [...]}``."""
        return copy.deepcopy({"epochs": self.epochs, "config": self.config, "runs": self.runs})

    @classmethod
    def from_dict(cls, data: dict) -> "History":
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or "epochs" not in data:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"History.from_dict: expected a dict with key 'epochs'; got {got}")
        return cls(copy.deepcopy(data["epochs"]), config=copy.deepcopy(data.get("config") or {}),
                   runs=copy.deepcopy(data.get("runs") or []))

    def to_json(self, path: str | os.PathLike | None = None, *, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict`; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike) -> "History":
        """Read :meth:`to_json` output: JSON text (``str``) or a file (``pathlib.Path``)."""
        if isinstance(source, os.PathLike):
            source = Path(source).read_text()
        if not isinstance(source, str):
            raise TypeError(f"History.from_json: expected JSON text or a path; got {type(source).__name__}")
        return cls.from_dict(json.loads(source))

    # ---- pickling (plain state only, so weights_only loading accepts it)
    def __getstate__(self) -> dict:
        return {"epochs": self.epochs, "config": self.config, "runs": self.runs}

    def __setstate__(self, state: dict) -> None:
        if not isinstance(state, dict) or "epochs" not in state:
            raise ValueError("History: invalid pickled state")
        self.epochs = _check_list_of_dicts(state["epochs"], "epochs")
        self.config = dict(state.get("config") or {})
        self.runs = _check_list_of_dicts(state.get("runs"), "runs")


def _check_list_of_dicts(value, name: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, dict) for v in value):
        raise TypeError(f"History: {name} must be a list of dicts; got {type(value).__name__}")
    return [dict(v) for v in value]
