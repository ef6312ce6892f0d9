"""QuantumLayer and QuantumLinear: circuits as torch.nn modules.

:class:`QuantumLayer` wraps any :class:`qnn.Circuit`; :class:`QuantumLinear` builds an
embedding + ansatz circuit and is a drop-in replacement for :class:`torch.nn.Linear`.
Both accept inputs of shape ``(*, n_inputs)`` and return ``(*, n_outputs)`` on the input's
device, in the input's float dtype, and run on any engine from :func:`qnn.engines.get_engine`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from qnn.circuit import ANSATZE, Circuit, amplitude_embedding, angle_embedding
from qnn.engines import Engine, get_engine

__all__ = ["QuantumLayer", "QuantumLinear"]

_INITS = ("uniform", "normal", "zeros")


class QuantumLayer(nn.Module):
    """A trainable quantum circuit as a ``torch.nn.Module``.

    Args:
        circuit (Circuit): the circuit; its ``n_weights`` angles become the Parameter
            ``weight`` and its inputs are the last dimension of the input tensor.
        engine (str | Engine): engine name (``"torch"``, ``"pennylane"``, ``"qiskit"``,
            ``"ibm"``) or an :class:`~qnn.engines.Engine` instance. Default ``"torch"``.
        engine_options (dict | None): keyword arguments for the engine constructor (only
            with an engine name).
        init (str | callable): ``"uniform"`` (default, uniform on [0, 2*pi)), ``"normal"``
            (N(0, 1)), ``"zeros"``, or ``fn(weight, generator)`` filling ``weight`` in place.
        seed (int | None): seeds a ``torch.Generator`` used by every
            :meth:`reset_parameters`, so the initial weights are repeatable.
        device, dtype: of the Parameter (factory kwargs, as in ``torch.nn``).

    Shape:
        - Input: ``(*, circuit.n_inputs)`` float32 or float64.
        - Output: ``(*, circuit.n_outputs)``, same dtype and device as the input.
          An empty batch gives an empty output ``(*, n_outputs)``.

    Raises:
        ValueError: unknown engine (the message lists the valid names), wrong last input
            dimension, NaN or inf in the input.
        TypeError: input that is not a float32/float64 tensor.

    Example:
        >>> import torch, qnn
        >>> c = qnn.Circuit(2)
        >>> _ = qnn.angle_embedding(c)
        >>> _ = qnn.strongly_entangling_layers(c, n_layers=1)
        >>> _ = c.measure_z()
        >>> layer = qnn.QuantumLayer(c, seed=0)
        >>> layer(torch.zeros(5, 2)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        circuit: Circuit,
        *,
        engine: str | Engine = "torch",
        engine_options: dict[str, Any] | None = None,
        init: str | Callable = "uniform",
        seed: int | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(circuit, Circuit):
            raise TypeError(f"{type(self).__name__}: circuit must be a qnn.Circuit; got {type(circuit).__name__}")
        if not circuit.measurements:
            raise ValueError(f"{type(self).__name__}: the circuit has no measurements")
        if not (callable(init) or init in _INITS):
            raise ValueError(f"{type(self).__name__}: init must be one of {list(_INITS)} or a callable; got {init!r}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise TypeError(f"{type(self).__name__}: seed must be an int or None; got {seed!r}")
        if dtype is not None and dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{type(self).__name__}: dtype must be torch.float32 or torch.float64; got {dtype}")
        self.circuit = circuit
        self.engine = get_engine(engine, **(engine_options or {}))
        self.init = init
        self.seed = seed
        self.weight = nn.Parameter(torch.empty(circuit.n_weights, device=device, dtype=dtype))
        self.reset_parameters()

    @property
    def n_qubits(self) -> int:
        return self.circuit.n_qubits

    @property
    def n_inputs(self) -> int:
        return self.circuit.n_inputs

    @property
    def n_outputs(self) -> int:
        return self.circuit.n_outputs

    def reset_parameters(self) -> None:
        """Re-draw ``weight`` (from ``seed`` when given, so the result is repeatable)."""
        gen = None
        if self.seed is not None:
            gen = torch.Generator(device="cpu").manual_seed(self.seed)
        w = torch.empty(self.weight.shape, dtype=self.weight.dtype)
        with torch.no_grad():
            if callable(self.init):
                self.init(w, gen)
            elif self.init == "uniform":
                w.uniform_(0.0, 2 * math.pi, generator=gen)
            elif self.init == "normal":
                w.normal_(0.0, 1.0, generator=gen)
            else:
                w.zero_()
            self.weight.copy_(w.to(self.weight.device))

    def _check_input(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        if not torch.is_tensor(x):
            raise TypeError(f"{name}: expected a torch.Tensor input; got {type(x).__name__}")
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{name}: expected a float32 or float64 input; got {x.dtype}")
        if x.dim() == 0:
            raise ValueError(f"{name}: expected input with last dimension {self.n_inputs}, got a scalar")
        if x.shape[-1] != self.n_inputs:
            raise ValueError(f"{name}: expected input with last dimension {self.n_inputs}, got {x.shape[-1]}")
        if x.numel() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}: input contains NaN or inf")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        lead = x.shape[:-1]
        flat = x.reshape(math.prod(lead), self.n_inputs)  # not -1: a circuit may take no inputs
        if flat.shape[0] == 0:
            return x.new_zeros((*lead, self.n_outputs)) + 0.0 * self.weight.sum().to(x.dtype)
        out = self.engine.run(self.circuit, flat, self.weight)
        return out.to(device=x.device, dtype=x.dtype).reshape(*lead, self.n_outputs)

    def _engine_name(self) -> str:
        return getattr(self.engine, "name", type(self.engine).__name__)

    def extra_repr(self) -> str:
        return (f"n_qubits={self.n_qubits}, n_inputs={self.n_inputs}, n_outputs={self.n_outputs}, "
                f"n_weights={self.weight.numel()}, engine={self._engine_name()}")


def _pos_int(value: Any, what: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"QuantumLinear: {what} must be an int >= {minimum}; got {value!r}")
    return value


class QuantumLinear(QuantumLayer):
    """A quantum drop-in for :class:`torch.nn.Linear`: embedding -> ansatz -> <Z> readout.

    Shape rules:
        - ``encoding="angle"``: ``n_qubits`` defaults to ``max(in_features, out_features)``;
          feature ``i`` is the angle of an R{rotation} on wire ``i`` (``in_features <= n_qubits``).
        - ``encoding="amplitude"``: ``n_qubits`` defaults to
          ``max(ceil(log2(in_features)), out_features, 1)``; the features are padded with
          zeros to ``2**n_qubits`` and L2-normalised (an all-zero sample raises ValueError).
        - Outputs are ``<Z_i>`` on wires ``0 .. out_features - 1``, so ``out_features <= n_qubits``
          and every output lies in [-1, 1]. No trainable output scaling or bias is added:
          put an ``nn.Linear`` after the layer if the targets need another range.
        - The ansatz (``ANSATZE[ansatz]``) has ``n_layers`` layers on all ``n_qubits`` wires and
          owns every trainable weight (``weight`` is flat; ``circuit.weight_blocks`` gives its shape).

    Args:
        in_features (int): size of each input sample.
        out_features (int): size of each output sample.
        n_qubits (int | None): register size (default from the rules above).
        n_layers (int): ansatz layers (default 2).
        encoding (str): ``"angle"`` (default) or ``"amplitude"``.
        ansatz (str): ``"strongly_entangling"`` (default), ``"basic_entangler"`` or
            ``"hardware_efficient"``.
        rotation (str): angle-embedding rotation ``"X"``, ``"Y"`` (default) or ``"Z"``.
        engine, engine_options, seed, device, dtype: as in :class:`QuantumLayer`.

    Attributes:
        in_features, out_features, n_qubits, n_layers, encoding, ansatz, circuit, weight.

    Example:
        >>> import torch, qnn
        >>> model = torch.nn.Sequential(qnn.QuantumLinear(4, 2, seed=0), torch.nn.Linear(2, 1))
        >>> model(torch.rand(8, 4)).shape
        torch.Size([8, 1])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        n_qubits: int | None = None,
        n_layers: int = 2,
        encoding: str = "angle",
        ansatz: str = "strongly_entangling",
        rotation: str = "Y",
        engine: str | Engine = "torch",
        engine_options: dict[str, Any] | None = None,
        seed: int | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        in_features = _pos_int(in_features, "in_features")
        out_features = _pos_int(out_features, "out_features")
        n_layers = _pos_int(n_layers, "n_layers")
        if encoding not in ("angle", "amplitude"):
            raise ValueError(f"QuantumLinear: encoding must be 'angle' or 'amplitude'; got {encoding!r}")
        if ansatz not in ANSATZE:
            raise ValueError(f"QuantumLinear: ansatz must be one of {sorted(ANSATZE)}; got {ansatz!r}")
        if encoding == "angle":
            default = max(in_features, out_features)
        else:
            default = max(math.ceil(math.log2(in_features)), out_features, 1)
        n_qubits = default if n_qubits is None else _pos_int(n_qubits, "n_qubits")
        if out_features > n_qubits:
            raise ValueError(
                f"QuantumLinear: out_features must be <= n_qubits ({n_qubits}); got {out_features}")
        if encoding == "angle" and in_features > n_qubits:
            raise ValueError(
                f"QuantumLinear: with angle encoding in_features must be <= n_qubits ({n_qubits}); "
                f"got {in_features}")
        if encoding == "amplitude" and in_features > 2**n_qubits:
            raise ValueError(
                f"QuantumLinear: with amplitude encoding in_features must be <= 2**n_qubits "
                f"({2**n_qubits}); got {in_features}")
        c = Circuit(n_qubits)
        if encoding == "angle":
            angle_embedding(c, rotation=rotation, wires=range(in_features))
        else:
            amplitude_embedding(c, n_features=in_features, pad=0.0)
        ANSATZE[ansatz](c, n_layers)
        c.measure_z(range(out_features))
        self.in_features = in_features
        self.out_features = out_features
        self.n_layers = n_layers
        self.encoding = encoding
        self.ansatz = ansatz
        self.rotation = rotation
        super().__init__(c, engine=engine, engine_options=engine_options, seed=seed, device=device, dtype=dtype)

    def extra_repr(self) -> str:
        s = (f"in_features={self.in_features}, out_features={self.out_features}, "
             f"n_qubits={self.n_qubits}, n_layers={self.n_layers}, encoding={self.encoding}, ")
        if self.ansatz != "strongly_entangling":
            s += f"ansatz={self.ansatz}, "
        return s + f"engine={self._engine_name()}, n_weights={self.weight.numel()}"
