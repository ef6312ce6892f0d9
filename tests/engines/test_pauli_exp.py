"""PauliExp gates and Hermitian observables: the data model, every engine against the dense
reference of ``test_torch_engine.py`` and against each other (values and gradients w.r.t.
inputs and weights), the generalised parameter-shift rule against finite differences, and the
refusals.  Tolerances: 1e-10 in float64 (exact simulators), 1e-5 in float32; shot engines
(Qiskit Aer sampler, IBM runtime in local mode on a noiseless AerSimulator) within 0.1 at
20000 shots (about 10 standard errors of a +-1 observable)."""

from __future__ import annotations

import copy
import math
import pickle
import warnings

import numpy as np
import pytest
import torch

from qnn.circuit import Circuit, Measurement, Param, PauliExp
from qnn.engines import get_engine
from qnn.engines.torch_engine import TorchEngine
from qnn.pauli import pauli_exp_matrix, pauli_exp_shift_coefficients, pauli_labels, pauli_matrices
from qnn.testing import random_pauli_circuit
from test_torch_engine import reference  # the dense Kronecker-product reference

pytest.importorskip("pennylane", reason="PennyLane not installed (pip install pennylane)")
pytest.importorskip("qiskit", reason="Qiskit not installed (pip install qiskit)")

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def _data(circuit, batch, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, circuit.n_inputs, generator=g, dtype=torch.float64) * 2 - 1
    w = (torch.rand(circuit.n_weights, generator=g, dtype=torch.float64) * 2 - 1) * np.pi
    cot = torch.randn(batch, circuit.n_outputs, generator=g, dtype=torch.float64)
    return x.to(dtype), w.to(dtype), cot.to(dtype)


def _value_and_grads(engine, circuit, x, w, cot):
    x = x.clone().requires_grad_(True)
    w = w.clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = engine.run(circuit, x, w)
        gx, gw = torch.autograd.grad(y, [x, w], cot)
    return y.detach(), gx, gw


def _err(a, b):
    if a.is_complex() or b.is_complex():
        return float((a.to(torch.complex128) - b.to(torch.complex128)).abs().max())
    return float((a.double() - b.double()).abs().max())


@pytest.fixture(scope="module")
def engines():
    return {
        "torch": get_engine("torch"),
        "pennylane": get_engine("pennylane", device="default.qubit", diff_method="backprop"),
        "pl_shift": get_engine("pennylane", device="default.qubit", diff_method="parameter-shift"),
        "qiskit": get_engine("qiskit"),
    }


# ------------------------------------------------------------------ data model
def test_pauli_exp_round_trips_and_counts():
    c = Circuit(3)
    c.new_inputs(2)
    c.new_weights("w", (3,))
    c.add("RX", 0, [Param.input(0)])
    c.add_pauli_exp([2, 0], ["XY", "ZI", "IZ"], [Param.weight(0, 0.5, 0.1), Param.input(1, 2.0), 0.25])
    c.add("CNOT", (1, 2))
    c.measure_hermitian(np.array([[1, 1j], [-1j, 0]]), [1])
    g = c.gates[1]
    assert isinstance(g, PauliExp) and g.name == "PauliExp" and g.words == ("XY", "ZI", "IZ")
    assert eval(repr(g), {"PauliExp": PauliExp, "Param": Param}) == g
    assert pickle.loads(pickle.dumps(g)) == g and copy.deepcopy(g) == g and hash(g) == hash(copy.deepcopy(g))
    m = c.measurements[0]
    assert eval(repr(m), {"Measurement": Measurement}) == m
    assert pickle.loads(pickle.dumps(m)) == m and m.n_outputs == 1
    assert c.depth == 3 and c.n_params == 3 and c.n_outputs == 1
    assert pickle.loads(pickle.dumps(c)).gates == c.gates


@pytest.mark.parametrize("call,exc,match", [
    (lambda c: c.add_pauli_exp([0, 1], ["X"], [0.1]), ValueError,
     r"Circuit: each PauliExp word must be a str of I/X/Y/Z with one letter per wire \(2\); got 'X'"),
    (lambda c: c.add_pauli_exp([0], ["Q"], [0.1]), ValueError, r"one letter per wire \(1\); got 'Q'"),
    (lambda c: c.add_pauli_exp([0, 1], ["II"], [0.1]), ValueError, r"must not be the identity .*; got 'II'"),
    (lambda c: c.add_pauli_exp([0], ["X", "X"], [0.1, 0.2]), ValueError, r"words must be distinct; got \['X'\]"),
    (lambda c: c.add_pauli_exp([0], [], []), ValueError, r"PauliExp needs at least one Pauli word; got none"),
    (lambda c: c.add_pauli_exp([0], "X", [0.1]), TypeError, r"words must be a sequence of Pauli words"),
    (lambda c: c.add_pauli_exp([0], ["X", "Y"], [0.1]), ValueError,
     r"Circuit: PauliExp needs one coefficient per word \(2\); got 1"),
    (lambda c: c.add_pauli_exp([0], ["X"], [Param.input(5)]), ValueError, r"input index 5 not reserved"),
    (lambda c: c.add_pauli_exp([0, 7], ["XX"], [0.1]), ValueError, r"PauliExp wire must be in \[0, 1\]; got 7"),
    (lambda c: c.add_pauli_exp([0], ["X"], [float("nan")]), ValueError, r"must be finite; got nan"),
    (lambda c: PauliExp((0,), ("X",), (0.1,)), ValueError, r"PauliExp: needs one Param per word \(1\)"),
    (lambda c: c.measure_hermitian([[1, 2], [3, 4]]), ValueError, r"must equal its conjugate transpose; got max"),
    (lambda c: c.measure_hermitian([[1, 0, 0], [0, 1, 0], [0, 0, 1]]), ValueError,
     r"square with a power-of-2 side >= 2; got shape \(3, 3\)"),
    (lambda c: c.measure_hermitian([[1, 0], [0, float("inf")]]), ValueError, r"must be finite; got NaN or inf"),
    (lambda c: c.measure_hermitian(np.eye(4), [0]), ValueError, r"4x4 hermitian matrix needs 2 wires; got 1"),
    (lambda c: Measurement("hermitian", (0,), matrix=np.eye(4)), ValueError,
     r"Measurement: hermitian matrix on 1 wire\(s\) must be 2x2; got shape \(4, 4\)"),
    (lambda c: Measurement("probs", (0,), matrix=((1, 0), (0, 1))), ValueError, r"probs takes no matrix"),
])
def test_construction_refuses(call, exc, match):
    c = Circuit(2)
    with pytest.raises(exc, match=match):
        call(c)


# ------------------------------------------------------------------ qnn.pauli helpers
def test_pauli_exp_matrix_and_shift_rule_against_finite_differences():
    torch.manual_seed(0)
    words = ["XY", "ZZ", "YI", "IX"]
    c = torch.randn(4, dtype=torch.float64)
    u = pauli_exp_matrix(words, c)
    p = {w: m for w, m in zip(pauli_labels(2), pauli_matrices(2))}
    gen = sum(ck * p[w] for ck, w in zip(c, words))
    assert _err(u, torch.linalg.matrix_exp(1j * gen)) < 1e-13
    obs = torch.randn(4, 4, dtype=torch.complex128)
    obs = obs + obs.mH
    phi = torch.randn(4, dtype=torch.complex128)
    phi = phi / phi.norm()

    def e(mat):
        s = mat @ phi
        return float((s.conj() @ obs @ s).real)

    omega = pauli_exp_shift_coefficients(words, c)
    rot = [torch.linalg.matrix_exp(sg * 1j * math.pi / 4 * pm) for pm in pauli_matrices(2) for sg in (1, -1)]
    d = torch.tensor([e(u @ rot[2 * l]) - e(u @ rot[2 * l + 1]) for l in range(15)], dtype=torch.float64)
    eps = 1e-6
    fd = torch.tensor([(e(pauli_exp_matrix(words, c + eps * ek)) - e(pauli_exp_matrix(words, c - eps * ek))) / (2 * eps)
                       for ek in torch.eye(4, dtype=torch.float64)], dtype=torch.float64)
    assert _err(omega @ d, fd) < 1e-8
    cc = c.clone().requires_grad_(True)
    s = pauli_exp_matrix(words, cc) @ phi
    (s.conj() @ obs @ s).real.backward()
    assert _err(cc.grad, omega @ d) < 1e-12


# ------------------------------------------------------------------ engines
FAST = [(n, s, amp) for n in (1, 2, 3) for s in (0, 1) for amp in (False, True)]
SLOW = [(4, 2, False), (4, 3, True)]


@pytest.mark.parametrize("n,seed,amp", FAST)
def test_torch_paths_equal_dense_reference(n, seed, amp):
    c = random_pauli_circuit(n, 10, seed, amplitude=amp)
    x, w, _ = _data(c, 3, torch.float64, seed)
    ref = reference(c, x.numpy(), w.numpy())
    for mode in ("gates", "blocked", "adjoint"):
        assert _err(TorchEngine(mode=mode).run(c, x, w), torch.as_tensor(ref)) < TOL[torch.float64], mode


def test_torch_unitary_path_with_weight_only_pauli_exp():
    c = Circuit(3)
    c.new_weights("w", (4,))
    c.add("H", 0)
    c.add_pauli_exp([2, 1], ["XY", "ZX", "YY"], [Param.weight(0), Param.weight(1), Param.const(0.3)])
    c.add("CNOT", (0, 2))
    c.add_pauli_exp([0], ["Y"], [Param.weight(3)])
    c.measure_probs()
    c.measure_hermitian(np.diag([1.0, 2.0, 3.0, 4.0]), [2, 0])
    c.n_inputs = 0
    x, w, _ = _data(c, 8, torch.float64, 3)
    eng = TorchEngine(mode="unitary")
    assert _err(eng.run(c, x, w), torch.as_tensor(reference(c, x.numpy(), w.numpy()))) < 1e-10


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("n,seed,amp", FAST)
def test_engines_agree_values_and_gradients(engines, n, seed, amp, dtype):
    c = random_pauli_circuit(n, 10, seed, amplitude=amp)
    x, w, cot = _data(c, 2, dtype, seed)
    # PennyLane's own parameter shift of SpecialUnitary is slow beyond 2 qubits
    names = ["torch", "pennylane", "qiskit"] + (["pl_shift"] if dtype == torch.float64 and not amp and n <= 2 else [])
    _agree(engines, names, c, x, w, cot, dtype, seed)


@pytest.mark.slow
@pytest.mark.parametrize("n,seed,amp", SLOW)
def test_engines_agree_values_and_gradients_4_qubits(engines, n, seed, amp):
    c = random_pauli_circuit(n, 10, seed, amplitude=amp)
    x, w, cot = _data(c, 2, torch.float64, seed)
    _agree(engines, ["torch", "pennylane", "qiskit"], c, x, w, cot, torch.float64, seed)


def _agree(engines, names, c, x, w, cot, dtype, seed):
    res = {k: _value_and_grads(engines[k], c, x, w, cot) for k in names}
    for k in names[1:]:
        for i, what in enumerate(("values", "d/dinputs", "d/dweights")):
            err = _err(res[k][i], res["torch"][i])
            assert err < TOL[dtype], f"{k} vs torch {what}: {err:.2e} ({c}, seed {seed})"


def test_generalised_shift_equals_central_differences(engines):
    """The Qiskit engine's gradient (generalised parameter shift, through _autograd) equals
    central differences of its own values."""
    c = random_pauli_circuit(2, 8, 7, n_pauli=3)
    x, w, cot = _data(c, 2, torch.float64, 7)
    eng = engines["qiskit"]
    _, gx, gw = _value_and_grads(eng, c, x, w, cot)
    eps = 1e-6

    def f(xx, ww):
        return float((eng.run(c, xx, ww) * cot).sum())

    fd_w = torch.tensor([(f(x, w + eps * e) - f(x, w - eps * e)) / (2 * eps)
                         for e in torch.eye(c.n_weights, dtype=torch.float64)], dtype=torch.float64)
    fd_x = torch.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            d = torch.zeros_like(x)
            d[i, j] = eps
            fd_x[i, j] = (f(x + d, w) - f(x - d, w)) / (2 * eps)
    assert _err(gw, fd_w) < 1e-6 and _err(gx, fd_x) < 1e-6


def test_ibm_local_close_to_exact(engines):
    from qiskit_aer import AerSimulator

    c = random_pauli_circuit(2, 6, 1, n_pauli=2, hermitian=False)
    c.measure_hermitian(np.array([[0.5, 0.2 - 0.1j], [0.2 + 0.1j, -0.3]]), [1])
    x, w, cot = _data(c, 2, torch.float64, 1)
    exact = _value_and_grads(engines["torch"], c, x, w, cot)
    ibm = get_engine("ibm", backend=AerSimulator(), shots=20000, seed=1)
    got = _value_and_grads(ibm, c, x, w, cot)
    assert _err(got[0], exact[0]) < 0.1 and _err(got[2], exact[2]) < 0.2


@pytest.mark.slow
def test_qiskit_shots_close_to_exact(engines):
    x, w, _ = _data(random_pauli_circuit(2, 6, 1, n_pauli=2, hermitian=False), 2, torch.float64, 1)
    c2 = random_pauli_circuit(2, 6, 1, n_pauli=2, hermitian=False)
    shots = get_engine("qiskit", shots=20000, seed=2)
    got = _value_and_grads(shots, c2, x, w, torch.ones(2, c2.n_outputs, dtype=torch.float64))
    ref = _value_and_grads(engines["torch"], c2, x, w, torch.ones(2, c2.n_outputs, dtype=torch.float64))
    assert _err(got[0], ref[0]) < 0.1 and _err(got[2], ref[2]) < 0.3


def test_shots_refuse_hermitian():
    c = Circuit(1)
    c.measure_hermitian([[1, 0], [0, 0]])
    with pytest.raises(ValueError, match=r"QiskitEngine: hermitian measurements are evaluated exactly only"):
        get_engine("qiskit", shots=100).run(c, torch.zeros(1, 0), torch.zeros(0))
