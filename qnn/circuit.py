"""Engine-independent circuit description.

A :class:`Circuit` is a list of gates on ``n_qubits`` wires, an optional amplitude
state preparation, and a list of measurements.  Every gate angle is bound to one of

* an **input** feature (``Param.input(i)``: ``inputs[..., i] * scale + offset``),
* a trainable **weight** (``Param.weight(k)``: ``weights[k] * scale + offset``), or
* a **constant** (``Param.const(v)``).

Weights live in one flat vector of length ``circuit.n_weights``; the builders
(:func:`strongly_entangling_layers` ...) allocate named, shaped blocks inside it and
record them in ``circuit.weight_blocks``.

Conventions (the same as PennyLane): wire 0 is the most significant bit of a basis
index, ``RX(t) = exp(-i t X / 2)``, ``Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)``,
``PhaseShift(t) = diag(1, e^{it})``, controlled gates list their control wire(s) first.

Example
-------
>>> import qnn
>>> c = qnn.Circuit(3)
>>> qnn.angle_embedding(c, rotation="Y")  # returns the input indices it reserved
[0, 1, 2]
>>> w = qnn.strongly_entangling_layers(c, n_layers=2)
>>> _ = c.measure_z()  # measure_z returns the circuit, for chaining
>>> (c.n_inputs, c.n_weights, c.n_outputs)
(3, 18, 3)
"""

from __future__ import annotations

import math
import numbers
import operator
from dataclasses import dataclass
from typing import ClassVar, Iterable, Sequence

__all__ = [
    "Param",
    "Gate",
    "PauliExp",
    "Measurement",
    "StatePrep",
    "Circuit",
    "GATES",
    "angle_embedding",
    "amplitude_embedding",
    "strongly_entangling_layers",
    "basic_entangler_layers",
    "hardware_efficient_layers",
    "ANSATZE",
]


def _int(value, what: str, owner: str = "Circuit", minimum: int | None = None) -> int:
    """``value`` as an int (Python or numpy integer; not bool, not float), >= ``minimum``."""
    if isinstance(value, bool):
        raise TypeError(f"{owner}: {what} must be an int; got {value!r}")
    try:
        i = operator.index(value)
    except TypeError:
        raise TypeError(f"{owner}: {what} must be an int; got {value!r}") from None
    if minimum is not None and i < minimum:
        raise ValueError(f"{owner}: {what} must be an int >= {minimum}; got {i}")
    return i


def _real(value, what: str, owner: str = "Circuit") -> float:
    """``value`` as a finite float (any real number type; not bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {what} must be a real number; got {value!r}")
    f = float(value)
    if not math.isfinite(f):
        raise ValueError(f"{owner}: {what} must be finite; got {f}")
    return f


def _name(value, what: str, owner: str = "Circuit") -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{owner}: {what} must be a non-empty str; got {value!r}")
    return value


PARAM_KINDS = ("input", "weight", "const")


@dataclass(frozen=True)
class Param:
    """Where a gate angle comes from: ``source[index] * scale + offset``.

    ``kind`` is ``"input"`` or ``"weight"`` (``index >= 0``) or ``"const"`` (``index = -1``,
    the angle is ``offset``); ``scale`` and ``offset`` are finite reals.  Anything else raises
    at construction."""

    kind: str  # "input" | "weight" | "const"
    index: int = -1
    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self):
        if self.kind not in PARAM_KINDS:
            raise ValueError(f"Param: kind must be one of {list(PARAM_KINDS)}; got {self.kind!r}")
        lo = -1 if self.kind == "const" else 0
        index = _int(self.index, "index", "Param", minimum=lo)
        if self.kind == "const" and index != -1:
            raise ValueError(f"Param: a constant has no index (index=-1); got {index}")
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "scale", _real(self.scale, "scale", "Param"))
        object.__setattr__(self, "offset", _real(self.offset, "offset", "Param"))

    @staticmethod
    def input(index: int, scale: float = 1.0, offset: float = 0.0) -> "Param":
        return Param("input", index, scale, offset)

    @staticmethod
    def weight(index: int, scale: float = 1.0, offset: float = 0.0) -> "Param":
        return Param("weight", index, scale, offset)

    @staticmethod
    def const(value: float) -> "Param":
        return Param("const", -1, 0.0, value)


# name -> (number of wires (None = any >= 2, for multi-controlled), number of angles)
GATES: dict[str, tuple[int | None, int]] = {
    "RX": (1, 1),
    "RY": (1, 1),
    "RZ": (1, 1),
    "Rot": (1, 3),
    "PhaseShift": (1, 1),
    "H": (1, 0),
    "X": (1, 0),
    "Y": (1, 0),
    "Z": (1, 0),
    "CNOT": (2, 0),
    "CZ": (2, 0),
    "CRX": (2, 1),
    "CRY": (2, 1),
    "CRZ": (2, 1),
    "SWAP": (2, 0),
    "MCRY": (None, 1),  # controls = wires[:-1], target = wires[-1]
}


def _wire_tuple(wires, what: str, owner: str = "Circuit", n_qubits: int | None = None) -> tuple[int, ...]:
    """``wires`` (an int or a sequence of ints) as a tuple of distinct ints in range."""
    if isinstance(wires, (str, bytes)) or not isinstance(wires, Iterable):
        wires = (wires,)
    out = []
    for w in wires:
        w = _int(w, f"{what} wire", owner)
        if w < 0 or (n_qubits is not None and w >= n_qubits):
            hi = "" if n_qubits is None else f", {n_qubits - 1}"
            raise ValueError(f"{owner}: {what} wire must be in [0{hi}]; got {w}")
        out.append(w)
    out = tuple(out)
    if len(set(out)) != len(out):
        raise ValueError(f"{owner}: {what} wires must be distinct; got {out}")
    return out


@dataclass(frozen=True)
class Gate:
    """One gate: a name from :data:`GATES`, its wires (controls first) and one :class:`Param`
    per angle; checked at construction (wire ranges are checked by :meth:`Circuit.add`)."""

    name: str
    wires: tuple[int, ...]
    params: tuple[Param, ...] = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or self.name not in GATES:
            raise ValueError(f"Gate: unknown gate {self.name!r}; valid gates are {sorted(GATES)}")
        wires = _wire_tuple(self.wires, self.name, "Gate")
        n_wires, n_params = GATES[self.name]
        if n_wires is None:
            if len(wires) < 2:
                raise ValueError(f"Gate: {self.name} needs >= 2 wires (controls + target); got {len(wires)}")
        elif len(wires) != n_wires:
            raise ValueError(f"Gate: {self.name} acts on {n_wires} wire(s); got {len(wires)}")
        params = tuple(self.params)
        if len(params) != n_params or not all(isinstance(p, Param) for p in params):
            raise ValueError(f"Gate: {self.name} takes {n_params} Param(s); got {params!r}")
        object.__setattr__(self, "wires", wires)
        object.__setattr__(self, "params", params)


#: Most wires of one :class:`PauliExp` gate (its generator is a dense 2^m x 2^m matrix).
PAULI_EXP_MAX_WIRES = 8


def _pauli_words(words, n_wires: int, owner: str) -> tuple[str, ...]:
    """``words`` as a tuple of distinct non-identity Pauli words of ``n_wires`` letters."""
    if isinstance(words, (str, bytes)) or not isinstance(words, Iterable):
        raise TypeError(f"{owner}: PauliExp words must be a sequence of Pauli words (str); got {words!r}")
    words = tuple(words)
    if not words:
        raise ValueError(f"{owner}: PauliExp needs at least one Pauli word; got none")
    for w in words:
        if not isinstance(w, str) or len(w) != n_wires or set(w) - set("IXYZ"):
            raise ValueError(
                f"{owner}: each PauliExp word must be a str of I/X/Y/Z with one letter per wire ({n_wires}); "
                f"got {w!r}")
        if set(w) == {"I"}:
            raise ValueError(f"{owner}: PauliExp words must not be the identity (a global phase); got {w!r}")
    if len(set(words)) != len(words):
        dup = sorted({w for w in words if words.count(w) > 1})
        raise ValueError(f"{owner}: PauliExp words must be distinct; got {dup} more than once")
    return words


@dataclass(frozen=True)
class PauliExp:
    """The Pauli-generated gate ``exp(i sum_k p_k P_{words[k]})`` on ``wires``.

    ``words[k]`` is a Pauli word with one letter per wire (``words[k][j]`` acts on
    ``wires[j]``; the first wire is the most significant bit of the gate's matrix), each angle
    ``p_k`` a :class:`Param` (input, weight or constant, with scale and offset).  There is no
    1/2 factor: ``PauliExp((0,), ("Z",), (Param.const(t),))`` is ``RZ(-2t)``.  With all
    4^m - 1 words this is PennyLane's ``SpecialUnitary``.  Checked at construction (wire
    ranges and reserved indices by :meth:`Circuit.add_pauli_exp`).

    Example:
        >>> g = PauliExp((0, 1), ("XY", "ZI"), (Param.weight(0), Param.const(0.5)))
        >>> g.name, g.wires, g.words
        ('PauliExp', (0, 1), ('XY', 'ZI'))
    """

    wires: tuple[int, ...]
    words: tuple[str, ...]
    params: tuple[Param, ...]
    name: ClassVar[str] = "PauliExp"

    def __post_init__(self):
        wires = _wire_tuple(self.wires, "PauliExp", "PauliExp")
        if not 1 <= len(wires) <= PAULI_EXP_MAX_WIRES:
            raise ValueError(f"PauliExp: wires must be 1..{PAULI_EXP_MAX_WIRES} wires; got {len(wires)}")
        words = _pauli_words(self.words, len(wires), "PauliExp")
        if isinstance(self.params, (str, bytes, Param)) or not isinstance(self.params, Iterable):
            raise TypeError(f"PauliExp: params must be a sequence of Param; got {self.params!r}")
        params = tuple(self.params)
        if len(params) != len(words) or not all(isinstance(p, Param) for p in params):
            raise ValueError(f"PauliExp: needs one Param per word ({len(words)}); got {params!r}")
        object.__setattr__(self, "wires", wires)
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "params", params)





def _hermitian_matrix(matrix, n_wires: int, owner: str) -> tuple[tuple[complex, ...], ...]:
    """``matrix`` as a (2^k x 2^k) tuple of tuples of complex, checked finite and Hermitian."""
    import numpy as np

    try:
        a = np.asarray(matrix, dtype=np.complex128)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: hermitian matrix must be a 2-D array of numbers; got {type(matrix).__name__}") from None
    d = 2**n_wires
    if a.shape != (d, d):
        raise ValueError(f"{owner}: hermitian matrix on {n_wires} wire(s) must be {d}x{d}; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{owner}: hermitian matrix must be finite; got NaN or inf entries")
    err = float(np.abs(a - a.conj().T).max())
    if err > 1e-10 * max(1.0, float(np.abs(a).max())):
        raise ValueError(f"{owner}: hermitian matrix must equal its conjugate transpose; got max |M - M^H| = {err:.3g}")
    a = (a + a.conj().T) / 2
    return tuple(tuple(complex(v) for v in row) for row in a)

MEASUREMENT_KINDS = ("expval", "probs", "hermitian")


@dataclass(frozen=True)
class Measurement:
    """``kind`` is ``"expval"`` (a Pauli word on ``wires``), ``"probs"`` (basis-state
    probabilities of ``wires``, wire order = bit order, first wire most significant) or
    ``"hermitian"`` (the expectation value of the Hermitian ``matrix`` on ``wires``, in that
    wire order, first wire most significant; stored as a tuple of tuples of complex)."""

    kind: str
    wires: tuple[int, ...]
    pauli: str = ""  # for expval: one letter of I/X/Y/Z per wire
    matrix: tuple = ()  # for hermitian: (2^k x 2^k) rows of complex

    def __post_init__(self):
        if self.kind not in MEASUREMENT_KINDS:
            raise ValueError(f"Measurement: kind must be one of {list(MEASUREMENT_KINDS)}; got {self.kind!r}")
        wires = _wire_tuple(self.wires, self.kind, "Measurement")
        if not wires:
            raise ValueError(f"Measurement: {self.kind} needs at least one wire; got none")
        if self.kind == "expval":
            if not isinstance(self.pauli, str) or len(self.pauli) != len(wires) or set(self.pauli) - set("IXYZ"):
                raise ValueError(
                    f"Measurement: expval needs a Pauli word of I/X/Y/Z with one letter per wire "
                    f"({len(wires)}); got {self.pauli!r}")
        elif self.pauli:
            raise ValueError(f"Measurement: {self.kind} takes no Pauli word; got {self.pauli!r}")
        if self.kind == "hermitian":
            object.__setattr__(self, "matrix", _hermitian_matrix(self.matrix, len(wires), "Measurement"))
        elif not (isinstance(self.matrix, tuple) and self.matrix == ()):
            raise ValueError(f"Measurement: {self.kind} takes no matrix; got {self.matrix!r}")
        object.__setattr__(self, "wires", wires)

    @property
    def n_outputs(self) -> int:
        return 2 ** len(self.wires) if self.kind == "probs" else 1

    def __repr__(self) -> str:
        extra = f", pauli={self.pauli!r}" if self.kind == "expval" else ""
        extra += f", matrix={self.matrix!r}" if self.kind == "hermitian" else ""
        return f"Measurement(kind={self.kind!r}, wires={self.wires!r}{extra})"


@dataclass(frozen=True)
class StatePrep:
    """Amplitude embedding of inputs ``[start, start + n_features)`` padded with ``pad``
    to ``2**n_qubits`` values and L2-normalised.  An all-zero vector is an error."""

    start: int
    n_features: int
    pad: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "start", _int(self.start, "start", "StatePrep", minimum=0))
        object.__setattr__(self, "n_features", _int(self.n_features, "n_features", "StatePrep", minimum=1))
        object.__setattr__(self, "pad", _real(self.pad, "pad", "StatePrep"))


@dataclass
class WeightBlock:
    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class Circuit:
    """A parameterised circuit that no engine owns.

    Args:
        n_qubits: number of wires (>= 1).

    Attributes:
        gates: ordered list of :class:`Gate` and :class:`PauliExp`.
        state_prep: optional :class:`StatePrep` applied to ``|0...0>`` before the gates.
        measurements: ordered list of :class:`Measurement`; outputs are concatenated.
        n_inputs / n_weights / n_outputs: sizes of the input vector, the flat weight
            vector and the output vector.
        weight_blocks: named shaped blocks of the flat weight vector.
    """

    def __init__(self, n_qubits: int):
        if isinstance(n_qubits, bool) or not isinstance(n_qubits, numbers.Integral) or n_qubits < 1:
            raise ValueError(f"Circuit: n_qubits must be a positive int; got {n_qubits!r}")
        self.n_qubits = int(n_qubits)
        self.gates: list[Gate] = []
        self.state_prep: StatePrep | None = None
        self.measurements: list[Measurement] = []
        self.weight_blocks: list[WeightBlock] = []
        self.n_inputs = 0
        self.n_weights = 0

    # ------------------------------------------------------------------ building
    def _check_wires(self, wires: Sequence[int] | int, what: str) -> tuple[int, ...]:
        return _wire_tuple(wires, what, "Circuit", self.n_qubits)

    def new_inputs(self, n: int) -> list[int]:
        """Reserve ``n`` (>= 0) further input features; returns their indices."""
        n = _int(n, "the number of new inputs", minimum=0)
        idx = list(range(self.n_inputs, self.n_inputs + n))
        self.n_inputs += n
        return idx

    def new_weights(self, name: str, shape: Sequence[int]) -> list[int]:
        """Reserve a weight block called ``name`` (unique) of ``shape`` (ints >= 0); returns
        its flat indices (row-major)."""
        name = _name(name, "weight block name")
        if any(b.name == name for b in self.weight_blocks):
            raise ValueError(f"Circuit: weight block name must be unique; got {name!r} again")
        if isinstance(shape, (str, bytes)) or not isinstance(shape, Iterable):
            raise TypeError(f"Circuit: weight block shape must be a sequence of ints; got {shape!r}")
        shape = tuple(_int(d, "weight block dimension", minimum=0) for d in shape)
        block = WeightBlock(name, shape, self.n_weights)
        self.weight_blocks.append(block)
        self.n_weights += block.size
        return list(range(block.offset, block.offset + block.size))

    def _unused_name(self, prefix: str) -> str:
        names = {b.name for b in self.weight_blocks}
        k = len(self.weight_blocks)
        while f"{prefix}{k}" in names:
            k += 1
        return f"{prefix}{k}"

    def add(self, name: str, wires: Sequence[int] | int, params: Iterable[Param | float] = ()) -> "Circuit":
        """Append a gate.  Numbers in ``params`` become constants."""
        if not isinstance(name, str) or name not in GATES:
            raise ValueError(
                f"Circuit: unknown gate {name!r}; valid gates are {sorted(GATES)}"
            )
        wires = self._check_wires(wires, name)
        n_wires, n_params = GATES[name]
        if n_wires is None:
            if len(wires) < 2:
                raise ValueError(f"Circuit: {name} needs >= 2 wires (controls + target); got {len(wires)}")
        elif len(wires) != n_wires:
            raise ValueError(f"Circuit: {name} acts on {n_wires} wire(s); got {len(wires)}")
        if isinstance(params, (str, bytes, Param)) or not isinstance(params, Iterable):
            raise TypeError(f"Circuit: {name} params must be a sequence of Param or numbers; got {params!r}")
        ps = tuple(p if isinstance(p, Param) else Param.const(_real(p, f"{name} constant angle")) for p in params)
        if len(ps) != n_params:
            raise ValueError(f"Circuit: {name} takes {n_params} angle(s); got {len(ps)}")
        self._check_reserved(ps)
        self.gates.append(Gate(name, wires, ps))
        return self

    def _check_reserved(self, ps: tuple[Param, ...]) -> None:
        for p in ps:
            if p.kind == "input" and not 0 <= p.index < self.n_inputs:
                raise ValueError(f"Circuit: input index {p.index} not reserved (n_inputs={self.n_inputs})")
            if p.kind == "weight" and not 0 <= p.index < self.n_weights:
                raise ValueError(f"Circuit: weight index {p.index} not reserved (n_weights={self.n_weights})")

    def add_pauli_exp(self, wires: Sequence[int] | int, words: Sequence[str],
                      params: Iterable[Param | float]) -> "Circuit":
        """Append ``exp(i sum_k p_k P_{words[k]})`` on ``wires`` (a :class:`PauliExp`):
        ``words[k]`` has one letter of I/X/Y/Z per wire (distinct, not all I), ``params[k]``
        is a :class:`Param` or a number (a constant).  No 1/2 factor.

        Example:
            >>> c = Circuit(2); _ = c.new_weights("theta", (2,))
            >>> c.add_pauli_exp([0, 1], ["XY", "ZZ"], [Param.weight(0), Param.weight(1)]).gates[0].words
            ('XY', 'ZZ')
        """
        wires = self._check_wires(wires, "PauliExp")
        if not 1 <= len(wires) <= PAULI_EXP_MAX_WIRES:
            raise ValueError(f"Circuit: PauliExp acts on 1..{PAULI_EXP_MAX_WIRES} wires; got {len(wires)}")
        words = _pauli_words(words, len(wires), "Circuit")
        if isinstance(params, (str, bytes, Param)) or not isinstance(params, Iterable):
            raise TypeError(f"Circuit: PauliExp params must be a sequence of Param or numbers; got {params!r}")
        ps = tuple(p if isinstance(p, Param) else Param.const(_real(p, "PauliExp constant coefficient"))
                   for p in params)
        if len(ps) != len(words):
            raise ValueError(f"Circuit: PauliExp needs one coefficient per word ({len(words)}); got {len(ps)}")
        self._check_reserved(ps)
        self.gates.append(PauliExp(wires, words, ps))
        return self

    def amplitude_prep(self, n_features: int | None = None, pad: float = 0.0) -> list[int]:
        if self.gates or self.state_prep is not None:
            raise ValueError("Circuit: amplitude embedding must be the first operation")
        dim = 2**self.n_qubits
        n_features = dim if n_features is None else _int(n_features, "amplitude embedding n_features")
        pad = _real(pad, "amplitude embedding pad")
        if not 1 <= n_features <= dim:
            raise ValueError(
                f"Circuit: amplitude embedding on {self.n_qubits} qubits takes 1..{dim} features; got {n_features}"
            )
        idx = self.new_inputs(n_features)
        self.state_prep = StatePrep(idx[0], n_features, pad)
        return idx

    def measure_z(self, wires: Sequence[int] | None = None) -> "Circuit":
        """<Z_i> for each wire (default: every wire)."""
        wires = range(self.n_qubits) if wires is None else wires
        wires = self._check_wires(wires, "measure_z")
        if not wires:
            raise ValueError("Circuit: measure_z needs at least one wire; got none")
        for w in wires:
            self.measurements.append(Measurement("expval", (w,), "Z"))
        return self

    def measure_pauli(self, word: str, wires: Sequence[int] | None = None) -> "Circuit":
        """<P> for a Pauli word such as ``"XZY"`` on ``wires`` (default: the first len(word) wires)."""
        if not isinstance(word, str):
            raise TypeError(f"Circuit: Pauli word must be a str; got {word!r}")
        word = word.upper()
        if not word or any(ch not in "IXYZ" for ch in word):
            raise ValueError(f"Circuit: Pauli word must use letters I, X, Y, Z; got {word!r}")
        wires = range(len(word)) if wires is None else wires
        wires = self._check_wires(wires, "measure_pauli")
        if len(wires) != len(word):
            raise ValueError(f"Circuit: Pauli word {word!r} needs {len(word)} wires; got {len(wires)}")
        self.measurements.append(Measurement("expval", wires, word))
        return self

    def measure_hermitian(self, matrix, wires: Sequence[int] | None = None) -> "Circuit":
        """<M> for a Hermitian ``matrix`` (2^k x 2^k, finite) on ``wires`` (default: the first
        k wires), in that wire order (first wire most significant).

        Example:
            >>> Circuit(1).measure_hermitian([[1, 0], [0, -1]]).n_outputs   # <Z>
            1
        """
        import numpy as np

        try:
            shape = np.shape(matrix)
        except (TypeError, ValueError):
            shape = ()
        if len(shape) != 2 or shape[0] != shape[1] or shape[0] < 2 or shape[0] & (shape[0] - 1):
            raise ValueError(f"Circuit: hermitian matrix must be square with a power-of-2 side >= 2; got shape {shape}")
        k = shape[0].bit_length() - 1
        wires = range(k) if wires is None else wires
        wires = self._check_wires(wires, "measure_hermitian")
        if len(wires) != k:
            raise ValueError(f"Circuit: a {shape[0]}x{shape[0]} hermitian matrix needs {k} wires; got {len(wires)}")
        self.measurements.append(Measurement("hermitian", wires, matrix=_hermitian_matrix(matrix, k, "Circuit")))
        return self

    def measure_probs(self, wires: Sequence[int] | None = None) -> "Circuit":
        wires = range(self.n_qubits) if wires is None else wires
        wires = self._check_wires(wires, "measure_probs")
        if not wires:
            raise ValueError("Circuit: measure_probs needs at least one wire; got none")
        self.measurements.append(Measurement("probs", wires))
        return self

    # ------------------------------------------------------------------ queries
    @property
    def n_outputs(self) -> int:
        return sum(m.n_outputs for m in self.measurements)

    def structure_key(self) -> tuple:
        """A hashable description of everything that fixes the circuit's structure and
        constants (its gates, state preparation, measurements and sizes; not the names of its
        weight blocks): two circuits with equal keys compute the same function of their
        inputs and weights."""
        return (self.n_qubits, tuple(self.gates), self.state_prep, tuple(self.measurements),
                self.n_inputs, self.n_weights)

    @property
    def depth(self) -> int:
        """Circuit depth: the number of time steps when every gate starts as soon as all its
        wires are free (an amplitude embedding counts as one step; measurements none)."""
        level = [1 if self.state_prep is not None else 0] * self.n_qubits
        for g in self.gates:
            t = max(level[w] for w in g.wires) + 1
            for w in g.wires:
                level[w] = t
        return max(level)

    @property
    def n_params(self) -> int:
        """Number of parametrised gate angles (each counts once per use)."""
        return sum(1 for g in self.gates for p in g.params if p.kind != "const")

    def weight_block(self, name: str) -> WeightBlock:
        for b in self.weight_blocks:
            if b.name == name:
                return b
        raise KeyError(f"Circuit: no weight block named {name!r}; have {[b.name for b in self.weight_blocks]}")

    # ------------------------------------------------------------------ interop (qnn.interop)
    @classmethod
    def from_qiskit(cls, qc, inputs=None, weights=None, *, warn: bool = True) -> "Circuit":
        """A circuit from a Qiskit ``QuantumCircuit``; see :func:`qnn.interop.from_qiskit`."""
        from qnn.interop import from_qiskit

        return from_qiskit(qc, inputs, weights, warn=warn)

    @classmethod
    def from_pennylane(cls, tape_or_qnode, *args, inputs=None, **kwargs):
        """``(circuit, weights)`` from a PennyLane tape or QNode; see :func:`qnn.interop.from_pennylane`."""
        from qnn.interop import from_pennylane

        return from_pennylane(tape_or_qnode, *args, inputs=inputs, **kwargs)

    @classmethod
    def from_qasm(cls, text: str, inputs=None, weights=None, *, warn: bool = True) -> "Circuit":
        """A circuit from an OpenQASM 3 program; see :func:`qnn.interop.from_qasm`."""
        from qnn.interop import from_qasm

        return from_qasm(text, inputs, weights, warn=warn)

    def to_qiskit(self, *, state=None):
        """``(QuantumCircuit, x, w)``; see :func:`qnn.interop.to_qiskit`."""
        from qnn.interop import to_qiskit

        return to_qiskit(self, state=state)

    def to_qasm(self) -> str:
        """The OpenQASM 3 program of the gates; see :func:`qnn.interop.to_qasm`."""
        from qnn.interop import to_qasm

        return to_qasm(self)

    def __repr__(self) -> str:
        return (
            f"Circuit(n_qubits={self.n_qubits}, gates={len(self.gates)}, inputs={self.n_inputs}, "
            f"weights={self.n_weights}, outputs={self.n_outputs}"
            + (", amplitude_prep" if self.state_prep else "")
            + ")"
        )


# ---------------------------------------------------------------------- builders
def _wires(circuit: Circuit, wires: Sequence[int] | None, owner: str) -> tuple[int, ...]:
    if not isinstance(circuit, Circuit):
        raise TypeError(f"{owner}: circuit must be a qnn.Circuit; got {type(circuit).__name__}")
    wires = tuple(range(circuit.n_qubits)) if wires is None else circuit._check_wires(wires, owner)
    if not wires:
        raise ValueError(f"{owner}: needs at least one wire; got none")
    return wires


def _rotation(rotation, owner: str) -> str:
    if not isinstance(rotation, str) or rotation.upper() not in ("X", "Y", "Z"):
        raise ValueError(f"{owner}: rotation must be 'X', 'Y' or 'Z'; got {rotation!r}")
    return rotation.upper()


def _layers(n_layers, owner: str) -> int:
    return _int(n_layers, "n_layers", owner, minimum=1)


def angle_embedding(
    circuit: Circuit,
    rotation: str = "Y",
    wires: Sequence[int] | None = None,
    scale: float = 1.0,
) -> list[int]:
    """One rotation R{X,Y,Z}(scale * x_i) per wire; reserves ``len(wires)`` inputs."""
    rotation = _rotation(rotation, "angle_embedding")
    wires = _wires(circuit, wires, "angle_embedding")
    scale = _real(scale, "scale", "angle_embedding")
    idx = circuit.new_inputs(len(wires))
    for i, w in zip(idx, wires):
        circuit.add("R" + rotation, w, [Param.input(i, scale)])
    return idx


def amplitude_embedding(circuit: Circuit, n_features: int | None = None, pad: float = 0.0) -> list[int]:
    """Amplitude embedding of ``n_features`` (<= 2**n_qubits) inputs, padded with ``pad`` and
    normalised.  Must come first.  An all-zero (padded) input raises at run time."""
    if not isinstance(circuit, Circuit):
        raise TypeError(f"amplitude_embedding: circuit must be a qnn.Circuit; got {type(circuit).__name__}")
    return circuit.amplitude_prep(n_features, pad)


def _ring(wires: tuple[int, ...], r: int, single_pair: bool = False) -> list[tuple[int, int]]:
    """CNOT pairs (w_i, w_{i+r mod n}); with ``single_pair`` two wires get one CNOT
    (BasicEntanglerLayers), otherwise both directions (StronglyEntanglingLayers)."""
    n = len(wires)
    if n < 2:
        return []
    if n == 2 and single_pair:
        return [(wires[0], wires[1])]
    return [(wires[i], wires[(i + r) % n]) for i in range(n)]


def strongly_entangling_layers(
    circuit: Circuit,
    n_layers: int,
    wires: Sequence[int] | None = None,
    ranges: Sequence[int] | None = None,
    name: str | None = None,
) -> list[int]:
    """PennyLane's ``StronglyEntanglingLayers``: per layer, ``Rot`` on each wire then a CNOT
    ring with range ``r_l`` (default ``l mod n + 1``).  Weights shape ``(n_layers, n_wires, 3)``."""
    owner = "strongly_entangling_layers"
    n_layers = _layers(n_layers, owner)
    wires = _wires(circuit, wires, owner)
    n = len(wires)
    if ranges is None:
        ranges = [(l % (n - 1)) + 1 if n > 1 else 0 for l in range(n_layers)]
    ranges = [_int(r, "range", owner) for r in ranges]
    if len(ranges) != n_layers:
        raise ValueError(f"strongly_entangling_layers: need {n_layers} ranges; got {len(ranges)}")
    if n > 1 and any(not 1 <= r < n for r in ranges):
        raise ValueError(f"{owner}: each range must be in [1, {n - 1}] on {n} wires; got {ranges}")
    idx = circuit.new_weights(name or circuit._unused_name("sel"), (n_layers, n, 3))
    for l in range(n_layers):
        for j, w in enumerate(wires):
            k = idx[(l * n + j) * 3]
            circuit.add("Rot", w, [Param.weight(k), Param.weight(k + 1), Param.weight(k + 2)])
        for a, b in _ring(wires, ranges[l]):
            circuit.add("CNOT", (a, b))
    return idx


strongly_entangling_layers.shape = lambda n_layers, n_qubits: (n_layers, n_qubits, 3)  # type: ignore[attr-defined]


def basic_entangler_layers(
    circuit: Circuit,
    n_layers: int,
    wires: Sequence[int] | None = None,
    rotation: str = "X",
    name: str | None = None,
) -> list[int]:
    """PennyLane's ``BasicEntanglerLayers``: one R{rotation} per wire then a CNOT ring
    (range 1; a single CNOT for 2 wires).  Weights shape ``(n_layers, n_wires)``."""
    n_layers = _layers(n_layers, "basic_entangler_layers")
    rotation = _rotation(rotation, "basic_entangler_layers")
    wires = _wires(circuit, wires, "basic_entangler_layers")
    n = len(wires)
    idx = circuit.new_weights(name or circuit._unused_name("bel"), (n_layers, n))
    for l in range(n_layers):
        for j, w in enumerate(wires):
            circuit.add("R" + rotation, w, [Param.weight(idx[l * n + j])])
        for a, b in _ring(wires, 1, single_pair=True):
            circuit.add("CNOT", (a, b))
    return idx


basic_entangler_layers.shape = lambda n_layers, n_qubits: (n_layers, n_qubits)  # type: ignore[attr-defined]


def hardware_efficient_layers(
    circuit: Circuit,
    n_layers: int,
    wires: Sequence[int] | None = None,
    name: str | None = None,
) -> list[int]:
    """Hardware-efficient ansatz: per layer an RY on each wire, then CZ on neighbouring pairs
    (a linear chain).  Weights shape ``(n_layers, n_wires)``."""
    n_layers = _layers(n_layers, "hardware_efficient_layers")
    wires = _wires(circuit, wires, "hardware_efficient_layers")
    n = len(wires)
    idx = circuit.new_weights(name or circuit._unused_name("hea"), (n_layers, n))
    for l in range(n_layers):
        for j, w in enumerate(wires):
            circuit.add("RY", w, [Param.weight(idx[l * n + j])])
        for j in range(n - 1):
            circuit.add("CZ", (wires[j], wires[j + 1]))
    return idx


hardware_efficient_layers.shape = lambda n_layers, n_qubits: (n_layers, n_qubits)  # type: ignore[attr-defined]

ANSATZE = {
    "strongly_entangling": strongly_entangling_layers,
    "basic_entangler": basic_entangler_layers,
    "hardware_efficient": hardware_efficient_layers,
}
