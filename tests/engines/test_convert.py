"""Conversion of qnn circuits to Qiskit and PennyLane: gate matrices, qubit order, observables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import qnn
from qnn.circuit import GATES, Measurement, Param
from qnn.engines._convert import (
    add_basis_change,
    measurement_groups,
    occurrence_angles,
    occurrence_plan,
    outputs_from_bits,
    pauli_observable,
    probs_qargs,
    qnn_state_to_qiskit,
    to_qiskit,
    to_qiskit_occurrences,
    validate_run_args,
)
from qnn.testing import random_circuit

qiskit = pytest.importorskip("qiskit", reason="Qiskit not installed (pip install qiskit)")
qml = pytest.importorskip("pennylane", reason="PennyLane not installed (pip install pennylane)")
from qiskit.quantum_info import Operator, Statevector  # noqa: E402

from qnn.engines._convert import pennylane_gate  # noqa: E402


def _one_gate(name, n_qubits, wires, angles):
    c = qnn.Circuit(n_qubits)
    c.add(name, wires, [Param.const(a) for a in angles])
    return c


def _gate_cases():
    rng = np.random.default_rng(0)
    for name, (nw, npar) in GATES.items():
        for wires in ([(0,), (2,)] if nw == 1 else [(0, 2), (2, 1)] if nw == 2 else [(0, 1, 2), (2, 0, 1), (1, 2)]):
            yield name, wires, list(rng.uniform(-np.pi, np.pi, npar))


@pytest.mark.parametrize("name,wires,angles", list(_gate_cases()))
def test_gate_matrix_equals_pennylane(name, wires, angles):
    """Every gate kind: the Qiskit circuit's unitary equals PennyLane's (global phase included),
    after converting Qiskit's little-endian order to qnn's (wire 0 most significant)."""
    n = 3
    qc, _, _ = to_qiskit(_one_gate(name, n, wires, angles))
    u_qiskit = Operator(qc).reverse_qargs().data
    with qml.queuing.AnnotatedQueue() as q:
        pennylane_gate(qml, name, wires, [torch.tensor(a, dtype=torch.float64) for a in angles])
    tape = qml.tape.QuantumScript.from_queue(q)
    u_pl = qml.matrix(tape, wire_order=range(n))
    np.testing.assert_allclose(u_qiskit, np.asarray(u_pl), atol=1e-12)


def test_symbolic_export_uses_input_and_weight_vectors():
    c = qnn.Circuit(2)
    qnn.angle_embedding(c, rotation="X", scale=0.5)
    qnn.strongly_entangling_layers(c, 1)
    c.add("CRY", (0, 1), [Param.weight(0, scale=-0.5, offset=0.25)])
    qc, x, w = to_qiskit(c)
    assert (len(x), len(w)) == (2, 6)
    assert {p.name for p in qc.parameters} == {f"x[{i}]" for i in range(2)} | {f"w[{k}]" for k in range(6)}
    # bound symbolic export == occurrence circuit bound with the same angles
    xv, wv = np.array([0.3, -1.1]), np.linspace(-1, 1, 6)
    sym = qc.assign_parameters({**dict(zip(x, xv)), **dict(zip(w, wv))})
    occ, theta = to_qiskit_occurrences(c)
    ang = occurrence_angles(occurrence_plan(c), torch.tensor(xv)[None], torch.tensor(wv))[0].numpy()
    assert len(theta) == c.n_params == len(ang)
    np.testing.assert_allclose(Operator(sym).data, Operator(occ.assign_parameters(ang)).data, atol=1e-12)


def test_occurrence_plan_marks_controlled_rotations():
    c = random_circuit(4, n_gates=40, seed=3)
    plan = occurrence_plan(c)
    assert plan.n_occurrences == c.n_params
    names = [c.gates[g].name for g in plan.gate]
    assert list(plan.four_term) == [nm in ("CRX", "CRY", "CRZ", "MCRY") for nm in names]


def test_pauli_observable_places_letters_on_their_qubits():
    op = pauli_observable(Measurement("expval", (0, 2), "XZ"), 3)
    assert op.paulis[0].to_label() == "ZIX"  # Qiskit label: qubit 2 ... qubit 0
    op = pauli_observable(Measurement("expval", (1, 0), "YI"), 2)
    assert op.paulis[0].to_label() == "YI"
    assert pauli_observable(Measurement("expval", (0,), "I"), 2).paulis[0].to_label() == "II"


def test_basis_order_conversion():
    # qnn |100> (wire 0 set) is index 4; in Qiskit (qubit 0 least significant) it is index 1
    s = np.zeros(8)
    s[4] = 1
    assert np.argmax(qnn_state_to_qiskit(s, 3)) == 1
    # probabilities on wires (2, 0): first listed wire most significant
    qc = qiskit.QuantumCircuit(3)
    qc.x(0)  # wire 0 = 1, wire 2 = 0  ->  outcome "01" on (2, 0) -> index 1
    p = Statevector(qc).probabilities(probs_qargs(Measurement("probs", (2, 0))))
    assert np.argmax(p) == 1


def test_amplitude_export_needs_state():
    c = qnn.Circuit(2)
    qnn.amplitude_embedding(c, 3)
    with pytest.raises(ValueError, match="amplitude embedding; pass state="):
        to_qiskit(c)
    with pytest.raises(ValueError, match="state must have length 4; got 3"):
        to_qiskit(c, state=np.ones(3))
    qc, _, _ = to_qiskit(c, state=np.array([0.6, 0.0, 0.8, 0.0]))
    # qnn index 2 = |10> (wire 0 set) -> Qiskit qubit 0 set
    assert abs(Statevector(qc).probabilities_dict()["01"] - 0.64) < 1e-12


def test_measurement_groups_are_qubitwise_commuting():
    ms = [Measurement("expval", (0,), "Z"), Measurement("expval", (0, 1), "XY"), Measurement("probs", (1, 2)),
          Measurement("expval", (1,), "Y"), Measurement("expval", (2,), "X")]
    groups = measurement_groups(ms)
    covered = sorted(i for _, mem in groups for i in mem)
    assert covered == list(range(len(ms)))
    for basis, members in groups:
        for i in members:
            m = ms[i]
            need = {w: "Z" for w in m.wires} if m.kind == "probs" else {w: ch for ch, w in zip(m.pauli, m.wires) if ch != "I"}
            assert all(basis[w] == ch for w, ch in need.items())


def test_outputs_from_bits_counts_in_qnn_order():
    ms = [Measurement("probs", (2, 0)), Measurement("expval", (0, 1), "ZZ")]
    bits = np.zeros((1, 4, 3), dtype=np.uint8)
    bits[0, :, 0] = [1, 1, 0, 0]  # wire 0
    bits[0, :, 2] = [0, 1, 0, 1]  # wire 2
    out = np.zeros((1, 5))
    outputs_from_bits(bits, ms, [0, 1], [slice(0, 4), slice(4, 5)], out)
    # (wire2, wire0) per shot: (0,1) (1,1) (0,0) (1,0) -> indices 1, 3, 0, 2
    np.testing.assert_allclose(out[0, :4], [0.25, 0.25, 0.25, 0.25])
    # Z0 Z1 parity: wire0 bits 1,1,0,0 -> <ZZ> = (-1 -1 +1 +1)/4 = 0
    assert out[0, 4] == 0.0


def test_basis_change_rotates_to_z():
    for letter, prep in (("X", "h"), ("Y", None)):
        qc = qiskit.QuantumCircuit(1)
        if letter == "X":
            qc.h(0)  # |+>, the +1 eigenstate of X
        else:
            qc.h(0)
            qc.s(0)  # |+i>, the +1 eigenstate of Y
        add_basis_change(qc, {0: letter})
        assert abs(Statevector(qc).probabilities()[0] - 1) < 1e-12


class TestValidateRunArgs:
    c = random_circuit(2, 5, seed=0)

    def test_ok(self):
        validate_run_args("E", self.c, torch.zeros(3, self.c.n_inputs), torch.zeros(self.c.n_weights))

    def test_wrong_last_dim(self):
        with pytest.raises(ValueError, match=r"inputs must have shape \(batch, n_inputs=3\); got \(3, 4\)"):
            validate_run_args("E", self.c, torch.zeros(3, 4), torch.zeros(self.c.n_weights))

    def test_wrong_weight_shape(self):
        with pytest.raises(ValueError, match=r"weights must have shape \(n_weights=10,\); got \(2, 5\)"):
            validate_run_args("E", self.c, torch.zeros(3, 3), torch.zeros(2, 5))

    def test_integer_dtype(self):
        with pytest.raises(TypeError, match="inputs must be a float32 or float64 tensor; got torch.int64"):
            validate_run_args("E", self.c, torch.zeros(3, 3, dtype=torch.long), torch.zeros(10))

    def test_not_tensor(self):
        with pytest.raises(TypeError, match="weights must be a torch.Tensor; got ndarray"):
            validate_run_args("E", self.c, torch.zeros(3, 3), np.zeros(10))

    @pytest.mark.parametrize("bad", [float("nan"), float("inf")])
    def test_non_finite(self, bad):
        x = torch.zeros(3, 3)
        x[1, 2] = bad
        with pytest.raises(ValueError, match="inputs contain NaN or inf"):
            validate_run_args("E", self.c, x, torch.zeros(10))

    def test_not_a_circuit(self):
        with pytest.raises(TypeError, match="circuit must be a qnn.Circuit; got str"):
            validate_run_args("E", "circuit", torch.zeros(3, 3), torch.zeros(10))

    def test_no_measurements(self):
        c = qnn.Circuit(1)
        with pytest.raises(ValueError, match="the circuit has no measurements"):
            validate_run_args("E", c, torch.zeros(1, 0), torch.zeros(0))


@pytest.mark.parametrize("amp", [False, True])
def test_to_pennylane_qfunc_matches_engines(amp):
    from qnn.engines._convert import to_pennylane
    from qnn.engines.qiskit_engine import QiskitEngine

    c = random_circuit(3, n_gates=15, seed=9, amplitude=amp)
    g = torch.Generator().manual_seed(9)
    x = torch.rand(2, c.n_inputs, dtype=torch.float64, generator=g)
    w = torch.rand(c.n_weights, dtype=torch.float64, generator=g)
    qnode = qml.QNode(to_pennylane(c), qml.device("default.qubit", wires=3), interface="torch")
    ref = QiskitEngine().run(c, x, w)
    batched = torch.cat([r.reshape(2, -1) for r in qnode(x, w)], dim=1)
    single = torch.cat([r.reshape(-1) for r in qnode(x[1], w)])
    torch.testing.assert_close(batched, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(single, ref[1], atol=1e-12, rtol=0)
