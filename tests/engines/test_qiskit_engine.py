"""QiskitEngine: exact Statevector, Aer shots (+ noise), parameter-shift gradients, bad input."""

from __future__ import annotations

import importlib

import pytest
import torch

import qnn
from qnn.engines import get_engine
from qnn.testing import random_circuit

pytest.importorskip("qiskit", reason="Qiskit not installed (pip install qiskit)")
pytest.importorskip("qiskit_aer", reason="Qiskit Aer not installed (pip install qiskit-aer)")

from qnn.engines.qiskit_engine import QiskitEngine  # noqa: E402


def _x_circuit():
    c = qnn.Circuit(2)
    qnn.angle_embedding(c, rotation="X")
    c.measure_z()
    c.measure_probs([1, 0])
    return c


def test_exact_matches_closed_form():
    c = _x_circuit()
    x = torch.tensor([[0.3, 1.2], [2.0, -0.4]], dtype=torch.float64)
    y = QiskitEngine().run(c, x, torch.zeros(0, dtype=torch.float64))
    p0, p1 = torch.sin(x[:, 0] / 2) ** 2, torch.sin(x[:, 1] / 2) ** 2  # P(wire = 1)
    expect = torch.stack([torch.cos(x[:, 0]), torch.cos(x[:, 1]),
                          (1 - p1) * (1 - p0), (1 - p1) * p0, p1 * (1 - p0), p1 * p0], dim=1)
    torch.testing.assert_close(y, expect, atol=1e-12, rtol=0)


def test_output_dtype_device_and_registry():
    c = _x_circuit()
    eng = get_engine("qiskit")
    assert isinstance(eng, QiskitEngine) and repr(eng) == "QiskitEngine()"
    y = eng.run(c, torch.zeros(3, 2), torch.zeros(0))
    assert y.dtype == torch.float32 and y.device.type == "cpu" and y.shape == (3, 6)


@pytest.mark.parametrize("seed,amp", [(0, False), (1, True), (2, False)])
def test_gradcheck_parameter_shift(seed, amp):
    """torch.autograd.gradcheck (float64) of the parameter-shift backward, inputs and weights,
    including controlled rotations (four-term rule) and amplitude-embedded features."""
    c = random_circuit(2, n_gates=12, seed=seed, amplitude=amp)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, c.n_inputs, dtype=torch.float64, generator=g).requires_grad_(True)
    w = torch.rand(c.n_weights, dtype=torch.float64, generator=g).requires_grad_(True)
    eng = QiskitEngine()
    assert torch.autograd.gradcheck(lambda a, b: eng.run(c, a, b), (x, w), eps=1e-6, atol=1e-6)


def test_backward_is_one_extra_evaluation_per_pass(monkeypatch):
    """With shots, forward = one sampler call, backward = one sampler call (all shifted points)."""
    from qiskit_aer.primitives import SamplerV2

    calls = []
    orig = SamplerV2.run

    def counting(self, pubs, *a, **k):
        pubs = list(pubs)
        calls.append(len(pubs))
        return orig(self, pubs, *a, **k)

    monkeypatch.setattr(SamplerV2, "run", counting)
    c = random_circuit(3, n_gates=10, seed=4)
    x = torch.rand(4, c.n_inputs, dtype=torch.float64, requires_grad=True)
    w = torch.rand(c.n_weights, dtype=torch.float64, requires_grad=True)
    y = QiskitEngine(shots=100, seed=1).run(c, x, w)
    assert len(calls) == 1
    y.sum().backward()
    assert len(calls) == 2
    assert x.grad.shape == x.shape and w.grad.shape == w.shape


def _standard_errors(circuit, exact, shots):
    se = torch.empty_like(exact)
    col = 0
    for m in circuit.measurements:
        k = m.n_outputs
        v = exact[:, col: col + k]
        se[:, col: col + k] = torch.sqrt((1 - v**2).clamp_min(0) / shots) if m.kind == "expval" \
            else torch.sqrt((v * (1 - v)).clamp_min(0) / shots)
        col += k
    return se


@pytest.mark.parametrize("seed,amp", [(0, False), (3, True), (5, False)])
def test_shots_within_five_standard_errors(seed, amp):
    shots = 4000
    c = random_circuit(3, n_gates=15, seed=seed, amplitude=amp)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, c.n_inputs, dtype=torch.float64, generator=g)
    w = torch.rand(c.n_weights, dtype=torch.float64, generator=g)
    exact = QiskitEngine().run(c, x, w)
    sampled = QiskitEngine(shots=shots, seed=seed + 1).run(c, x, w)
    se = _standard_errors(c, exact, shots)
    # an exact 0/1 output has zero spread: allow one count of slack there
    bound = 5 * se + 1.0 / shots
    assert bool(((sampled - exact).abs() <= bound).all()), (sampled - exact).abs().max()


def test_shots_are_repeatable_with_seed_and_gradients_unbiased():
    c = random_circuit(2, n_gates=8, seed=2)
    x = torch.rand(2, c.n_inputs, dtype=torch.float64)
    w = torch.rand(c.n_weights, dtype=torch.float64)
    a = QiskitEngine(shots=500, seed=9).run(c, x, w)
    b = QiskitEngine(shots=500, seed=9).run(c, x, w)
    torch.testing.assert_close(a, b)
    # shot-based parameter-shift gradient is close to the exact one (20000 shots)
    wx = w.clone().requires_grad_(True)
    QiskitEngine(shots=20000, seed=3).run(c, x, wx).sum().backward()
    we = w.clone().requires_grad_(True)
    QiskitEngine().run(c, x, we).sum().backward()
    assert (wx.grad - we.grad).abs().max() < 0.1


def test_noise_model_moves_values_towards_mixed():
    noise = pytest.importorskip("qiskit_aer.noise")
    nm = noise.NoiseModel()
    nm.add_all_qubit_quantum_error(noise.depolarizing_error(0.2, 1), ["rx", "ry", "rz", "x", "h", "u", "sx"])
    c = _x_circuit()
    x = torch.tensor([[0.0, 0.0]], dtype=torch.float64)  # ideal <Z> = +1 on both
    y = QiskitEngine(shots=4000, noise_model=nm, seed=1).run(c, x, torch.zeros(0, dtype=torch.float64))
    assert (y[0, :2] < 0.95).all() and (y[0, :2] > 0.5).all()


def test_empty_batch():
    c = random_circuit(2, 6, seed=0)
    x = torch.zeros(0, c.n_inputs, requires_grad=True)
    w = torch.zeros(c.n_weights, requires_grad=True)
    y = QiskitEngine().run(c, x, w)
    assert y.shape == (0, c.n_outputs)
    y.sum().backward()
    assert w.grad is not None and float(w.grad.abs().sum()) == 0.0


class TestBadInput:
    def test_shots(self):
        with pytest.raises(ValueError, match="shots must be None \\(exact\\) or a positive int; got 0"):
            QiskitEngine(shots=0)

    def test_noise_without_shots(self):
        with pytest.raises(ValueError, match="noise_model needs shots"):
            QiskitEngine(noise_model=object())

    def test_method(self):
        with pytest.raises(ValueError, match="method must be one of .*'statevector'.*got 'gpu'"):
            QiskitEngine(shots=10, method="gpu")
        with pytest.raises(ValueError, match="exact mode \\(shots=None\\) uses method='statevector'"):
            QiskitEngine(method="density_matrix")

    def test_wrong_inputs(self):
        c = _x_circuit()
        with pytest.raises(ValueError, match=r"inputs must have shape \(batch, n_inputs=2\); got \(3, 5\)"):
            QiskitEngine().run(c, torch.zeros(3, 5), torch.zeros(0))
        with pytest.raises(ValueError, match="inputs contain NaN or inf"):
            QiskitEngine().run(c, torch.tensor([[float("nan"), 0.0]]), torch.zeros(0))
        with pytest.raises(TypeError, match="must be a float32 or float64 tensor"):
            QiskitEngine().run(c, torch.zeros(1, 2, dtype=torch.int32), torch.zeros(0))

    def test_zero_amplitude(self):
        c = qnn.Circuit(2)
        qnn.amplitude_embedding(c, 2)
        c.measure_z()
        with pytest.raises(ValueError, match=r"QiskitEngine: amplitude embedding of sample 1 is the all-zero vector"):
            QiskitEngine().run(c, torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.zeros(0))

    def test_unknown_engine_lists_valid(self):
        with pytest.raises(ValueError, match="valid engines are .*'qiskit'"):
            get_engine("qiskitt")

    def test_missing_sdk(self, monkeypatch):
        real = importlib.import_module

        def fake(name, *a, **k):
            if name == "qiskit" or name.startswith("qiskit."):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return real(name, *a, **k)

        monkeypatch.setattr(importlib, "import_module", fake)
        with pytest.raises(ImportError, match=r"QiskitEngine needs .*pip install qiskit .*qnn\[qiskit\]"):
            QiskitEngine()

    def test_missing_aer(self, monkeypatch):
        real = importlib.import_module

        def fake(name, *a, **k):
            if name.startswith("qiskit_aer"):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return real(name, *a, **k)

        monkeypatch.setattr(importlib, "import_module", fake)
        QiskitEngine()  # exact mode needs no Aer
        with pytest.raises(ImportError, match=r"pip install qiskit-aer"):
            QiskitEngine(shots=100)


@pytest.mark.parametrize("gate", ["CRX", "CRY", "CRZ", "MCRY", None])
def test_shots_regressions_controlled_rotations_and_no_parameters(gate):
    """Guards two Aer 0.18 pitfalls the engine works around: bound angles of parametrised
    controlled rotations are ignored (act as 0), and an (N, 0) parameter array runs only the
    first row.  Each row must match the exact value within 5 standard errors."""
    c = qnn.Circuit(3)
    c.add("X", 0)
    c.add("H", 1)
    if gate is not None:
        (i,) = c.new_inputs(1)
        wires = (0, 2, 1) if gate == "MCRY" else (0, 1)
        c.add("H", 2) if gate == "MCRY" else None
        c.add(gate, wires, [qnn.Param.input(i)])
    c.measure_z()
    c.measure_pauli("X", [1])
    x = torch.tensor([[0.5], [1.7], [2.9], [-1.1]], dtype=torch.float64)[:, : c.n_inputs]
    if gate is None:
        x = torch.zeros(4, 0, dtype=torch.float64)
    w = torch.zeros(0, dtype=torch.float64)
    exact = QiskitEngine().run(c, x, w)
    shots = 3000
    sampled = QiskitEngine(shots=shots, seed=4).run(c, x, w)
    se = torch.sqrt((1 - exact**2).clamp_min(0) / shots)
    assert bool(((sampled - exact).abs() <= 5 * se + 1.0 / shots).all()), (sampled, exact)
    if gate is None:  # rows are independent samples, not copies of row 0
        assert len({round(float(v), 6) for v in sampled[:, 1]}) > 1


def test_amplitude_only_gradient_matches_torch_engine():
    """Amplitude features are not gate angles: their gradient comes from the exact
    two-extra-states rule of qnn.engines._autograd (here with no gate angle at all)."""
    c = qnn.Circuit(2)
    qnn.amplitude_embedding(c, 3, pad=0.4)
    c.add("H", 0)
    c.add("CNOT", (0, 1))
    c.measure_z()
    c.measure_pauli("XY", [0, 1])
    c.measure_probs([1, 0])
    x = torch.tensor([[0.3, -1.2, 0.5], [0.0, 0.0, 2.0]], dtype=torch.float64, requires_grad=True)
    w = torch.zeros(0, dtype=torch.float64)
    cot = torch.linspace(-1, 1, 2 * c.n_outputs, dtype=torch.float64).reshape(2, -1)
    (gq,) = torch.autograd.grad(QiskitEngine().run(c, x, w), [x], cot)
    (gt,) = torch.autograd.grad(get_engine("torch").run(c, x, w), [x], cot)
    torch.testing.assert_close(gq, gt, atol=1e-10, rtol=0)
