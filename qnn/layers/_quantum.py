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
from qnn.layers._common import from_classical, pos_int

__all__ = ["QuantumLayer", "QuantumLinear", "DEFAULT_QUBIT_BUDGET", "auto_config", "forward_many", "z_words"]

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


def forward_many(layers, inputs) -> list[torch.Tensor]:
    """Forward several :class:`QuantumLayer` s that share one circuit structure (and engine
    settings), each with its own weights and input, in one engine call
    (:meth:`qnn.engines.Engine.run_many`): KACQ-DCNN's three 4-qubit circuits.  Equal to
    ``[layer(x) for layer, x in zip(layers, inputs)]`` in values and gradients.

    Args:
        layers: a non-empty sequence of :class:`QuantumLayer` whose circuits have equal
            :meth:`qnn.Circuit.structure_key` and whose engines have equal ``config()``.
        inputs: one tensor ``(*, n_inputs)`` per layer, all of one shape.

    Returns:
        One output ``(*, n_outputs)`` per layer, in the input's dtype and device.

    Example:
        >>> import torch, qnn
        >>> from qnn.layers import forward_many
        >>> def pqc():
        ...     c = qnn.Circuit(2)
        ...     _ = qnn.angle_embedding(c)
        ...     _ = qnn.strongly_entangling_layers(c, 1)
        ...     _ = c.measure_z()
        ...     return qnn.QuantumLayer(c)
        >>> layers = [pqc(), pqc()]
        >>> [o.shape for o in forward_many(layers, [torch.rand(5, 2), torch.rand(5, 2)])]
        [torch.Size([5, 2]), torch.Size([5, 2])]
    """
    layers, inputs = list(layers), list(inputs)
    if not layers or not all(isinstance(m, QuantumLayer) for m in layers):
        raise TypeError("forward_many: layers must be a non-empty sequence of QuantumLayer; got "
                        f"{[type(m).__name__ for m in layers]}")
    if len(inputs) != len(layers):
        raise ValueError(f"forward_many: one input per layer is needed; got {len(inputs)} inputs for "
                         f"{len(layers)} layers")
    first = layers[0]
    key, cfg = first.circuit.structure_key(), first.engine.config()
    for i, m in enumerate(layers[1:], 1):
        if m.circuit is not first.circuit and m.circuit.structure_key() != key:
            raise ValueError(f"forward_many: every layer must have the same circuit structure; layer {i}'s "
                             f"circuit differs from layer 0's")
        if m.engine is not first.engine and m.engine.config() != cfg:
            raise ValueError(f"forward_many: every layer must have the same engine settings; layer {i} has "
                             f"{m.engine.config()}, layer 0 {cfg}")
    for i, x in enumerate(inputs):
        m = layers[i]
        m._check_input(x)
        if x.shape != inputs[0].shape:
            raise ValueError(f"forward_many: every input must have the same shape; input {i} has "
                             f"{tuple(x.shape)}, input 0 {tuple(inputs[0].shape)}")
    lead = inputs[0].shape[:-1]
    B = math.prod(lead)
    if B == 0:
        return [m(x) for m, x in zip(layers, inputs)]
    X = torch.stack([x.reshape(B, first.n_inputs) for x in inputs])
    W = torch.stack([m.weight for m in layers])
    out = first.engine.run_many(first.circuit, X, W)
    x0 = inputs[0]
    return [o.to(device=x0.device, dtype=x0.dtype).reshape(*lead, first.n_outputs) for o in out.unbind(0)]


#: Largest register a layer builds unless told otherwise (``qubit_budget``): 2**20 amplitudes
#: per sample is 8 MiB in complex64, so a batch of 256 already needs 2 GiB per state.
DEFAULT_QUBIT_BUDGET = 20
ENCODINGS = ("angle", "amplitude", "reupload")
READOUTS = ("z", "probs", "pauli")


def _bits(n: int) -> int:
    """Smallest k >= 1 with 2**k >= n."""
    return max(1, math.ceil(math.log2(n)))


def z_words(n_qubits: int, count: int) -> list[str]:
    """The first ``count`` Z words on ``n_qubits`` wires, by weight then lexicographically
    (``Z_0, Z_1, ..., Z_0 Z_1, ...``): outputs that a single Z-basis measurement gives.

    Example:
        >>> z_words(3, 5)
        ['ZII', 'IZI', 'IIZ', 'ZZI', 'ZIZ']
    """
    from itertools import combinations

    words = []
    for k in range(1, n_qubits + 1):
        for wires in combinations(range(n_qubits), k):
            words.append("".join("Z" if w in wires else "I" for w in range(n_qubits)))
            if len(words) == count:
                return words
    return words


def auto_config(in_features: int, out_features: int) -> dict:
    """Encoding and readout for a layer of this shape on few qubits: angle encoding and ``<Z>``
    readout while both sides fit 8 qubits; otherwise amplitude encoding
    (``ceil(log2(in_features))`` qubits) with ``<Z>`` per wire if the register has enough wires,
    else Z words (``readout="pauli"``).

    Example:
        >>> auto_config(4, 2), auto_config(12544, 10), auto_config(9, 32)
        ({'encoding': 'angle', 'readout': 'z'}, {'encoding': 'amplitude', 'readout': 'z'}, {'encoding': 'amplitude', 'readout': 'pauli'})
    """
    if in_features <= 8 and out_features <= 8:
        return {"encoding": "angle", "readout": "z"}
    return {"encoding": "amplitude", "readout": "z" if out_features <= _bits(in_features) else "pauli"}


def _readout_qubits(readout, out_features: int) -> int:
    """Fewest qubits the readout needs for ``out_features`` outputs."""
    if readout == "z":
        return out_features
    if readout == "probs":
        return _bits(out_features)
    if readout == "pauli":
        return _bits(out_features + 1)
    return len(readout[0])


class QuantumLinear(QuantumLayer):
    """A quantum drop-in for :class:`torch.nn.Linear`: embedding -> ansatz -> readout (+ bias).

    Shape rules (input ``(*, in_features)``, output ``(*, out_features)``):
        - ``encoding="angle"``: feature ``i`` is the angle ``input_scale * x_i`` of an
          R{rotation} on wire ``i`` (``in_features <= n_qubits``).
        - ``encoding="amplitude"``: the features, zero-padded to ``2**n_qubits``, are
          L2-normalised into the state (``in_features <= 2**n_qubits``; an all-zero sample
          raises ValueError).
        - ``encoding="reupload"``: the features are split into chunks of ``n_qubits``; each chunk
          is angle-encoded and followed by ``n_layers`` ansatz layers (data re-uploading), so any
          number of features fits a small register.
        - ``readout="z"``: output ``j`` is ``<Z_j>`` (``out_features <= n_qubits``);
          ``"probs"``: the probabilities of the first ``out_features`` basis states of the first
          ``ceil(log2(out_features))`` wires (the remaining probabilities of those wires, when
          ``out_features`` is not a power of two, are not outputs);
          ``"pauli"``: the Z words of :func:`z_words` (``out_features <= 2**n_qubits - 1``);
          a list of ``out_features`` Pauli words of length ``n_qubits`` (e.g. ``["XZ", "YY"]``)
          reads those.
        - ``n_qubits`` defaults to the fewest qubits the encoding and the readout need (for
          ``"reupload"``: ``min(in_features, 8)`` or what the readout needs, if more).
        - ``bias=True`` adds a trainable per-output bias (``nn.Linear``'s contract), initialised
          to zero so that a fresh layer computes its circuit.
        - A layer over ``qubit_budget`` qubits is refused at construction with the alternatives.

    Args:
        in_features (int): size of each input sample.
        out_features (int): size of each output sample.
        bias (bool): learn an additive bias (default True).
        n_qubits (int | None): register size (default from the rules above).
        n_layers (int): ansatz layers (per chunk with ``"reupload"``; default 2).
        encoding (str): ``"angle"`` (default), ``"amplitude"`` or ``"reupload"``.
        readout (str | list[str]): ``"z"`` (default), ``"probs"``, ``"pauli"`` or Pauli words.
        ansatz (str): ``"strongly_entangling"`` (default), ``"basic_entangler"`` or
            ``"hardware_efficient"``.
        rotation (str): angle-embedding rotation ``"X"``, ``"Y"`` (default) or ``"Z"``.
        input_scale (float): angle per unit of input (angle and reupload encodings; default 1).
        qubit_budget (int): most qubits the layer may use (default :data:`DEFAULT_QUBIT_BUDGET`).
        engine, engine_options, seed, device, dtype: as in :class:`QuantumLayer`.

    Attributes:
        in_features, out_features, n_qubits, n_layers, encoding, readout, ansatz, circuit,
        weight, bias (``None`` when ``bias=False``).

    Example:
        >>> import torch, qnn
        >>> model = torch.nn.Sequential(qnn.QuantumLinear(4, 2, seed=0), torch.nn.Linear(2, 1))
        >>> model(torch.rand(8, 4)).shape
        torch.Size([8, 1])
        >>> qnn.QuantumLinear(784, 10, encoding="amplitude", readout="probs").n_qubits
        10
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        n_qubits: int | None = None,
        n_layers: int = 2,
        encoding: str = "angle",
        readout: str | list[str] = "z",
        ansatz: str = "strongly_entangling",
        rotation: str = "Y",
        input_scale: float = 1.0,
        qubit_budget: int = DEFAULT_QUBIT_BUDGET,
        engine: str | Engine = "torch",
        engine_options: dict[str, Any] | None = None,
        seed: int | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        in_features = pos_int(in_features, "in_features", "QuantumLinear")
        out_features = pos_int(out_features, "out_features", "QuantumLinear")
        n_layers = pos_int(n_layers, "n_layers", "QuantumLinear")
        qubit_budget = pos_int(qubit_budget, "qubit_budget", "QuantumLinear")
        if not isinstance(bias, bool):
            raise TypeError(f"QuantumLinear: bias must be True or False; got {bias!r}")
        if encoding not in ENCODINGS:
            raise ValueError(f"QuantumLinear: encoding must be one of {list(ENCODINGS)}; got {encoding!r}")
        if ansatz not in ANSATZE:
            raise ValueError(f"QuantumLinear: ansatz must be one of {sorted(ANSATZE)}; got {ansatz!r}")
        readout = self._check_readout(readout, out_features)
        need_out = _readout_qubits(readout, out_features)
        need_in = {"angle": in_features, "amplitude": _bits(in_features), "reupload": min(in_features, 8)}[encoding]
        if n_qubits is None:
            n_qubits = max(need_in, need_out)
            self._check_budget(in_features, out_features, encoding, readout, n_qubits, need_in, need_out,
                               qubit_budget)
        else:
            n_qubits = pos_int(n_qubits, "n_qubits", "QuantumLinear")
            if n_qubits > qubit_budget:
                raise ValueError(f"QuantumLinear: n_qubits must be <= qubit_budget ({qubit_budget}); got {n_qubits}")
        self._check_fits(in_features, out_features, encoding, readout, n_qubits)
        c = Circuit(n_qubits)
        if encoding == "amplitude":
            amplitude_embedding(c, n_features=in_features, pad=0.0)
            ANSATZE[ansatz](c, n_layers)
        elif encoding == "angle":
            angle_embedding(c, rotation=rotation, wires=range(in_features), scale=input_scale)
            ANSATZE[ansatz](c, n_layers)
        else:
            for start in range(0, in_features, n_qubits):
                angle_embedding(c, rotation=rotation, wires=range(min(n_qubits, in_features - start)),
                                scale=input_scale)
                ANSATZE[ansatz](c, n_layers)
        self._measure(c, readout, out_features)
        self.in_features = in_features
        self.out_features = out_features
        self.n_layers = n_layers
        self.encoding = encoding
        self.readout = readout
        self.ansatz = ansatz
        self.rotation = rotation
        self.input_scale = float(input_scale)
        self.qubit_budget = qubit_budget
        super().__init__(c, engine=engine, engine_options=engine_options, seed=seed, device=device, dtype=dtype)
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_features, device=self.weight.device, dtype=self.weight.dtype))
        else:
            self.register_parameter("bias", None)

    # ------------------------------------------------------------------ construction checks
    @staticmethod
    def _check_readout(readout, out_features: int):
        if isinstance(readout, str):
            if readout not in READOUTS:
                raise ValueError(f"QuantumLinear: readout must be one of {list(READOUTS)} or a list of Pauli "
                                 f"words; got {readout!r}")
            return readout
        words = list(readout) if isinstance(readout, (list, tuple)) else None
        if not words or not all(isinstance(w, str) and w and set(w.upper()) <= set("IXYZ") for w in words):
            raise ValueError(f"QuantumLinear: readout must be one of {list(READOUTS)} or a list of Pauli "
                             f"words such as ['XZ', 'ZZ']; got {readout!r}")
        words = [w.upper() for w in words]
        if len({len(w) for w in words}) != 1:
            raise ValueError(f"QuantumLinear: readout Pauli words must all have one letter per qubit; got {words}")
        if len(words) != out_features:
            raise ValueError(f"QuantumLinear: readout must list out_features={out_features} Pauli words; "
                             f"got {len(words)}")
        return words

    @staticmethod
    def _check_budget(in_features, out_features, encoding, readout, n_qubits, need_in, need_out, budget):
        if n_qubits <= budget:
            return
        if need_in > budget:
            options = []
            if encoding != "amplitude" and _bits(in_features) <= budget:
                options.append(f"encoding='amplitude' ({_bits(in_features)} qubits)")
            options.append(f"encoding='reupload' (chunks of up to {budget} features re-uploaded on one register)")
            options.append(f"a classical projection in front (e.g. nn.Linear({in_features}, {min(budget, 8)}))")
            raise ValueError(
                f"QuantumLinear: {encoding} encoding of {in_features} features needs {need_in} qubits, more "
                f"than qubit_budget={budget}; use {', '.join(options)}, or raise qubit_budget")
        raise ValueError(
            f"QuantumLinear: readout={readout!r} of {out_features} outputs needs {need_out} qubits, more than "
            f"qubit_budget={budget}; use readout='probs' ({_bits(out_features)} qubits), readout='pauli' "
            f"({_bits(out_features + 1)} qubits), or raise qubit_budget")

    @staticmethod
    def _check_fits(in_features, out_features, encoding, readout, n):
        if encoding == "angle" and in_features > n:
            raise ValueError(
                f"QuantumLinear: with angle encoding in_features must be <= n_qubits ({n}); got {in_features}; "
                f"use encoding='amplitude' or 'reupload' for wider inputs")
        if encoding == "amplitude" and in_features > 2**n:
            raise ValueError(
                f"QuantumLinear: with amplitude encoding in_features must be <= 2**n_qubits ({2**n}); "
                f"got {in_features}")
        cap = {"z": n, "probs": 2**n, "pauli": 2**n - 1}.get(readout) if isinstance(readout, str) else None
        if cap is not None and out_features > cap:
            hint = "; use readout='probs' or 'pauli' for more outputs" if readout == "z" else ""
            raise ValueError(
                f"QuantumLinear: with readout={readout!r} out_features must be <= {cap} on {n} qubits; "
                f"got {out_features}{hint}")
        if cap is None and len(readout[0]) != n:
            raise ValueError(f"QuantumLinear: readout Pauli words must have n_qubits={n} letters; "
                             f"got {len(readout[0])}")

    @staticmethod
    def _measure(c: Circuit, readout, out_features: int) -> None:
        if readout == "z":
            c.measure_z(range(out_features))
        elif readout == "probs":
            c.measure_probs(range(_bits(out_features)))
        else:
            for word in (z_words(c.n_qubits, out_features) if readout == "pauli" else readout):
                c.measure_pauli(word)

    # ------------------------------------------------------------------ torch.nn
    @classmethod
    def from_linear(cls, linear: nn.Linear, *, copy_bias: bool = True, **kwargs) -> "QuantumLinear":
        """A QuantumLinear with ``linear``'s ``in_features``, ``out_features``, bias flag, device
        and dtype; with ``copy_bias`` the classical bias is copied as a warm start (the weights
        have no quantum counterpart).  ``kwargs`` go to the constructor.

        Example:
            >>> import torch, qnn
            >>> q = qnn.QuantumLinear.from_linear(torch.nn.Linear(3, 2), seed=0)
            >>> (q.in_features, q.out_features, q.bias.shape)
            (3, 2, torch.Size([2]))
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"QuantumLinear.from_linear: expected an nn.Linear; got {type(linear).__name__}")
        return from_classical(cls, linear, (linear.in_features, linear.out_features), kwargs, copy_bias)

    def reset_parameters(self) -> None:
        """Re-draw ``weight`` (see :class:`QuantumLayer`) and zero ``bias``."""
        super().reset_parameters()
        if getattr(self, "bias", None) is not None:
            with torch.no_grad():
                self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.readout == "probs" and out.shape[-1] != self.out_features:
            out = out[..., : self.out_features]
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out

    def extra_repr(self) -> str:
        s = (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
             f"n_qubits={self.n_qubits}, n_layers={self.n_layers}, encoding={self.encoding}, ")
        if self.readout != "z":
            s += f"readout={self.readout}, "
        if self.ansatz != "strongly_entangling":
            s += f"ansatz={self.ansatz}, "
        return s + f"engine={self._engine_name()}, n_weights={self.weight.numel()}"
