"""Engines run a :class:`qnn.Circuit` on a batch of inputs.

Every engine implements ``run(circuit, inputs, weights) -> outputs`` where ``inputs`` has
shape ``(B, circuit.n_inputs)``, ``weights`` shape ``(circuit.n_weights,)`` and the result
shape ``(B, circuit.n_outputs)``, real, on the input's device, differentiable by torch
autograd with respect to both ``inputs`` and ``weights``.

Engines are looked up by name with :func:`get_engine`; optional SDKs are imported only when
their engine is asked for, and a missing one raises ``ImportError`` naming the pip package.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Engine", "get_engine", "ENGINE_NAMES"]

# name -> "module:Class"
_REGISTRY: dict[str, str] = {
    "torch": "qnn.engines.torch_engine:TorchEngine",
    "pennylane": "qnn.engines.pennylane_engine:PennyLaneEngine",
    "qiskit": "qnn.engines.qiskit_engine:QiskitEngine",
    "ibm": "qnn.engines.ibm_engine:IBMEngine",
}
ENGINE_NAMES = tuple(_REGISTRY)


class Engine:
    """Base class.  Subclasses set ``name`` and implement :meth:`run`."""

    name: str = "engine"

    def run(self, circuit, inputs, weights):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def get_engine(engine: "str | Engine" = "torch", **options: Any) -> Engine:
    """Return an engine instance from a name (``"torch"``, ``"pennylane"``, ``"qiskit"``,
    ``"ibm"``) or pass an :class:`Engine` instance through unchanged."""
    if isinstance(engine, Engine):
        if options:
            raise ValueError("get_engine: options can only be given with an engine name")
        return engine
    if not isinstance(engine, str) or engine not in _REGISTRY:
        raise ValueError(f"Unknown engine {engine!r}; valid engines are {list(ENGINE_NAMES)}")
    module, cls = _REGISTRY[engine].split(":")
    return getattr(importlib.import_module(module), cls)(**options)


from qnn.engines._convert import to_pennylane  # noqa: E402  (public exporter; uses qnn.interop's gate table)

__all__ += ["to_pennylane"]
