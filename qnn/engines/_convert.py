"""Convert a :class:`qnn.Circuit` to PennyLane operations and Qiskit circuits.

Two views of the gate angles are used:

* the **symbolic** view (:func:`to_qiskit`): a ``QuantumCircuit`` whose angles are
  expressions ``scale * x[i] + offset`` / ``scale * w[k] + offset`` in two
  ``ParameterVector`` objects ``x`` (inputs) and ``w`` (weights) -- what a user exports;
* the **occurrence** view (:class:`OccurrencePlan`, :func:`to_qiskit_occurrences`): every
  parametrised gate angle gets its own parameter ``theta[p]``.  The engines run this one,
  because parameter-shift rules are stated per gate angle: one weight may feed several gates,
  and the chain rule ``d/dw_k = sum_p scale_p * d/dtheta_p`` puts the pieces back together.

Qubit order: qnn wire ``w`` is Qiskit qubit ``w`` (so a drawing looks the same), but qnn reads a
basis index with wire 0 as the **most** significant bit while Qiskit reads qubit 0 as the
**least** significant bit.  :func:`pauli_observable` places each Pauli letter on its qubit
explicitly, and :func:`qnn_state_to_qiskit` / :func:`probs_qargs` convert basis orders.

Example:
    >>> import qnn
    >>> from qnn.interop import to_qiskit
    >>> c = qnn.Circuit(2)
    >>> _ = qnn.angle_embedding(c)
    >>> _ = qnn.basic_entangler_layers(c, 1)
    >>> qc, x, w = to_qiskit(c)
    >>> (qc.num_qubits, len(x), len(w))
    (2, 2, 2)
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import numpy as np
import torch

from qnn._optional import import_optional
from qnn.circuit import Circuit, Measurement
from qnn.engines._amplitude import amplitude_states
from qnn.interop import append_state_prep, qiskit_append, qnn_state_to_qiskit, to_qiskit
from qnn.interop import pennylane_op as interop_pennylane_op

__all__ = [
    "validate_run_args",
    "validate_many_args",
    "OccurrencePlan",
    "occurrence_plan",
    "occurrence_angles",
    "circuit_key",
    "to_qiskit",
    "to_qiskit_occurrences",
    "pauli_observable",
    "observable",
    "pauli_exp_gates",
    "append_unitary",
    "probs_qargs",
    "qnn_state_to_qiskit",
    "pennylane_gate",
    "pennylane_pauli_exp",
    "pennylane_op",
    "pennylane_measurement",
    "to_pennylane",
    "measurement_groups",
    "add_basis_change",
    "unpack_bits",
    "outputs_from_bits",
    "columns_for",
]

# gates whose angle has generator eigenvalues {0, +-1/2}: the two-term rule does not hold,
# the four-term rule does (controlled rotations).
FOUR_TERM_GATES = frozenset({"CRX", "CRY", "CRZ", "MCRY"})


# ---------------------------------------------------------------------------- checks
def _all_finite(t: torch.Tensor) -> bool:
    """No NaN or inf in ``t``: a finite sum proves it (NaN and inf propagate); only a sum that
    is not finite (also an overflow of finite values) needs the element-wise check."""
    if t.numel() == 0:
        return True
    if t.device.type == "cpu":  # numpy's sum: a fraction of torch's per-call cost on small tensors
        if math.isfinite(float(t.detach().numpy().sum())):
            return True
    elif math.isfinite(float(t.detach().sum())):
        return True
    return bool(torch.isfinite(t).all())


def _check_circuit(owner: str, circuit) -> None:
    if not isinstance(circuit, Circuit):
        raise TypeError(f"{owner}: circuit must be a qnn.Circuit; got {type(circuit).__name__}")


def _check_tensors(owner: str, inputs, weights) -> None:
    for name, t in (("inputs", inputs), ("weights", weights)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{owner}: {name} must be a torch.Tensor; got {type(t).__name__}")
        if t.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{owner}: {name} must be a float32 or float64 tensor; got {t.dtype}")


def _check_finite(owner: str, circuit, inputs, weights, need_measurements: bool) -> None:
    for name, t in (("inputs", inputs), ("weights", weights)):
        if not _all_finite(t):
            raise ValueError(f"{owner}: {name} contain NaN or inf")
    if need_measurements and not circuit.measurements:
        raise ValueError(f"{owner}: the circuit has no measurements (use measure_z / measure_pauli / measure_probs)")


def validate_run_args(owner: str, circuit, inputs, weights, need_measurements: bool = True) -> None:
    """Check the engine contract: ``inputs (B, n_inputs)``, ``weights (n_weights,)``, real
    floating tensors with finite values.  Raises TypeError / ValueError naming what was
    expected and what was given."""
    _check_circuit(owner, circuit)
    _check_tensors(owner, inputs, weights)
    if inputs.dim() != 2 or inputs.shape[1] != circuit.n_inputs:
        raise ValueError(
            f"{owner}: inputs must have shape (batch, n_inputs={circuit.n_inputs}); "
            f"got {tuple(inputs.shape)}"
        )
    if weights.dim() != 1 or weights.shape[0] != circuit.n_weights:
        raise ValueError(
            f"{owner}: weights must have shape (n_weights={circuit.n_weights},); got {tuple(weights.shape)}"
        )
    _check_finite(owner, circuit, inputs, weights, need_measurements)


def validate_many_args(owner: str, circuit, inputs, weights) -> None:
    """Check :meth:`Engine.run_many`'s contract: ``inputs (copies, batch, n_inputs)`` and
    ``weights (copies, n_weights)``, real floating tensors with finite values and the same
    number (>= 1) of copies."""
    _check_circuit(owner, circuit)
    _check_tensors(f"{owner}.run_many", inputs, weights)
    if inputs.dim() != 3 or inputs.shape[2] != circuit.n_inputs:
        raise ValueError(f"{owner}.run_many: inputs must have shape (copies, batch, n_inputs={circuit.n_inputs}); "
                         f"got {tuple(inputs.shape)}")
    if weights.dim() != 2 or weights.shape[1] != circuit.n_weights:
        raise ValueError(f"{owner}.run_many: weights must have shape (copies, n_weights={circuit.n_weights}); "
                         f"got {tuple(weights.shape)}")
    if inputs.shape[0] != weights.shape[0]:
        raise ValueError(f"{owner}.run_many: inputs and weights must have the same number of copies; got "
                         f"{inputs.shape[0]} (inputs {tuple(inputs.shape)}) and {weights.shape[0]} "
                         f"(weights {tuple(weights.shape)})")
    if inputs.shape[0] == 0:
        raise ValueError(f"{owner}.run_many: at least one copy is needed; got inputs {tuple(inputs.shape)}")
    _check_finite(owner, circuit, inputs, weights, True)


def circuit_key(circuit: Circuit) -> tuple:
    """A hashable description of everything that fixes a circuit's structure and constants."""
    return circuit.structure_key()


# ---------------------------------------------------------------------------- occurrences
@dataclass(frozen=True)
class OccurrencePlan:
    """Every non-constant gate angle ("occurrence"), in gate order.

    Attributes:
        gate: (P,) index of the gate in ``circuit.gates``.
        slot: (P,) which angle of that gate (0 except for ``Rot``).
        is_input: (P,) bool, ``True`` for an input feature, ``False`` for a weight.
        index: (P,) input or weight index.
        scale, offset: (P,) the affine map ``angle = scale * value + offset``.
        four_term: (P,) bool, the angle belongs to a controlled rotation.
        pauli_exp: (P,) bool, the angle is a coefficient of a ``PauliExp`` gate (differentiated
            by the generalised shift rule of :mod:`qnn.engines._autograd`, not a two-term rule).
    """

    gate: np.ndarray
    slot: np.ndarray
    is_input: np.ndarray
    index: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    four_term: np.ndarray
    pauli_exp: np.ndarray

    @property
    def n_occurrences(self) -> int:
        return int(self.gate.shape[0])


def occurrence_plan(circuit: Circuit) -> OccurrencePlan:
    rows = []
    for gi, g in enumerate(circuit.gates):
        for si, p in enumerate(g.params):
            if p.kind == "const":
                continue
            rows.append((gi, si, p.kind == "input", p.index, p.scale, p.offset, g.name in FOUR_TERM_GATES,
                         g.name == "PauliExp"))
    cols = list(zip(*rows)) if rows else [()] * 8
    return OccurrencePlan(
        gate=np.asarray(cols[0], dtype=np.int64),
        slot=np.asarray(cols[1], dtype=np.int64),
        is_input=np.asarray(cols[2], dtype=bool),
        index=np.asarray(cols[3], dtype=np.int64),
        scale=np.asarray(cols[4], dtype=np.float64),
        offset=np.asarray(cols[5], dtype=np.float64),
        four_term=np.asarray(cols[6], dtype=bool),
        pauli_exp=np.asarray(cols[7], dtype=bool),
    )


def occurrence_angles(plan: OccurrencePlan, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``theta (B, P)`` with ``theta[:, p] = scale_p * source[index_p] + offset_p`` (differentiable)."""
    B = inputs.shape[0]
    dtype = torch.promote_types(inputs.dtype, weights.dtype)
    P = plan.n_occurrences
    if P == 0:
        return inputs.new_zeros((B, 0), dtype=dtype)
    dev = inputs.device
    idx = torch.as_tensor(plan.index, device=dev)
    is_in = torch.as_tensor(plan.is_input, device=dev)
    x_part = inputs.to(dtype)[:, torch.where(is_in, idx, torch.zeros_like(idx))] if inputs.shape[1] else \
        inputs.new_zeros((B, P), dtype=dtype)
    w_part = weights.to(dtype)[torch.where(is_in, torch.zeros_like(idx), idx)] if weights.shape[0] else \
        weights.new_zeros((P,), dtype=dtype)
    raw = torch.where(is_in.unsqueeze(0), x_part, w_part.unsqueeze(0).expand(B, P))
    scale = torch.as_tensor(plan.scale, dtype=dtype, device=dev)
    offset = torch.as_tensor(plan.offset, dtype=dtype, device=dev)
    return raw * scale + offset


# ---------------------------------------------------------------------------- Qiskit
def pauli_observable(meas: Measurement, n_qubits: int):
    """A ``SparsePauliOp`` for a qnn Pauli-word measurement (letters placed on their qubits)."""
    qi = import_optional("qiskit.quantum_info", feature="Qiskit conversion")
    letters = [(ch, w) for ch, w in zip(meas.pauli, meas.wires) if ch != "I"]
    if not letters:
        return qi.SparsePauliOp("I" * n_qubits)
    word = "".join(ch for ch, _ in letters)
    return qi.SparsePauliOp.from_sparse_list([(word, [w for _, w in letters], 1.0)], num_qubits=n_qubits)


def observable(meas: Measurement, n_qubits: int):
    """A ``SparsePauliOp`` for an ``expval`` (:func:`pauli_observable`) or ``hermitian``
    measurement: ``SparsePauliOp.from_operator`` of the matrix (qnn order, so read by Qiskit on
    the wires reversed), placed on its qubits with ``apply_layout``."""
    if meas.kind != "hermitian":
        return pauli_observable(meas, n_qubits)
    qi = import_optional("qiskit.quantum_info", feature="Qiskit conversion")
    op = qi.SparsePauliOp.from_operator(qi.Operator(np.array(meas.matrix, dtype=np.complex128)))
    return op.apply_layout(list(reversed(meas.wires)), n_qubits)


def probs_qargs(meas: Measurement) -> list[int]:
    """Qiskit ``qargs`` that make ``Statevector.probabilities(qargs)`` index the outcomes in
    qnn order (first listed wire most significant): Qiskit puts ``qargs[0]`` least significant."""
    return list(reversed(meas.wires))


def pauli_exp_gates(circuit: Circuit) -> list[int]:
    """Indices in ``circuit.gates`` of the ``PauliExp`` gates."""
    return [i for i, g in enumerate(circuit.gates) if g.name == "PauliExp"]


def append_unitary(qc, wires: tuple[int, ...], matrix: np.ndarray) -> None:
    """Append a ``UnitaryGate`` of a matrix in qnn order (first wire most significant) on qnn
    ``wires``: Qiskit reads ``qargs[0]`` as the least significant bit, so the qargs are the
    wires reversed.  Transpilation synthesises it exactly (CX + single-qubit gates)."""
    from qiskit.circuit.library import UnitaryGate

    qc.append(UnitaryGate(np.asarray(matrix, dtype=np.complex128), check_input=False), list(reversed(wires)))


def to_qiskit_occurrences(circuit: Circuit, *, state: np.ndarray | None = None, name: str = "theta",
                          unitaries: dict | None = None):
    """Qiskit circuit in the occurrence view: gate angle ``p`` (see :func:`occurrence_plan`) is
    the bare parameter ``theta[p]``; constants are baked in.  A ``PauliExp`` gate has no
    parametrised form: it is the ``UnitaryGate`` of ``unitaries[gate index]`` (its matrix for
    the values being evaluated, qnn order), and its occurrences do not appear in the circuit
    (:func:`columns_for` skips them).  Returns ``(QuantumCircuit, theta)``."""
    qiskit = import_optional("qiskit", feature="Qiskit conversion")
    plan = occurrence_plan(circuit)
    theta = qiskit.circuit.ParameterVector(name, plan.n_occurrences)
    qc = qiskit.QuantumCircuit(circuit.n_qubits)
    append_state_prep(qc, circuit, state)
    p = 0
    for gi, g in enumerate(circuit.gates):
        if g.name == "PauliExp":
            if unitaries is None or gi not in unitaries:
                raise ValueError(f"to_qiskit_occurrences: gate {gi} is a PauliExp gate; pass its matrix in unitaries")
            append_unitary(qc, g.wires, unitaries[gi])
            p += sum(prm.kind != "const" for prm in g.params)
            continue
        angles = []
        for prm in g.params:
            if prm.kind == "const":
                angles.append(prm.offset)
            else:
                angles.append(theta[p])
                p += 1
        qiskit_append(qc, g.name, g.wires, angles)
    return qc, theta


# ---------------------------------------------------------------------------- PennyLane
def pennylane_gate(qml, name: str, wires: tuple[int, ...], angles: list) -> None:
    """Queue one qnn gate as a PennyLane operation (the shared table of :mod:`qnn.interop`)."""
    interop_pennylane_op(name, wires, angles)


def pennylane_pauli_exp(qml, gate, angles: list) -> None:
    """Queue a :class:`~qnn.circuit.PauliExp` gate as ``qml.SpecialUnitary``: its ``theta``
    runs over all 4^m - 1 Pauli words in PennyLane's (= qnn's IXYZ) order, zero for words the
    gate does not use; broadcast angles (shape ``(B,)``) give a broadcast ``theta (B, 4^m - 1)``."""
    from qnn.pauli import pauli_index

    m = len(gate.wires)
    ref = next((a for a in angles if torch.is_tensor(a)), None)
    dtype = ref.dtype if ref is not None else torch.float64
    zero = torch.zeros((), dtype=dtype)
    entries = [zero] * (4**m - 1)
    for word, a in zip(gate.words, angles):
        entries[pauli_index(word)] = a if torch.is_tensor(a) else torch.tensor(a, dtype=dtype)
    theta = torch.stack(torch.broadcast_tensors(*entries), -1)
    qml.SpecialUnitary(theta, wires=list(gate.wires))


def pennylane_op(qml, gate, angles: list) -> None:
    """Queue any qnn gate (:func:`pennylane_gate` or :func:`pennylane_pauli_exp`)."""
    if gate.name == "PauliExp":
        pennylane_pauli_exp(qml, gate, angles)
    else:
        pennylane_gate(qml, gate.name, gate.wires, angles)


def pennylane_measurement(qml, meas: Measurement, probs_as_projectors: bool = False):
    """``qml.expval`` of the Pauli word, or ``qml.probs`` on the wires (first wire most
    significant).  With ``probs_as_projectors`` the probabilities are returned as a tuple of
    ``qml.expval(qml.Projector(bits, wires))`` in the same basis order (for adjoint
    differentiation, whose ``qml.probs`` gradients are wrong in PennyLane 0.45.1)."""
    if meas.kind == "hermitian":
        return qml.expval(qml.Hermitian(np.array(meas.matrix, dtype=np.complex128), wires=list(meas.wires)))
    if meas.kind == "probs":
        if probs_as_projectors:
            k = len(meas.wires)
            return tuple(qml.expval(qml.Projector([(i >> (k - 1 - j)) & 1 for j in range(k)], wires=list(meas.wires)))
                         for i in range(2**k))
        return qml.probs(wires=list(meas.wires))
    ops = [{"X": qml.PauliX, "Y": qml.PauliY, "Z": qml.PauliZ}[ch](w)
           for ch, w in zip(meas.pauli, meas.wires) if ch != "I"]
    if not ops:
        return qml.expval(qml.Identity(meas.wires[0]))
    obs = ops[0]
    for o in ops[1:]:
        obs = obs @ o
    return qml.expval(obs)


def pennylane_angles(circuit: Circuit, theta_in, theta_w, plan: OccurrencePlan):
    """Yield ``(gate, angles)`` with angles taken from ``theta_in`` (input occurrences, the
    last axis) and ``theta_w`` (weight occurrences) or constants."""
    in_pos = np.cumsum(plan.is_input) - 1
    w_pos = np.cumsum(~plan.is_input) - 1
    p = 0
    for g in circuit.gates:
        angles = []
        for prm in g.params:
            if prm.kind == "const":
                angles.append(prm.offset)
            else:
                angles.append(theta_in[..., in_pos[p]] if plan.is_input[p] else theta_w[w_pos[p]])
                p += 1
        yield g, angles


def to_pennylane(circuit: Circuit):
    """A PennyLane quantum function ``qfunc(inputs, weights)`` for ``circuit``.

    ``inputs`` has shape ``(n_inputs,)`` or ``(B, n_inputs)`` (parameter broadcasting) and
    ``weights`` shape ``(n_weights,)``; the function queues the amplitude embedding (padded
    and normalised), the gates and returns the measurements (probabilities as ``qml.probs``).
    Wrap it in ``qml.QNode`` on a device with ``circuit.n_qubits`` wires.

    Example:
        >>> import pennylane as qml, torch, qnn
        >>> c = qnn.Circuit(1); _ = qnn.angle_embedding(c, rotation="X"); _ = c.measure_z()
        >>> f = qml.QNode(to_pennylane(c), qml.device("default.qubit", wires=1), interface="torch")
        >>> round(float(f(torch.tensor([3.14159265]), torch.zeros(0))[0]), 6)
        -1.0
    """
    qml = import_optional("pennylane", feature="to_pennylane")
    plan = occurrence_plan(circuit)

    def qfunc(inputs, weights):
        x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(inputs, dtype=torch.float64)
        w = weights if isinstance(weights, torch.Tensor) else torch.as_tensor(weights, dtype=torch.float64)
        x2 = x.reshape(1, -1) if x.dim() == 1 else x
        if circuit.state_prep is not None:
            psi = amplitude_states("to_pennylane", circuit.state_prep, circuit.n_qubits, x2)
            qml.StatePrep(psi[0] if x.dim() == 1 else psi, wires=range(circuit.n_qubits), normalize=True)
        m = plan.is_input
        t_in = x[..., torch.as_tensor(plan.index[m], dtype=torch.long)] * torch.as_tensor(plan.scale[m], dtype=x.dtype) \
            + torch.as_tensor(plan.offset[m], dtype=x.dtype)
        t_w = w[torch.as_tensor(plan.index[~m], dtype=torch.long)] * torch.as_tensor(plan.scale[~m], dtype=w.dtype) \
            + torch.as_tensor(plan.offset[~m], dtype=w.dtype)
        for g, angles in pennylane_angles(circuit, t_in, t_w, plan):
            angles = [a if torch.is_tensor(a) else torch.tensor(a, dtype=w.dtype) for a in angles]
            pennylane_op(qml, g, angles)
        return tuple(pennylane_measurement(qml, mm) for mm in circuit.measurements)

    return qfunc


def expected_output_slices(circuit: Circuit) -> list[slice]:
    out, start = [], 0
    for m in circuit.measurements:
        out.append(slice(start, start + m.n_outputs))
        start += m.n_outputs
    return out


# ---------------------------------------------------------------------------- shot readout (Qiskit / IBM)
def measurement_groups(measurements: list[Measurement], which=("expval", "probs")) -> list[tuple[dict, list[int]]]:
    """Group measurements into qubit-wise commuting sets.

    Returns a list of ``(basis, members)`` where ``basis`` maps wire -> "X"/"Y"/"Z" (wires not
    listed are read in Z) and ``members`` indexes ``measurements``.  Probabilities need Z on
    their wires; a Pauli word needs its letter on each non-identity wire.
    """
    groups: list[tuple[dict, list[int]]] = []
    for i, m in enumerate(measurements):
        if m.kind not in which:
            continue
        need = ({w: "Z" for w in m.wires} if m.kind == "probs"
                else {w: ch for ch, w in zip(m.pauli, m.wires) if ch != "I"})
        for basis, members in groups:
            if all(basis.get(w, ch) == ch for w, ch in need.items()):
                basis.update(need)
                members.append(i)
                break
        else:
            groups.append((dict(need), [i]))
    return groups


def add_basis_change(qc, basis: dict) -> None:
    """Rotate so that a Z-basis readout measures ``basis[w]`` on each wire."""
    for w, ch in sorted(basis.items()):
        if ch == "X":
            qc.h(w)
        elif ch == "Y":
            qc.sdg(w)
            qc.h(w)


def unpack_bits(bit_array, n_bits: int) -> np.ndarray:
    """``BitArray`` of shape ``(N,)`` -> uint8 array ``(N, shots, n_bits)`` with ``[..., i]`` = clbit i."""
    arr = np.asarray(bit_array.array)
    bits = np.unpackbits(arr, axis=-1, bitorder="big")[..., ::-1]
    return bits[..., :n_bits]


def outputs_from_bits(bits: np.ndarray, measurements: list[Measurement], members: list[int],
                      slices: list[slice], out: np.ndarray) -> None:
    """Fill ``out[:, slices[i]]`` for each measurement ``i`` in ``members`` from shot bits
    ``(N, shots, n_clbits)`` where clbit ``w`` holds wire ``w`` (already rotated to the basis)."""
    N, shots = bits.shape[:2]
    for i in members:
        m = measurements[i]
        if m.kind == "expval":
            ws = [w for ch, w in zip(m.pauli, m.wires) if ch != "I"]
            if not ws:
                out[:, slices[i]] = 1.0
                continue
            parity = np.bitwise_xor.reduce(bits[:, :, ws], axis=-1)  # (N, shots)
            out[:, slices[i].start] = 1.0 - 2.0 * parity.mean(axis=1)
        else:
            k = len(m.wires)
            idx = np.zeros((N, shots), dtype=np.int64)
            for j, w in enumerate(m.wires):  # first wire most significant
                idx |= bits[:, :, w].astype(np.int64) << (k - 1 - j)
            flat = idx + (np.arange(N) * 2**k)[:, None]
            counts = np.bincount(flat.ravel(), minlength=N * 2**k).reshape(N, 2**k)
            out[:, slices[i]] = counts / shots


def columns_for(qc, theta) -> list[int]:
    """Columns of the occurrence-angle array for the parameters still present in ``qc``
    (transpilation may drop a gate and its parameter), in ``qc.parameters`` order."""
    pos = {p: i for i, p in enumerate(theta)}
    return [pos[p] for p in qc.parameters]
