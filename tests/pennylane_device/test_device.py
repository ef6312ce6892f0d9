"""The qnn.torch PennyLane device, tested directly: parity with default.qubit (values and
gradients) for TorchLayer workloads, one batched engine run per broadcast tape, seeded shots,
device Jacobians / VJPs, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

qml = pytest.importorskip("pennylane", reason="PennyLane not installed (pip install pennylane)")

from qnn.pennylane_device import QnnTorchDevice  # noqa: E402


def _layer_qnode(dev, n, diff_method="best", **kw):
    @qml.qnode(dev, interface="torch", diff_method=diff_method, **kw)
    def circuit(inputs, weights):
        qml.AngleEmbedding(inputs, wires=range(n), rotation="Y")
        qml.StronglyEntanglingLayers(weights, wires=range(n))
        return [qml.expval(qml.Z(i)) for i in range(n)]
    return circuit


@pytest.mark.parametrize("diff_method", ["best", "device"])  # best = torch backprop
def test_torchlayer_matches_default_qubit(diff_method):
    n, B = 4, 6
    torch.manual_seed(0)
    x = torch.rand(B, n, dtype=torch.float64)
    layers = {}
    for name, dev in (("qnn", QnnTorchDevice(wires=n)), ("dq", qml.device("default.qubit", wires=n))):
        dm = diff_method if name == "qnn" else "backprop"
        kw = {"device_vjp": True} if dm == "device" else {}
        torch.manual_seed(1)
        layer = qml.qnn.TorchLayer(_layer_qnode(dev, n, dm, **kw), {"weights": (2, n, 3)})
        layer = layer.double()
        out = layer(x)
        out.square().sum().backward()
        layers[name] = (out.detach(), layer.weights.grad.clone())
    assert torch.allclose(layers["qnn"][0], layers["dq"][0], atol=1e-10)
    assert torch.allclose(layers["qnn"][1], layers["dq"][1], atol=1e-10)


def test_broadcast_tape_is_one_engine_run(monkeypatch):
    dev = QnnTorchDevice(wires=3)
    calls = []
    run = dev._engine.run
    monkeypatch.setattr(dev._engine, "run", lambda c, x, w: calls.append(tuple(x.shape)) or run(c, x, w))
    qnode = _layer_qnode(dev, 3)
    out = qnode(torch.rand(16, 3, dtype=torch.float64), torch.rand(1, 3, 3, dtype=torch.float64))
    assert calls == [(16, 3)] and out[0].shape == (16,)


def test_general_measurements_match_default_qubit():
    ops = [qml.Hadamard(0), qml.CRX(0.3, [0, 1]), qml.IsingXX(0.7, [1, 2]), qml.Toffoli([0, 1, 2]),
           qml.QubitUnitary(qml.matrix(qml.Rot(0.1, 0.2, 0.3, 0)), 2), qml.S(1)]
    H = qml.Hamiltonian([0.5, -1.2], [qml.X(0) @ qml.Y(2), qml.Z(1)])
    mps = [qml.expval(H), qml.var(qml.X(1)), qml.probs(wires=[2, 0]), qml.state(),
           qml.expval(qml.Hermitian(np.diag([1.0, 2.0, 3.0, 4.0]), wires=[0, 2]))]
    tape = qml.tape.QuantumScript(ops, mps)
    got = qml.execute([tape], QnnTorchDevice(wires=3))[0]
    ref = qml.execute([tape], qml.device("default.qubit", wires=3))[0]
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=1e-12)


def test_wire_labels_and_global_phase_in_state():
    dev = QnnTorchDevice(wires=["a", 7])
    ref = qml.device("default.qubit", wires=["a", 7])
    def f():
        qml.StatePrep(np.array([0.5, 0.5j, -0.5, 0.5]), wires=["a", 7])
        qml.CY(["a", 7])
        return qml.state()
    np.testing.assert_allclose(qml.QNode(f, dev)(), qml.QNode(f, ref)(), atol=1e-12)


def test_shots_are_seeded_and_statistical():
    def run(seed):
        dev = QnnTorchDevice(wires=2, seed=seed)
        @qml.set_shots(4000)
        @qml.qnode(dev)
        def f():
            qml.RY(1.0, 0); qml.CNOT([0, 1])
            return qml.sample(qml.Z(1)), qml.expval(qml.Z(0))
        return f()
    a, b, c = run(3), run(3), run(4)
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], c[0])
    assert abs(float(a[1]) - np.cos(1.0)) < 0.06


def test_device_jacobian_for_autograd_interface():
    from pennylane import numpy as pnp
    dev = QnnTorchDevice(wires=2)
    @qml.qnode(dev, diff_method="device")
    def f(x):
        qml.RX(x[0], 0); qml.RY(x[1], 1); qml.CNOT([0, 1])
        return qml.expval(qml.Z(1)), qml.probs(wires=[0])
    x = pnp.array([0.4, -0.3], requires_grad=True)
    jac = qml.jacobian(lambda v: pnp.hstack(f(v)))(x)
    ref_dev = qml.device("default.qubit", wires=2)
    ref = qml.jacobian(lambda v: pnp.hstack(qml.QNode(f.func, ref_dev)(v)))(x)
    np.testing.assert_allclose(jac, ref, atol=1e-10)


def test_backprop_refuses_shots_and_non_torch():
    dev = QnnTorchDevice(wires=1)
    cfg = qml.devices.ExecutionConfig(gradient_method="backprop", interface="torch")
    assert dev.supports_derivatives(cfg)
    shot_tape = qml.tape.QuantumScript([qml.RX(0.1, 0)], [qml.expval(qml.Z(0))], shots=10)
    assert not dev.supports_derivatives(cfg, shot_tape)
    assert not dev.supports_derivatives(qml.devices.ExecutionConfig(gradient_method="backprop", interface="autograd"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="QnnTorchDevice: dtype must be"):
        QnnTorchDevice(wires=1, dtype=torch.float64)
    with pytest.raises(TypeError, match="QnnTorchDevice: seed must be"):
        QnnTorchDevice(wires=1, seed="x")
