"""qnn circuits to and from Qiskit ``QuantumCircuit`` objects.

Qubit order: qnn wire ``w`` is Qiskit qubit ``w`` (so a drawing looks the same), but qnn reads a
basis index with wire 0 as the **most** significant bit while Qiskit reads qubit 0 as the
**least** significant bit; :func:`qnn_state_to_qiskit` converts state vectors (a bit reversal,
its own inverse).

qnn circuits carry no global phase: a Qiskit circuit's ``global_phase`` (and the phases its
transpilation introduces) is dropped on import, so imported states equal Qiskit's up to that
one phase; expectations, probabilities and gradients are unaffected.
"""

from __future__ import annotations

import re
import warnings

import numpy as np

from qnn._optional import import_optional
from qnn.circuit import Circuit, Param
from qnn.interop._gates import QISKIT_BASIS, QNN_FROM_QISKIT, qiskit_append

__all__ = ["to_qiskit", "from_qiskit", "qnn_state_to_qiskit", "append_state_prep"]

_EXPORT_NAME = re.compile(r"^_?([xw])_(\d+)_$")  # the exporter's vectors as QASM 3 writes them
_SKIP = ("barrier", "delay")


def qnn_state_to_qiskit(state: np.ndarray, n_qubits: int) -> np.ndarray:
    """Reorder a state vector (..., 2**n) from qnn order (wire 0 most significant) to Qiskit
    order (qubit 0 least significant) with qnn wire w = Qiskit qubit w: a bit reversal (so it
    also converts back)."""
    lead = state.shape[:-1]
    t = state.reshape(lead + (2,) * n_qubits)
    k = len(lead)
    perm = tuple(range(k)) + tuple(k + n_qubits - 1 - i for i in range(n_qubits))
    return np.ascontiguousarray(t.transpose(perm)).reshape(lead + (2**n_qubits,))


def append_state_prep(qc, circuit: Circuit, state, owner: str = "to_qiskit") -> None:
    """Append a ``StatePreparation`` of ``state`` (qnn order) for an amplitude-embedded
    circuit; a circuit without one must get ``state=None``."""
    if circuit.state_prep is None:
        if state is not None:
            raise ValueError(f"{owner}: state given but the circuit has no amplitude embedding")
        return
    if state is None:
        raise ValueError(
            f"{owner}: the circuit starts with an amplitude embedding; pass state=<normalised "
            f"vector of length {2**circuit.n_qubits}> (Qiskit state preparation takes no parameters)"
        )
    from qiskit.circuit.library import StatePreparation

    state = np.asarray(state, dtype=np.float64).reshape(-1)
    if state.shape[0] != 2**circuit.n_qubits:
        raise ValueError(f"{owner}: state must have length {2**circuit.n_qubits}; got {state.shape[0]}")
    qc.append(StatePreparation(qnn_state_to_qiskit(state, circuit.n_qubits)), list(range(circuit.n_qubits)))


def to_qiskit(circuit: Circuit, *, state: np.ndarray | None = None):
    """Export a qnn circuit as a parametrised Qiskit ``QuantumCircuit``.

    Angles become ``scale * x[i] + offset`` / ``scale * w[k] + offset`` with ``x``, ``w``
    ``ParameterVector`` objects of length ``n_inputs`` / ``n_weights``.  Measurements are not
    appended (qnn measurements are expectations and probabilities, not instructions).

    Args:
        circuit: the qnn circuit.
        state: for an amplitude-embedded circuit, the normalised state (qnn basis order) to
            prepare; required there, because state preparation cannot take Qiskit parameters.

    Returns:
        ``(QuantumCircuit, x, w)``.

    Example:
        >>> import qnn
        >>> c = qnn.Circuit(1); _ = c.new_inputs(1); c.add("RX", 0, [qnn.Param.input(0, 2.0)])
        Circuit(n_qubits=1, gates=1, inputs=1, weights=0, outputs=0)
        >>> qc, x, w = to_qiskit(c)
        >>> str(qc.data[0].operation.params[0])
        '2*x[0]'
    """
    qiskit = import_optional("qiskit", feature="to_qiskit")
    if not isinstance(circuit, Circuit):
        raise TypeError(f"to_qiskit: circuit must be a qnn.Circuit; got {type(circuit).__name__}")
    x = qiskit.circuit.ParameterVector("x", circuit.n_inputs)
    w = qiskit.circuit.ParameterVector("w", circuit.n_weights)
    qc = qiskit.QuantumCircuit(circuit.n_qubits)
    append_state_prep(qc, circuit, state)
    for g in circuit.gates:
        angles = []
        for p in g.params:
            if p.kind == "const":
                angles.append(p.offset)
            else:
                src = x if p.kind == "input" else w
                expr = src[p.index] if p.scale == 1.0 else p.scale * src[p.index]
                angles.append(expr + p.offset if p.offset != 0.0 else expr)
        qiskit_append(qc, g.name, g.wires, angles)
    return qc, x, w


# ---------------------------------------------------------------------------- import
def _param_key(p) -> str:
    return p.name if hasattr(p, "name") else str(p)


def _export_slot(p):
    """``("x" | "w", index)`` for a parameter named as :func:`to_qiskit` names them."""
    vec = getattr(p, "vector", None)
    if vec is not None and vec.name in ("x", "w"):
        return vec.name, int(p.index)
    m = _EXPORT_NAME.match(p.name)
    return (m.group(1), int(m.group(2))) if m else None


def _assign(qc, inputs, weights):
    """Map each Qiskit parameter name -> ("input" | "weight", index); ``(map, n_inputs, n_weights)``."""
    params = list(qc.parameters)
    by_name = {p.name: p for p in params}

    def resolve(seq, what):
        out = []
        for item in seq:
            key = item if isinstance(item, str) else _param_key(item)
            if key not in by_name:
                raise ValueError(f"from_qiskit: {what} must name parameters of the circuit "
                                 f"{sorted(by_name)}; got {key!r}")
            out.append(key)
        if len(set(out)) != len(out):
            raise ValueError(f"from_qiskit: {what} must not repeat a parameter; got {out}")
        return out

    mapping: dict[str, tuple[str, int]] = {}
    if inputs is None:
        slots = {p.name: _export_slot(p) for p in params}
        for name, s in slots.items():
            if s is not None and s[0] == "x":
                mapping[name] = ("input", s[1])
        n_in = 1 + max((i for k, i in mapping.values()), default=-1)
    else:
        for i, name in enumerate(resolve(inputs, "inputs")):
            mapping[name] = ("input", i)
        n_in = len(mapping)
    rest = [p for p in params if p.name not in mapping]
    if weights is None:
        exported = [(p, _export_slot(p)) for p in rest]
        by_slot = [(p, s[1]) for p, s in exported if s is not None and s[0] == "w"]
        n_w = 1 + max((i for _, i in by_slot), default=-1)
        for p, i in by_slot:
            mapping[p.name] = ("weight", i)
        for p in rest:
            if p.name not in mapping:
                mapping[p.name] = ("weight", n_w)
                n_w += 1
    else:
        names = resolve(weights, "weights")
        clash = [n for n in names if n in mapping]
        if clash:
            raise ValueError(f"from_qiskit: a parameter cannot be an input and a weight; got {clash}")
        for k, name in enumerate(names):
            mapping[name] = ("weight", k)
        missing = [p.name for p in rest if p.name not in mapping]
        if missing:
            raise ValueError(f"from_qiskit: every parameter must be an input or a weight; "
                             f"{missing} are neither")
        n_w = len(names)
    return mapping, n_in, n_w


def _angle(value, mapping) -> Param:
    """A Qiskit gate angle (a number or an expression affine in one parameter) as a Param."""
    params = getattr(value, "parameters", None)
    if not params:
        v = complex(value) if not isinstance(value, (int, float)) else value
        if isinstance(v, complex):
            if abs(v.imag) > 1e-12:
                raise ValueError(f"from_qiskit: gate angles must be real; got {value}")
            v = v.real
        return Param.const(float(v))
    if len(params) != 1:
        raise ValueError(f"from_qiskit: each gate angle must depend on one parameter "
                         f"(qnn angles are scale * parameter + offset); got {value}")
    (p,) = params
    scale = value.gradient(p)
    if getattr(scale, "parameters", None):
        raise ValueError(f"from_qiskit: gate angles must be affine in their parameter "
                         f"(scale * parameter + offset); got {value}")
    offset = value.bind({p: 0.0})
    kind, index = mapping[p.name]
    return Param(kind, index, float(complex(scale).real), float(complex(offset).real))


def _qnn_gate(op, n_qargs):
    """The qnn gate name of a Qiskit operation, or None."""
    name = QNN_FROM_QISKIT.get(op.name)
    if name is not None:
        return name
    base = getattr(op, "base_gate", None)
    if base is not None and base.name == "ry" and n_qargs >= 2 \
            and op.ctrl_state == 2 ** op.num_ctrl_qubits - 1:
        return "CRY" if n_qargs == 2 else "MCRY"
    return None


def from_qiskit(qc, inputs=None, weights=None, *, warn: bool = True) -> Circuit:
    """A qnn :class:`~qnn.Circuit` from a Qiskit ``QuantumCircuit``.

    Every gate angle must be a number or an affine expression ``a * p + b`` of one Qiskit
    ``Parameter``; each parameter becomes a qnn input or weight:

    * ``inputs``: the parameters (objects or names), in input order, that become inputs; the
      rest become weights.  Default: the parameters :func:`to_qiskit` calls ``x[i]`` (or their
      OpenQASM 3 names ``_x_i_``) are inputs ``i``; none when there are no such.
    * ``weights``: the weight order.  Default: ``w[k]`` / ``_w_k_`` at ``k``, then every other
      parameter in the circuit's (name-sorted) parameter order, in one block ``"qiskit"``.

    Gates outside qnn's gate set are transpiled to it (``optimization_level=0``) with a
    ``UserWarning`` naming them (``warn=False`` silences it).  Barriers are dropped; final
    ``measure`` instructions become one ``measure_probs`` over the measured qubits, ordered so
    that the outcome index equals Qiskit's classical-register integer (highest clbit first).
    The global phase is dropped (see the module docstring).

    Example:
        >>> import qiskit
        >>> from qiskit.circuit import Parameter
        >>> a, b = Parameter("a"), Parameter("b")
        >>> qc = qiskit.QuantumCircuit(2); _ = qc.ry(2 * a, 0); _ = qc.cx(0, 1); _ = qc.rz(b + 1, 1)
        >>> c = from_qiskit(qc, inputs=["a"])
        >>> (c.n_inputs, c.n_weights, [g.name for g in c.gates])
        (1, 1, ['RY', 'CNOT', 'RZ'])
    """
    qiskit = import_optional("qiskit", feature="from_qiskit")
    if not isinstance(qc, qiskit.QuantumCircuit):
        raise TypeError(f"from_qiskit: qc must be a qiskit.QuantumCircuit; got {type(qc).__name__}")
    if qc.num_qubits < 1:
        raise ValueError(f"from_qiskit: the circuit must have at least one qubit; got {qc.num_qubits}")
    foreign = sorted({ins.operation.name for ins in qc.data
                      if ins.operation.name not in _SKIP + ("measure",)
                      and _qnn_gate(ins.operation, len(ins.qubits)) is None})
    if foreign:
        if warn:
            warnings.warn(f"from_qiskit: gates {foreign} are not in qnn's gate set; transpiled to "
                          f"{list(QISKIT_BASIS)}", UserWarning, stacklevel=2)
        qc = qiskit.transpile(qc, basis_gates=list(QISKIT_BASIS), optimization_level=0)
    mapping, n_in, n_w = _assign(qc, inputs, weights)
    c = Circuit(qc.num_qubits)
    c.new_inputs(n_in)
    if n_w:
        c.new_weights("qiskit", (n_w,))
    measured: dict[int, int] = {}  # clbit -> qubit
    for ins in qc.data:
        op = ins.operation
        qubits = [qc.find_bit(q).index for q in ins.qubits]
        if op.name in _SKIP:
            continue
        if op.name == "measure":
            measured[qc.find_bit(ins.clbits[0]).index] = qubits[0]
            continue
        if set(qubits) & set(measured.values()):
            raise ValueError(f"from_qiskit: measurements must come last; got {op.name!r} after a "
                             f"measurement on qubits {qubits}")
        if getattr(op, "condition", None) is not None:
            raise ValueError(f"from_qiskit: classically conditioned gates are not supported; got {op.name!r}")
        name = _qnn_gate(op, len(qubits))
        if name is None:
            raise ValueError(f"from_qiskit: operation {op.name!r} could not be mapped to qnn's gate set "
                             f"{list(QISKIT_BASIS)}")
        c.add(name, qubits, [_angle(v, mapping) for v in op.params])
    if measured:
        c.measure_probs([measured[k] for k in sorted(measured, reverse=True)])
    return c
