"""PennyLaneEngine: devices, diff methods, broadcasting / per-sample loop, shots, bad input."""

from __future__ import annotations

import importlib

import pytest
import torch

import qnn
from qnn.engines import get_engine
from qnn.testing import random_circuit

qml = pytest.importorskip("pennylane", reason="PennyLane not installed (pip install pennylane)")

from qnn.engines.pennylane_engine import PennyLaneEngine  # noqa: E402


def _data(c, batch=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, c.n_inputs, generator=g, dtype=dtype) * 2 - 1).requires_grad_(True)
    w = (torch.rand(c.n_weights, generator=g, dtype=dtype) * 2 - 1).requires_grad_(True)
    return x, w


def _vg(eng, c, x, w):
    y = eng.run(c, x, w)
    cot = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
    gx, gw = torch.autograd.grad(y, [x, w], cot)
    return y.detach(), gx, gw


def test_registry_and_repr():
    eng = get_engine("pennylane", device="default.qubit", diff_method="adjoint")
    assert isinstance(eng, PennyLaneEngine)
    assert repr(eng) == "PennyLaneEngine(device='default.qubit', diff_method='adjoint')"


def test_closed_form_and_dtype():
    c = qnn.Circuit(1)
    qnn.angle_embedding(c, rotation="X")
    c.measure_z()
    c.measure_probs()
    x = torch.tensor([[0.5], [2.0]])
    y = PennyLaneEngine().run(c, x, torch.zeros(0))
    assert y.dtype == torch.float32 and y.shape == (2, 3)
    p1 = torch.sin(x[:, 0] / 2) ** 2
    torch.testing.assert_close(y, torch.stack([torch.cos(x[:, 0]), 1 - p1, p1], 1), atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["adjoint", "parameter-shift", "finite-diff"])
@pytest.mark.parametrize("seed,amp", [(0, False), (1, True)])
def test_diff_methods_agree_with_backprop(method, seed, amp):
    c = random_circuit(3, n_gates=15, seed=seed, amplitude=amp)
    x, w = _data(c, batch=2, seed=seed)
    ref = _vg(PennyLaneEngine(diff_method="backprop"), c, x, w)
    got = _vg(PennyLaneEngine(diff_method=method), c, x, w)
    tol = 1e-5 if method == "finite-diff" else 1e-10
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=tol, rtol=0)


def test_weights_only_gradient_uses_broadcast_with_parameter_shift():
    """Inputs without grad (and no gate mixing input and weight angles): one broadcast
    execution even with parameter-shift."""
    from qnn.testing import builder_circuit

    c = builder_circuit("strongly_entangling", 3)
    x = torch.rand(4, c.n_inputs, dtype=torch.float64)
    w = torch.rand(c.n_weights, dtype=torch.float64, requires_grad=True)
    eng = PennyLaneEngine(diff_method="parameter-shift")
    dev = eng._device(c.n_qubits)
    with qml.Tracker(dev) as tracker:
        y = eng.run(c, x, w)
    assert tracker.totals["batches"] == 1
    y.sum().backward()
    w2 = w.detach().clone().requires_grad_(True)
    PennyLaneEngine(diff_method="backprop").run(c, x, w2).sum().backward()
    torch.testing.assert_close(w.grad, w2.grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("amp", [False, True])
def test_lightning_qubit_matches_default_qubit(amp):
    """lightning.qubit ("best" = adjoint, per-sample loop) equals default.qubit (backprop).
    Measured: without gradients the two agree to 1e-15; on lightning's adjoint path its Pauli
    expectation values differ by ~1e-8 (PennyLane-internal, float64 inputs), hence 1e-7."""
    tol = 1e-7
    pytest.importorskip("pennylane_lightning", reason="pip install pennylane-lightning")
    c = random_circuit(4, n_gates=20, seed=7, amplitude=amp)
    x, w = _data(c, batch=2, seed=7)
    a = _vg(PennyLaneEngine("lightning.qubit"), c, x, w)
    b = _vg(PennyLaneEngine("default.qubit"), c, x, w)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, atol=tol, rtol=0)


def test_shots_within_five_standard_errors():
    c = random_circuit(2, n_gates=12, seed=3, measure="z")
    x, w = _data(c, batch=2, seed=3)
    exact = PennyLaneEngine().run(c, x, w).detach()
    shots = 4000
    sampled = PennyLaneEngine(shots=shots, seed=1234).run(c, x.detach(), w.detach())
    se = torch.sqrt((1 - exact**2).clamp_min(0) / shots)
    assert bool(((sampled - exact).abs() <= 5 * se + 1.0 / shots).all())


def test_float32_inputs_give_float32_outputs_and_grads():
    c = random_circuit(2, n_gates=10, seed=1)
    x, w = _data(c, dtype=torch.float32)
    y, gx, gw = _vg(PennyLaneEngine(), c, x, w)
    assert y.dtype == gx.dtype == gw.dtype == torch.float32


def test_empty_batch():
    c = random_circuit(2, 6, seed=0)
    x = torch.zeros(0, c.n_inputs, requires_grad=True)
    w = torch.zeros(c.n_weights, requires_grad=True)
    y = PennyLaneEngine().run(c, x, w)
    assert y.shape == (0, c.n_outputs)
    y.sum().backward()
    assert float(w.grad.abs().sum()) == 0.0


class TestBadInput:
    def test_unknown_device_lists_valid_names(self):
        with pytest.raises(ValueError, match=r"unknown PennyLane device 'default.qbit'; installed devices are \[.*'default.qubit'"):
            PennyLaneEngine("default.qbit")

    def test_unknown_diff_method(self):
        with pytest.raises(ValueError, match=r"diff_method must be one of \['best', 'backprop'.*got 'backward'"):
            PennyLaneEngine(diff_method="backward")

    def test_shots(self):
        with pytest.raises(ValueError, match="shots must be None \\(analytic\\) or a positive int; got -1"):
            PennyLaneEngine(shots=-1)

    def test_wires_kwarg(self):
        with pytest.raises(ValueError, match="'wires' is set from the circuit"):
            PennyLaneEngine(wires=3)

    def test_wrong_inputs(self):
        c = random_circuit(2, 5, seed=0)
        with pytest.raises(ValueError, match=r"inputs must have shape \(batch, n_inputs=3\); got \(2, 2\)"):
            PennyLaneEngine().run(c, torch.zeros(2, 2), torch.zeros(c.n_weights))
        with pytest.raises(ValueError, match="weights contain NaN or inf"):
            PennyLaneEngine().run(c, torch.zeros(2, 3), torch.full((c.n_weights,), float("inf")))

    def test_zero_amplitude(self):
        c = qnn.Circuit(1)
        qnn.amplitude_embedding(c, 1, pad=0.0)
        c.measure_z()
        with pytest.raises(ValueError, match=r"PennyLaneEngine: amplitude embedding of sample 0 is the all-zero vector"):
            PennyLaneEngine().run(c, torch.zeros(1, 1), torch.zeros(0))

    def test_missing_sdk(self, monkeypatch):
        real = importlib.import_module

        def fake(name, *a, **k):
            if name == "pennylane" or name.startswith("pennylane."):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return real(name, *a, **k)

        monkeypatch.setattr(importlib, "import_module", fake)
        with pytest.raises(ImportError, match=r"PennyLaneEngine needs .*pip install pennylane .*qnn\[pennylane\]"):
            PennyLaneEngine()
        with pytest.raises(ImportError, match=r"pip install pennylane"):
            get_engine("pennylane")


@pytest.mark.parametrize("method", ["backprop", "parameter-shift"])
def test_weights_only_circuit_broadcasts_to_batch(method):
    c = qnn.Circuit(2)
    qnn.strongly_entangling_layers(c, 1)
    c.measure_z()
    c.measure_probs([1])
    w = torch.linspace(-1, 1, c.n_weights, dtype=torch.float64, requires_grad=True)
    y = PennyLaneEngine(diff_method=method).run(c, torch.zeros(3, 0, dtype=torch.float64), w)
    assert y.shape == (3, 4)
    torch.testing.assert_close(y[0], y[2])
    y.sum().backward()
    assert w.grad.abs().sum() > 0


@pytest.mark.parametrize("method", ["parameter-shift", "adjoint", "finite-diff", "spsa", "hadamard"])
def test_amplitude_embedding_gradient_has_no_nan(method):
    """Issue 10, defect 1: zero padding made PennyLane's state-preparation gradient NaN on every
    method but backprop, and the NaN reached the classical layers in front."""
    front = torch.nn.Linear(3, 3)
    m = qnn.QuantumLinear(3, 2, encoding="amplitude", engine="pennylane",
                          engine_options={"diff_method": method}, seed=0)
    ref = qnn.QuantumLinear(3, 2, encoding="amplitude", seed=0).double()
    x = torch.rand(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True)
    m.double()(x).sum().backward()
    gx = x.grad.clone()
    x.grad = None
    ref(x).sum().backward()
    assert torch.isfinite(gx).all()
    torch.testing.assert_close(gx, x.grad, atol=1e-6, rtol=0)
    h = front(torch.rand(4, 3, generator=torch.Generator().manual_seed(1)))
    h = torch.cat([torch.relu(h[:, :2]), h[:, 2:].abs() + 0.1], 1)  # a ReLU: exact zero amplitudes
    m.float()(h).sum().backward()
    assert torch.isfinite(front.weight.grad).all()
