"""Circuits in and out: Qiskit random circuits and PennyLane templates give the same states,
expectations and gradients as the source framework's own simulator; round trips keep the state
to 1e-12; OpenQASM 3 in and out."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

import qnn
from qnn.engines.torch_engine import TorchEngine

qiskit = pytest.importorskip("qiskit", reason="Qiskit not installed (pip install qiskit)")
qml = pytest.importorskip("pennylane", reason="PennyLane not installed (pip install pennylane)")
from qiskit.circuit import Parameter  # noqa: E402
from qiskit.circuit.random import random_circuit  # noqa: E402
from qiskit.quantum_info import SparsePauliOp, Statevector  # noqa: E402

from qnn.interop import from_pennylane, from_qasm, from_qiskit, qnn_state_to_qiskit, to_qasm, to_qiskit  # noqa: E402

ENG = TorchEngine(dtype=torch.complex128)


def _state(c, x=None, w=None):
    x = torch.zeros(1, c.n_inputs, dtype=torch.float64) if x is None else x.reshape(1, -1)
    w = torch.zeros(c.n_weights, dtype=torch.float64) if w is None else w
    return ENG.state(c, x, w)[0].detach().numpy()


def _overlap(a, b):
    return abs(np.vdot(a, b))


@pytest.mark.parametrize("seed", range(6))
def test_random_qiskit_circuit_state_and_expectations(seed):
    qc = random_circuit(4, depth=5, max_operands=3, seed=seed)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        c = from_qiskit(qc)
    ref = Statevector(qc).data
    got = qnn_state_to_qiskit(_state(c), 4)
    assert _overlap(got, ref) == pytest.approx(1.0, abs=1e-12)  # equal up to the dropped global phase
    if any(ins.operation.name not in qnn.interop.QISKIT_BASIS for ins in qc.data):
        assert any("transpiled" in str(r.message) for r in rec)
    c.measure_pauli("XZ", [0, 3]).measure_z([1])
    out = ENG.run(c, torch.zeros(1, 0, dtype=torch.float64), torch.zeros(c.n_weights, dtype=torch.float64))[0]
    sv = Statevector(qc)
    want = [sv.expectation_value(SparsePauliOp.from_sparse_list([("XZ", [0, 3], 1.0)], 4)).real,
            sv.expectation_value(SparsePauliOp.from_sparse_list([("Z", [1], 1.0)], 4)).real]
    np.testing.assert_allclose(out.numpy(), want, atol=1e-12)


def test_qiskit_parameters_map_to_inputs_and_weights_with_gradients():
    a, b, t = Parameter("a"), Parameter("b"), Parameter("t")
    qc = qiskit.QuantumCircuit(3)
    qc.ry(2 * a + 0.1, 0); qc.rx(b, 1); qc.cx(0, 1); qc.crz(t - 0.5, 1, 2); qc.h(2); qc.rzz(t, 0, 2)
    with pytest.warns(UserWarning, match="rzz"):
        c = from_qiskit(qc, inputs=["a"])
    assert (c.n_inputs, c.n_weights) == (1, 2)  # weights b, t in Qiskit's (name-sorted) order
    c.measure_z()
    x = torch.tensor([[0.3]], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.7, -1.1], dtype=torch.float64, requires_grad=True)
    out = ENG.run(c, x, w)[0]

    def qiskit_expect(av, bv, tv):
        sv = Statevector(qc.assign_parameters({a: av, b: bv, t: tv}))
        return np.array([sv.expectation_value(SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], 3)).real
                         for q in range(3)])
    np.testing.assert_allclose(out.detach().numpy(), qiskit_expect(0.3, 0.7, -1.1), atol=1e-12)
    out.sum().backward()
    h = 1e-6  # central differences of Qiskit's own simulator
    fd = [(qiskit_expect(*(v + h * e)).sum() - qiskit_expect(*(v - h * e)).sum()) / (2 * h)
          for v in [np.array([0.3, 0.7, -1.1])] for e in np.eye(3)]
    np.testing.assert_allclose([x.grad.item(), *w.grad.tolist()], fd, atol=1e-7)


def test_qiskit_round_trip_keeps_the_state():
    c = qnn.Circuit(3)
    qnn.angle_embedding(c, rotation="X")
    qnn.strongly_entangling_layers(c, 2)
    c.add("CRY", (0, 2), [qnn.Param.weight(3, 0.5, 0.2)]).add("MCRY", (0, 1, 2), [0.4]).add("PhaseShift", 1, [0.3])
    x = torch.rand(3, dtype=torch.float64)
    w = torch.rand(c.n_weights, dtype=torch.float64)
    qc, xv, wv = to_qiskit(c)
    back = from_qiskit(qc, warn=False)
    assert (back.n_inputs, back.n_weights) == (c.n_inputs, c.n_weights)
    np.testing.assert_allclose(_state(back, x, w), _state(c, x, w), atol=1e-12)
    bound = qc.assign_parameters({**dict(zip(xv, x.tolist())), **dict(zip(wv, w.tolist()))})
    np.testing.assert_allclose(qnn_state_to_qiskit(_state(c, x, w), 3), Statevector(bound).data, atol=1e-12)
    # and qiskit -> qnn -> qiskit
    qc2, x2, w2 = to_qiskit(back)
    b2 = qc2.assign_parameters({**dict(zip(x2, x.tolist())), **dict(zip(w2, w.tolist()))})
    np.testing.assert_allclose(Statevector(b2).data, Statevector(bound).data, atol=1e-12)


def test_qasm_round_trip_and_measurements():
    c = qnn.Circuit(2)
    qnn.angle_embedding(c)
    qnn.basic_entangler_layers(c, 2)
    text = to_qasm(c)
    assert text.startswith("OPENQASM 3")
    back = from_qasm(text)
    x, w = torch.rand(2, dtype=torch.float64), torch.rand(c.n_weights, dtype=torch.float64)
    np.testing.assert_allclose(_state(back, x, w), _state(c, x, w), atol=1e-12)
    m = from_qasm('OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] b; h q[0]; cx q[0], q[1]; '
                  'b[0] = measure q[1]; b[1] = measure q[0];')
    assert m.measurements[0].kind == "probs" and m.measurements[0].wires == (0, 1)


@pytest.mark.parametrize("template", ["strongly", "basic", "angle_only"])
def test_pennylane_templates_state_expval_and_gradients(template):
    n = 3
    dev = qml.device("default.qubit", wires=n)

    def body(inputs, weights):
        qml.AngleEmbedding(inputs, wires=range(n), rotation="Y")
        if template == "strongly":
            qml.StronglyEntanglingLayers(weights, wires=range(n))
        elif template == "basic":
            qml.BasicEntanglerLayers(weights, wires=range(n))
        else:
            qml.RX(weights[0, 0] * 2.0 - 0.3, wires=1)

    @qml.qnode(dev, interface="torch")
    def expvals(inputs, weights):
        body(inputs, weights)
        return qml.expval(qml.Z(0)), qml.expval(qml.X(1) @ qml.Y(2)), qml.probs(wires=[2, 0])

    @qml.qnode(dev, interface="torch")
    def state(inputs, weights):
        body(inputs, weights)
        return qml.state()

    shape = {"strongly": (2, n, 3), "basic": (2, n), "angle_only": (1, 1)}[template]
    torch.manual_seed(0)
    x = torch.rand(n, dtype=torch.float64)
    wts = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    c, w0 = from_pennylane(expvals, x, wts)
    assert c.weight_block("weights").shape == shape
    np.testing.assert_allclose(_state(c, x, w0), state(x, wts).detach().numpy(), atol=1e-12)
    w = w0.clone().requires_grad_(True)
    out = ENG.run(c, x.reshape(1, -1), w)[0]
    ref = torch.cat([torch.atleast_1d(r) for r in expvals(x, wts)])
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), atol=1e-12)
    out.sum().backward()
    ref.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), wts.grad.reshape(-1).numpy(), atol=1e-10)
    # pennylane -> qnn -> pennylane keeps the state
    bare = copy.copy(c)
    bare.measurements = []
    qf = qnn.engines.to_pennylane(bare)

    @qml.qnode(dev, interface="torch")
    def again(xx, ww):
        qf(xx, ww)
        return qml.state()
    np.testing.assert_allclose(again(x, w0).detach().numpy(), state(x, wts).detach().numpy(), atol=1e-12)


def test_pennylane_tape_becomes_weights():
    tape = qml.tape.QuantumScript([qml.RX(0.3, 0), qml.IsingZZ(0.2, [0, 1]), qml.CNOT([0, 1])],
                                  [qml.expval(qml.Z(1))])
    c, w = from_pennylane(tape)
    want = qml.execute([tape], qml.device("default.qubit", wires=2))[0]
    got = ENG.run(c, torch.zeros(1, 0, dtype=torch.float64), w)[0, 0]
    assert float(got) == pytest.approx(float(want), abs=1e-12)


def test_import_errors_name_what_was_expected():
    t = Parameter("t")
    qc = qiskit.QuantumCircuit(1)
    qc.rx(t * t, 0)
    with pytest.raises(ValueError, match="from_qiskit: gate angles must be affine"):
        from_qiskit(qc)
    with pytest.raises(ValueError, match="from_qiskit: inputs must name parameters"):
        from_qiskit(qc, inputs=["nope"])
    with pytest.raises(TypeError, match="from_qiskit: qc must be a qiskit.QuantumCircuit"):
        from_qiskit("qc")
    dev = qml.device("default.qubit", wires=1)

    @qml.qnode(dev)
    def sq(inputs):
        qml.RX(inputs[0] ** 2, 0)
        return qml.expval(qml.Z(0))
    with pytest.raises(ValueError, match="from_pennylane: an angle of RX is not affine"):
        from_pennylane(sq, torch.tensor([0.4]))

    @qml.qnode(dev)
    def herm(inputs):
        qml.RX(inputs[0], 0)
        return qml.var(qml.Z(0))
    with pytest.raises(ValueError, match="from_pennylane: measurements must be qml.expval"):
        from_pennylane(herm, torch.tensor([0.4]))


def test_circuit_classmethods_delegate():
    qc = qiskit.QuantumCircuit(1)
    qc.h(0)
    assert [g.name for g in qnn.Circuit.from_qiskit(qc).gates] == ["H"]
    c = qnn.Circuit(1).add("H", 0)
    assert qnn.Circuit.from_qasm(c.to_qasm()).gates == c.gates
    assert c.to_qiskit()[0].data[0].operation.name == "h"
