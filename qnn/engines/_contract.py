"""The engine contract shared by every engine: declared capabilities, configuration that
round-trips through plain Python values, and the argument checks the engines have in common.

An engine is plain configuration: it holds no imported module and no live connection, so it
pickles, deep-copies and travels inside a checkpoint as ``engine.config()`` (a dict of str,
int, float, bool, None, lists and dicts).  Caches and SDK objects are rebuilt on use.

Example:
    >>> from qnn.engines import get_engine, Engine
    >>> cfg = get_engine("torch").config()
    >>> cfg["engine"]
    'torch'
    >>> Engine.from_config(cfg).capabilities.hardware
    False
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Capabilities", "check_shots", "check_seed", "plain_config"]


@dataclass(frozen=True)
class Capabilities:
    """What an engine declares about itself; other code asks this instead of matching names.

    Attributes:
        hardware: True when circuits run on a QPU (or a stand-in for one: a fake backend),
            so every evaluation costs QPU time and a budget applies.
        shots: shots per circuit evaluation, None when outputs are exact.
        exact_gradients: gradients are exact derivatives of the outputs (backprop, adjoint or
            parameter-shift rules); False for finite differences / SPSA.
        cost_per_evaluation: estimated QPU seconds of one circuit evaluation (one bound
            circuit at ``shots`` shots, without the per-job overhead); 0.0 on a simulator.
        max_qubits: widest circuit the engine accepts (None: limited by memory only).
    """

    hardware: bool
    shots: int | None
    exact_gradients: bool
    cost_per_evaluation: float = 0.0
    max_qubits: int | None = None


def check_shots(owner: str, shots, *, allow_none: bool, none_means: str = "exact") -> int | None:
    """``shots`` as an int (or None when ``allow_none``); raises ValueError otherwise."""
    if shots is None and allow_none:
        return None
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        what = f"None ({none_means}) or a positive int" if allow_none else "a positive int"
        raise ValueError(f"{owner}: shots must be {what}; got {shots!r}")
    return int(shots)


def check_seed(owner: str, seed) -> int | None:
    """``seed`` as an int or None; raises TypeError otherwise."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"{owner}: seed must be None or an int; got {type(seed).__name__}")
    return None if seed is None else int(seed)


_PLAIN = (str, int, float, bool, type(None))


def plain_config(owner: str, value, path: str = "config"):
    """Check that ``value`` is made of plain values only (what ``torch.load(weights_only=True)``
    and JSON read back); tuples become lists.  Raises TypeError naming the offending entry."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [plain_config(owner, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{owner}: {path} keys must be str; got {type(k).__name__}")
            out[k] = plain_config(owner, v, f"{path}[{k!r}]")
        return out
    raise TypeError(f"{owner}: {path} must hold only str, int, float, bool, None, lists and dicts; "
                    f"got {type(value).__name__}")
