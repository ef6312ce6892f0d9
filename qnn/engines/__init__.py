"""Engines run a :class:`qnn.Circuit` on a batch of inputs.

Every engine implements ``run(circuit, inputs, weights) -> outputs`` where ``inputs`` has
shape ``(B, circuit.n_inputs)``, ``weights`` shape ``(circuit.n_weights,)`` and the result
shape ``(B, circuit.n_outputs)``, real, on the input's device, differentiable by torch
autograd with respect to both ``inputs`` and ``weights``.

Engines are looked up by name with :func:`get_engine`; optional SDKs are imported only when
their engine is asked for, and a missing one raises ``ImportError`` naming the pip package.

Every engine is plain configuration (see :mod:`qnn.engines._contract`): ``engine.config()`` is a
dict of plain values, ``Engine.from_config(cfg)`` rebuilds it, ``engine.capabilities`` says
whether it is hardware, its shots, whether its gradients are exact and what an evaluation
costs; engines pickle and deep-copy through their configuration (no module objects held).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from qnn.engines._contract import Capabilities, check_seed, check_shots, plain_config
from qnn.engines._small_kernel import compile_kernels

__all__ = ["Engine", "Capabilities", "get_engine", "engine_from_config", "compile_kernels", "ENGINE_NAMES"]

# name -> "module:Class"
_REGISTRY: dict[str, str] = {
    "torch": "qnn.engines.torch_engine:TorchEngine",
    "pennylane": "qnn.engines.pennylane_engine:PennyLaneEngine",
    "qiskit": "qnn.engines.qiskit_engine:QiskitEngine",
    "ibm": "qnn.engines.ibm_engine:IBMEngine",
}
ENGINE_NAMES = tuple(_REGISTRY)


class Engine:
    """Base class.  Subclasses set ``name``, implement :meth:`run`, return their constructor
    arguments from :meth:`_options` (plain values) and declare :attr:`capabilities`."""

    name: str = "engine"

    def run(self, circuit, inputs, weights):  # pragma: no cover - abstract
        raise NotImplementedError

    def run_many(self, circuit, inputs, weights):
        """Copies of one circuit, each with its own inputs and weights (as KACQ-DCNN's three
        circuits): ``inputs (copies, B, n_inputs)``, ``weights (copies, n_weights)`` ->
        ``(copies, B, n_outputs)``; copy ``g`` is ``run(circuit, inputs[g], weights[g])``.
        This runs them one by one; an engine overrides it where it can run them together."""
        from qnn.engines._convert import validate_many_args

        validate_many_args(type(self).__name__, circuit, inputs, weights)
        return torch.stack([self.run(circuit, inputs[g], weights[g]) for g in range(inputs.shape[0])])

    # ------------------------------------------------------------------ contract
    def _options(self) -> dict:
        """Constructor keyword arguments that rebuild this engine (plain values)."""
        return {}

    def config(self) -> dict:
        """``{"engine": name, **options}``: plain values only, readable with
        ``torch.load(weights_only=True)`` and JSON; :meth:`from_config` rebuilds the engine."""
        owner = f"{type(self).__name__}.config"
        return plain_config(owner, {"engine": self.name, **self._options()})

    @staticmethod
    def from_config(config: dict) -> "Engine":
        """Build an engine from :meth:`config`'s output."""
        return engine_from_config(config)

    @property
    def capabilities(self) -> Capabilities:
        """What this engine declares (see :class:`Capabilities`)."""
        return Capabilities(hardware=False, shots=None, exact_gradients=True)

    def _transient_state(self) -> dict:
        """State kept across pickling besides the configuration (e.g. a seeded generator)."""
        rng = getattr(self, "_rng", None)
        return {"_rng": rng} if rng is not None else {}

    def __reduce__(self):
        return (engine_from_config, (self.config(),), self._transient_state() or None)

    def __setstate__(self, state) -> None:
        if state:
            self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def engine_from_config(config: dict) -> Engine:
    """Build an engine from ``engine.config()`` (a dict with ``"engine"`` and its options).

    Example:
        >>> engine_from_config({"engine": "torch", "mode": "auto"})
        TorchEngine(mode='auto', dtype=None, device=None)
    """
    if not isinstance(config, dict) or not isinstance(config.get("engine"), str):
        raise ValueError(f"engine_from_config: config must be a dict with an 'engine' name; got {config!r}")
    options = {k: v for k, v in config.items() if k != "engine"}
    return get_engine(config["engine"], **options)


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
