"""Cross-engine parity: torch == PennyLane default.qubit == Qiskit exact Statevector.

Values and gradients (inputs and weights, each engine differentiated by torch autograd through
its own path: torch backprop, PennyLane backprop / parameter-shift, Qiskit parameter-shift) on
``qnn.testing.random_circuit`` (every gate kind, 1-8 qubits, amplitude variants) and on every
builder.  Tolerances: 1e-5 for float32 (complex64 states in the torch engine), 1e-10 for float64.
The default run uses a fast subset of seeds; ``-m slow`` runs the full grid.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qnn.engines import get_engine
from qnn.testing import BUILDER_KINDS, builder_circuit, random_circuit

pytest.importorskip("pennylane", reason="PennyLane not installed (pip install pennylane)")
pytest.importorskip("qiskit", reason="Qiskit not installed (pip install qiskit)")

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.fixture(scope="module")
def engines():
    return {
        "torch": get_engine("torch"),
        "pennylane": get_engine("pennylane", device="default.qubit", diff_method="backprop"),
        "qiskit": get_engine("qiskit"),
    }


def _data(circuit, batch, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, circuit.n_inputs, generator=g, dtype=torch.float64) * 2 - 1) * np.pi
    w = (torch.rand(circuit.n_weights, generator=g, dtype=torch.float64) * 2 - 1) * np.pi
    cot = torch.randn(batch, circuit.n_outputs, generator=g, dtype=torch.float64)
    return x.to(dtype), w.to(dtype), cot.to(dtype)


def _value_and_grads(engine, circuit, x, w, cot):
    x = x.clone().requires_grad_(True)
    w = w.clone().requires_grad_(True)
    y = engine.run(circuit, x, w)
    assert y.shape == (x.shape[0], circuit.n_outputs)
    assert y.dtype == x.dtype
    gx, gw = torch.autograd.grad(y, [x, w], cot)
    return y.detach(), gx, gw


def _assert_close(a, b, tol, what):
    err = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
    assert err <= tol, f"{what}: max |diff| = {err:.3e} > {tol:.0e}"


def _compare(engs, names, circuit, dtype, seed, batch=2):
    x, w, cot = _data(circuit, batch, dtype, seed)
    res = {n: _value_and_grads(engs[n], circuit, x, w, cot) for n in names}
    ref = names[0]
    for n in names[1:]:
        for k, what in enumerate(("values", "d/dinputs", "d/dweights")):
            _assert_close(res[n][k], res[ref][k], TOL[dtype], f"{n} vs {ref} {what} ({circuit}, seed {seed}, {dtype})")
    return res


# ------------------------------------------------------------------ PennyLane vs Qiskit (no torch engine)
FAST_RANDOM = [(n, s, amp) for n in (1, 2, 3, 4) for s in (0, 1) for amp in (False, True)]
SLOW_RANDOM = [(n, s, amp) for n in range(1, 9) for s in range(2, 8) for amp in (False, True)]


@pytest.mark.parametrize("n,seed,amp", FAST_RANDOM)
def test_pennylane_equals_qiskit_random(engines, n, seed, amp):
    c = random_circuit(n, n_gates=20, seed=seed, amplitude=amp)
    _compare(engines, ["qiskit", "pennylane"], c, torch.float64, seed)


# ------------------------------------------------------------------ torch vs PennyLane vs Qiskit
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("n,seed,amp", FAST_RANDOM + [(6, 0, False), (8, 1, True)])
def test_torch_equals_pennylane_and_qiskit_random(engines, n, seed, amp, dtype):
    c = random_circuit(n, n_gates=20, seed=seed, amplitude=amp)
    _compare(engines, ["torch", "pennylane", "qiskit"], c, dtype, seed)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("n,seed,amp", SLOW_RANDOM)
def test_torch_equals_pennylane_and_qiskit_random_full(engines, n, seed, amp, dtype):
    c = random_circuit(n, n_gates=30, seed=seed, amplitude=amp)
    _compare(engines, ["torch", "pennylane", "qiskit"], c, dtype, seed, batch=3)


@pytest.mark.parametrize("measure", ["z", "pauli", "probs"])
def test_parity_each_measurement_kind(engines, measure):
    c = random_circuit(3, n_gates=25, seed=11, measure=measure)
    _compare(engines, ["torch", "pennylane", "qiskit"], c, torch.float64, 11)


@pytest.mark.parametrize("kind", BUILDER_KINDS)
@pytest.mark.parametrize("n", [1, 3])
def test_parity_builders(engines, kind, n):
    c = builder_circuit(kind, n, n_layers=2)
    _compare(engines, ["torch", "pennylane", "qiskit"], c, torch.float64, 5)
    _compare(engines, ["torch", "pennylane", "qiskit"], c, torch.float32, 6)


@pytest.mark.slow
@pytest.mark.parametrize("kind", BUILDER_KINDS)
@pytest.mark.parametrize("n", [2, 4, 5, 6, 7, 8])
def test_parity_builders_full(engines, kind, n):
    c = builder_circuit(kind, n, n_layers=3)
    for dtype in (torch.float64, torch.float32):
        _compare(engines, ["torch", "pennylane", "qiskit"], c, dtype, n, batch=3)


def test_every_gate_kind_is_covered():
    """The fast random grid really exercises every gate kind (guards the parity claim)."""
    from qnn.circuit import GATES

    seen = {g.name for n, s, amp in FAST_RANDOM for g in random_circuit(n, 20, seed=s, amplitude=amp).gates}
    assert seen == set(GATES)


# ------------------------------------------------------------------ parameter shift vs backprop
@pytest.mark.parametrize("n,seed,amp", [(2, 3, False), (3, 4, True), (4, 5, False)])
def test_parameter_shift_equals_backprop(engines, n, seed, amp):
    """Parameter-shift gradients (Qiskit exact through qnn's _autograd; PennyLane's own
    parameter-shift) equal the torch engine's backprop, and central finite differences agree."""
    c = random_circuit(n, n_gates=20, seed=seed, amplitude=amp)
    engs = dict(engines)
    engs["pl_shift"] = get_engine("pennylane", device="default.qubit", diff_method="parameter-shift")
    res = _compare(engs, ["torch", "qiskit", "pl_shift"], c, torch.float64, seed)
    # central finite differences of the torch engine's values, on the same cotangent
    x, w, cot = _data(c, 2, torch.float64, seed)
    eng, eps = engines["torch"], 1e-6

    def f(xx, ww):
        return float((eng.run(c, xx, ww) * cot).sum())

    fd_w = torch.tensor([(f(x, w + eps * e) - f(x, w - eps * e)) / (2 * eps) for e in torch.eye(c.n_weights, dtype=torch.float64)])
    fd_x = torch.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            d = torch.zeros_like(x)
            d[i, j] = eps
            fd_x[i, j] = (f(x + d, w) - f(x - d, w)) / (2 * eps)
    _assert_close(res["qiskit"][1], fd_x, 1e-6, "parameter shift vs finite differences (inputs)")
    _assert_close(res["qiskit"][2], fd_w, 1e-6, "parameter shift vs finite differences (weights)")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA device not available")
@pytest.mark.parametrize("name", ["pennylane", "qiskit"])
def test_cuda_inputs_give_cuda_outputs_equal_to_cpu(engines, name):
    """Non-torch engines compute on the CPU and hand results (and gradients) back on the
    input's device; values equal the CPU run and the torch engine's CUDA run."""
    c = random_circuit(3, n_gates=15, seed=2, amplitude=True)
    x, w, cot = _data(c, 2, torch.float64, 2)
    cpu = _value_and_grads(engines[name], c, x, w, cot)
    gpu = _value_and_grads(engines[name], c, x.cuda(), w.cuda(), cot.cuda())
    ref = _value_and_grads(engines["torch"], c, x.cuda(), w.cuda(), cot.cuda())
    for a, b, r in zip(cpu, gpu, ref):
        assert b.device.type == "cuda"
        _assert_close(b.cpu(), a, 1e-12, f"{name} cuda vs cpu")
        _assert_close(b.cpu(), r.cpu(), 1e-10, f"{name} vs torch on cuda")
