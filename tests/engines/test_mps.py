"""The torch engine's exact MPS path (``mode="mps"``, :mod:`qnn.engines._mps`) against the
dense reference and the one-op-per-gate path: values and gradients on random circuits of one-
and two-qubit gates, the folding of trailing gates into the readout, the exact bond bound,
the auto choice and its clear errors.  Every test runs twice: with the readout in the compiled
kernels (``_mps_kernel``, where numba is available: CI installs it) and in torch."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from test_torch_engine import _data, _run_grad, reference

from qnn import Circuit, Param, angle_embedding, strongly_entangling_layers
from qnn.engines._mps import MPSProgram, MPSRunner, why_not
from qnn.engines.torch_engine import TorchEngine
from qnn.testing import builder_circuit, random_circuit


@pytest.fixture(autouse=True, params=["kernel", "torch"])
def readout(request, monkeypatch):
    """The readout in the compiled kernels, or in torch (the kernels' reference)."""
    if request.param == "kernel":
        pytest.importorskip("numba")
    monkeypatch.setattr(MPSRunner, "use_kernel", request.param == "kernel")
    return request.param


def _check(c, seed, dtype=torch.float64, atol=1e-10, B=3):
    X, W = _data(c, B, seed, dtype)
    ref = reference(c, X.double().numpy(), W.double().numpy())
    out, gx, gw = _run_grad(c, X, W, "mps")
    np.testing.assert_allclose(out.double().numpy(), ref, atol=atol, rtol=0, err_msg="mps values")
    _, gx0, gw0 = _run_grad(c, X, W, "gates")
    torch.testing.assert_close(gx, gx0, atol=atol * 10, rtol=0, msg="mps d/dinputs")
    torch.testing.assert_close(gw, gw0, atol=atol * 10, rtol=0, msg="mps d/dweights")


@pytest.mark.parametrize("measure", ["z", "pauli", "probs", "mixed"])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_random_circuits_match_reference(n, measure):
    for seed in range(3):
        c = random_circuit(n, n_gates=12 + 4 * n, seed=seed, measure=measure, max_wires=2)
        assert why_not(c) is None
        _check(c, seed)


@pytest.mark.parametrize("n", [2, 5])
def test_complex64(n):
    c = random_circuit(n, n_gates=20, seed=4, measure="mixed", max_wires=2)
    _check(c, 1, torch.float32, 2e-5)


@pytest.mark.parametrize("kind", ["strongly_entangling", "basic_entangler", "hardware_efficient", "angle_x"])
def test_builders(kind):
    _check(builder_circuit(kind, 6, n_layers=3), 2, B=4)


def test_trailing_gates_fold_into_the_readout():
    """X, Y, CNOT, SWAP map Z words to signed Z words and Z, RZ, PhaseShift, CZ, CRZ commute
    with them: none of them is run, and the values still match."""
    c = Circuit(4)
    angle_embedding(c, rotation="Y")
    strongly_entangling_layers(c, 1, ranges=[1])
    tail = [("CNOT", (0, 2), []), ("X", 1, []), ("SWAP", (1, 3), []), ("RZ", 0, [Param.weight(0)]),
            ("CZ", (2, 3), []), ("Y", 2, []), ("CRZ", (1, 0), [Param.input(1)]), ("PhaseShift", 3, [Param.const(0.4)])]
    for name, wires, params in tail:
        c.add(name, wires, params)
    c.measure_z()
    c.measure_pauli("ZZ", [1, 3])
    prog = MPSProgram(c)
    assert len(prog.steps) == len(c.gates) - len(tail) - 4  # and the layer's CNOT ring before it
    assert -1 in prog.signs
    _check(c, 5)
    # an X/Y word is not folded: the tail is run
    c.measure_pauli("X", [0])
    assert len(MPSProgram(c).steps) == len(c.gates)
    _check(c, 6)


def test_all_weights_folded_away_still_give_zero_gradients():
    c = Circuit(2)
    c.add("RY", 0, [Param.input(c.new_inputs(1)[0])])
    c.new_weights("w", (1,))
    c.add("CNOT", (0, 1)).add("RZ", 1, [Param.weight(0)])
    c.measure_z()
    x = torch.tensor([[0.3]], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    out = TorchEngine(mode="mps").run(c, x, w)
    out.sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), [[np.cos(0.3), np.cos(0.3)]], atol=1e-12)
    assert w.grad is not None and float(w.grad.abs().sum()) == 0.0


def test_bonds_stay_at_the_exact_bound():
    """Without truncation the bonds only grow, but never past the exact Schmidt bound
    min(2**w, 2**(n - w)) (a wider bond is contracted into its neighbour)."""
    n = 8
    c = random_circuit(n, n_gates=200, seed=3, measure="z", max_wires=2)
    prog = MPSProgram(c)
    assert prog.bonds == [min(2**w, 2 ** (n - w)) for w in range(1, n)]
    _check(c, 3, B=2)


def test_shallow_circuit_bonds_and_readout_sharing():
    """Two strongly entangling layers (CNOT rings of range 1): bond dimension 4 at most, and the
    folded words (Z..ZI..I) read with ~3n transfer steps, not n per word."""
    n = 12
    c = Circuit(n)
    angle_embedding(c, rotation="Y")
    strongly_entangling_layers(c, 2, ranges=[1, 1])
    c.measure_z()
    prog = MPSProgram(c)
    assert prog.max_bond == 4
    assert len(prog.steps) == len(c.gates) - n  # the last ring folded into the readout
    nodes = sum(len(p) for p, _ in prog.left_levels) + sum(len(p) for p, _ in prog.right_levels)
    assert nodes <= 3 * n
    eng = TorchEngine()
    assert eng.choose_mode(c, 256) == "mps"
    X, W = _data(c, 5, 0, torch.float32)
    a = _run_grad(c, X, W, "mps")
    b = _run_grad(c, X, W, "blocked")
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, atol=2e-5, rtol=0)


def test_auto_choice():
    eng = TorchEngine()
    assert eng.choose_mode(builder_circuit("strongly_entangling", 4), 256) == "small"  # op overhead rules
    assert eng.choose_mode(builder_circuit("strongly_entangling", 8), 256) == "small"
    assert eng.choose_mode(builder_circuit("strongly_entangling", 16), 256) == "mps"
    assert eng.choose_mode(builder_circuit("amplitude", 12), 256) != "mps"  # not a product state
    deep = random_circuit(14, n_gates=400, seed=0, measure="z", max_wires=2)  # bonds saturate
    assert MPSProgram(deep).max_bond > eng.mps_max_bond
    assert eng.choose_mode(deep, 256) != "mps"
    off = TorchEngine()
    off.mps_min_qubits = 0
    assert off.choose_mode(builder_circuit("strongly_entangling", 16), 256) != "mps"


def test_forced_mps_rejects_what_it_cannot_run():
    c = builder_circuit("amplitude", 3)
    with pytest.raises(ValueError, match="mode 'mps' cannot run this circuit: it has an amplitude embedding"):
        TorchEngine(mode="mps").run(c, torch.rand(2, c.n_inputs) + 0.1, torch.zeros(c.n_weights))
    c = Circuit(3)
    c.add("MCRY", (0, 1, 2), [Param.const(0.3)])
    c.measure_z()
    with pytest.raises(ValueError, match="a 3-wire MCRY gate"):
        TorchEngine(mode="mps").run(c, torch.zeros(1, 0), torch.zeros(0))
    c = Circuit(2)
    c.add("H", 0)
    c.measure_hermitian(np.eye(2), [0])
    with pytest.raises(ValueError, match="a Hermitian observable"):
        TorchEngine(mode="mps").run(c, torch.zeros(1, 0), torch.zeros(0))


def test_memory_is_checked_first():
    c = builder_circuit("strongly_entangling", 16)
    eng = TorchEngine(mode="mps", max_memory_bytes=1_000)
    need = eng.estimate_bytes(c, 256, "mps")
    assert 0 < need < 2**30  # polynomial: far below a 16-qubit state's 134 MB per 256 samples
    with pytest.raises(MemoryError, match="path 'mps' needs about"):
        eng.run(c, torch.zeros(256, 16), torch.zeros(c.n_weights))


def test_auto_runs_registers_no_state_vector_fits():
    """40 qubits: no state vector fits (the state-vector paths refuse it with the numbers),
    the MPS path runs it and checks its own memory."""
    n = 40
    c = Circuit(n)
    angle_embedding(c, rotation="Y")
    strongly_entangling_layers(c, 2, ranges=[1, 1])
    c.measure_z()
    x = torch.rand(3, n, requires_grad=True)
    w = torch.rand(c.n_weights, requires_grad=True)
    eng = TorchEngine()
    out = eng.run(c, x, w)
    assert eng.last_mode == "mps" and out.shape == (3, n)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(w.grad).all()
    assert float(out.detach().abs().max()) <= 1 + 1e-5
    # a product state: <Z_i> = cos(x_i) exactly for an empty ansatz, at 40 qubits
    c0 = Circuit(n)
    angle_embedding(c0, rotation="Y")
    c0.measure_z()
    torch.testing.assert_close(TorchEngine().run(c0, x.detach(), torch.zeros(0)), torch.cos(x.detach()))
    with pytest.raises(MemoryError, match="path 'blocked' needs about"):
        TorchEngine(mode="blocked").run(c, x, w)


def test_engine_pickles_after_an_mps_run():
    c = builder_circuit("strongly_entangling", 12)
    eng = TorchEngine()
    X, W = _data(c, 4, 0, torch.float32)
    out = eng.run(c, X, W)
    assert eng.last_mode in ("mps", "small")
    for e2 in (pickle.loads(pickle.dumps(eng)), copy.deepcopy(eng)):
        e2.mode = "mps"
        torch.testing.assert_close(e2.run(c, X, W), TorchEngine(mode="mps").run(c, X, W))
    torch.testing.assert_close(out, TorchEngine(mode="blocked").run(c, X, W), atol=2e-5, rtol=0)


def test_gradcheck():
    c = random_circuit(3, 14, seed=2, measure="mixed", max_wires=2)
    X, W = _data(c, 2, 0)
    eng = TorchEngine(mode="mps")
    assert torch.autograd.gradcheck(lambda x, w: eng.run(c, x, w), (X.requires_grad_(), W.requires_grad_()),
                                    eps=1e-6, atol=1e-6)
