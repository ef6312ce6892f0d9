"""Tests of the torch engine: every path against an independent dense numpy reference,
against each other, and three independent gradient checks (gradcheck, parameter shift,
central differences of the reference)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from qnn.circuit import GATES, Circuit, Param, amplitude_embedding, angle_embedding, strongly_entangling_layers
from qnn.engines import get_engine
from qnn.engines._mps import MPSRunner, kernel_readout
from qnn.engines._mps import why_not as mps_why_not
from qnn.engines.torch_engine import MODES, MemoryLimitError, TorchEngine
from qnn.testing import BUILDER_KINDS, builder_circuit, random_circuit

PATHS = ("gates", "blocked", "unitary", "adjoint", "small", "mps")

# ----------------------------------------------------------------------------- reference
# Dense 2^n x 2^n matrices built only from Kronecker products of single-wire operators.
I2 = np.eye(2, dtype=complex)
X2 = np.array([[0, 1], [1, 0]], dtype=complex)
Y2 = np.array([[0, -1j], [1j, 0]], dtype=complex)
Z2 = np.diag([1.0, -1.0]).astype(complex)
P0 = np.diag([1.0, 0.0]).astype(complex)
P1 = np.diag([0.0, 1.0]).astype(complex)
PAULI = {"I": I2, "X": X2, "Y": Y2, "Z": Z2}


def _rx(t):
    return np.cos(t / 2) * I2 - 1j * np.sin(t / 2) * X2


def _ry(t):
    return np.cos(t / 2) * I2 - 1j * np.sin(t / 2) * Y2


def _rz(t):
    return np.cos(t / 2) * I2 - 1j * np.sin(t / 2) * Z2


ONE = {
    "RX": lambda a: _rx(a[0]),
    "RY": lambda a: _ry(a[0]),
    "RZ": lambda a: _rz(a[0]),
    "PhaseShift": lambda a: np.diag([1.0, np.exp(1j * a[0])]),
    "Rot": lambda a: _rz(a[2]) @ _ry(a[1]) @ _rz(a[0]),
    "H": lambda a: (X2 + Z2) / np.sqrt(2),
    "X": lambda a: X2,
    "Y": lambda a: Y2,
    "Z": lambda a: Z2,
}


def _kron_ops(n, ops: dict):
    """Kronecker product over wires 0..n-1 (wire 0 first) with ``ops[w]`` or identity."""
    out = np.eye(1, dtype=complex)
    for w in range(n):
        out = np.kron(out, ops.get(w, I2))
    return out


def _controlled(n, controls, target, u):
    """sum over control patterns: identity unless all controls are 1, then ``u`` on target."""
    all_one = _kron_ops(n, {c: P1 for c in controls})
    return np.eye(2**n, dtype=complex) - all_one + _kron_ops(n, {**{c: P1 for c in controls}, target: u})


def dense_gate(name, wires, angles, n):
    if name in ONE:
        return _kron_ops(n, {wires[0]: ONE[name](angles)})
    if name == "CNOT":
        return _controlled(n, [wires[0]], wires[1], X2)
    if name == "CZ":
        return _controlled(n, [wires[0]], wires[1], Z2)
    if name in ("CRX", "CRY", "CRZ"):
        return _controlled(n, [wires[0]], wires[1], ONE[name[1:]](angles))
    if name == "MCRY":
        return _controlled(n, list(wires[:-1]), wires[-1], _ry(angles[0]))
    if name == "SWAP":
        a, b = wires
        return sum(_kron_ops(n, {a: P, b: P}) for P in (I2, X2, Y2, Z2)) / 2
    raise KeyError(name)


def _embed(n, wires, m):
    """A k-wire operator ``m`` (first listed wire most significant) on ``wires`` of n wires."""
    k = len(wires)
    rest = [w for w in range(n) if w not in wires]
    full = np.kron(m, np.eye(2 ** len(rest))).reshape([2] * (2 * n))
    order = list(wires) + rest  # axis j of full (and n + j) is wire order[j]
    perm = [order.index(w) for w in range(n)]
    return full.transpose(perm + [n + p for p in perm]).reshape(2**n, 2**n)


def dense_pauli_exp(words, wires, angles, n):
    """exp(i sum_k a_k P_k) from Kronecker products and a dense eigendecomposition."""
    gen = sum(a * _kron_ops(n, {w: PAULI[ch] for w, ch in zip(wires, word)}) for a, word in zip(angles, words))
    lam, v = np.linalg.eigh(gen)
    return (v * np.exp(1j * lam)) @ v.conj().T


def _angle(p, x, w):
    if p.kind == "input":
        return x[p.index] * p.scale + p.offset
    if p.kind == "weight":
        return w[p.index] * p.scale + p.offset
    return p.offset


def reference(circuit: Circuit, X: np.ndarray, W: np.ndarray) -> np.ndarray:
    n = circuit.n_qubits
    rows = []
    for x in X:
        psi = np.zeros(2**n, dtype=complex)
        psi[0] = 1
        if circuit.state_prep is not None:
            sp = circuit.state_prep
            v = np.full(2**n, sp.pad, dtype=float)
            v[: sp.n_features] = x[sp.start: sp.start + sp.n_features]
            psi = v / np.linalg.norm(v) + 0j
        for g in circuit.gates:
            angles = [_angle(p, x, W) for p in g.params]
            if g.name == "PauliExp":
                psi = dense_pauli_exp(g.words, g.wires, angles, n) @ psi
            else:
                psi = dense_gate(g.name, g.wires, angles, n) @ psi
        out = []
        for m in circuit.measurements:
            if m.kind == "hermitian":
                O = _embed(n, m.wires, np.array(m.matrix))
                out.append(float(np.real(psi.conj() @ O @ psi)))
            elif m.kind == "expval":
                O = _kron_ops(n, {w: PAULI[c] for w, c in zip(m.wires, m.pauli)})
                out.append(float(np.real(psi.conj() @ O @ psi)))
            else:
                for j in range(2 ** len(m.wires)):
                    bits = [(j >> (len(m.wires) - 1 - t)) & 1 for t, _ in enumerate(m.wires)]
                    P = _kron_ops(n, {w: (P1 if b else P0) for w, b in zip(m.wires, bits)})
                    out.append(float(np.real(psi.conj() @ P @ psi)))
        rows.append(out)
    return np.array(rows)


# ----------------------------------------------------------------------------- helpers
def _data(c: Circuit, B: int, seed: int, dtype=torch.float64):
    rng = np.random.default_rng(seed + 1000)
    X = rng.normal(size=(B, c.n_inputs))
    W = rng.normal(size=c.n_weights)
    return torch.tensor(X, dtype=dtype), torch.tensor(W, dtype=dtype)


def _run_grad(c, X, W, mode, g=None, **kw):
    x = X.clone().requires_grad_()
    w = W.clone().requires_grad_()
    out = TorchEngine(mode=mode, **kw).run(c, x, w)
    if g is None:
        g = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    gx, gw = torch.autograd.grad((out * g).sum(), (x, w), allow_unused=True)
    gx = torch.zeros_like(x) if gx is None else gx
    gw = torch.zeros_like(w) if gw is None else gw
    return out.detach(), gx, gw


def _paths_for(c):
    eng = TorchEngine()
    plan = eng.plan(c)
    small_ok = plan.unitary_ok and [p for p, _ in plan.z_cols] == list(range(plan.n_outputs)) and bool(plan.z_cols)
    mps_ok = mps_why_not(c) is None
    return [m for m in PATHS if (m != "unitary" or plan.unitary_ok) and (m != "small" or small_ok)
            and (m != "mps" or mps_ok)]


def _circuits(n, seeds, amplitude_too=True):
    for seed in seeds:
        yield random_circuit(n, n_gates=12 + 4 * n, seed=seed)
        if amplitude_too:
            yield random_circuit(n, n_gates=12 + 4 * n, seed=seed, amplitude=True, measure="z" if seed % 2 else "mixed")


def _check_all_paths(c, seed, dtype, atol_val, atol_grad, B=3):
    X, W = _data(c, B, seed, dtype)
    ref = reference(c, X.double().numpy(), W.double().numpy())
    base = None
    for mode in _paths_for(c):
        out, gx, gw = _run_grad(c, X, W, mode)
        assert out.dtype == dtype
        np.testing.assert_allclose(out.double().numpy(), ref, atol=atol_val, rtol=0, err_msg=f"{mode} values")
        if base is None:
            base = (gx, gw)
        else:
            torch.testing.assert_close(gx, base[0], atol=atol_grad, rtol=0, msg=f"{mode} d/dinputs")
            torch.testing.assert_close(gw, base[1], atol=atol_grad, rtol=0, msg=f"{mode} d/dweights")


# ----------------------------------------------------------------------------- reference itself
def test_reference_matches_known_values():
    c = Circuit(2)
    c.add("H", 0).add("CNOT", (0, 1))
    c.measure_probs()
    c.measure_pauli("XX")
    c.measure_pauli("ZI")
    np.testing.assert_allclose(reference(c, np.zeros((1, 0)), np.zeros(0)), [[0.5, 0, 0, 0.5, 1.0, 0.0]], atol=1e-12)
    out = TorchEngine().run(c, torch.zeros(1, 0), torch.zeros(0))
    np.testing.assert_allclose(out.numpy(), [[0.5, 0, 0, 0.5, 1.0, 0.0]], atol=1e-6)


def test_random_circuits_cover_every_gate():
    seen = set()
    for n in range(1, 9):
        for c in _circuits(n, range(3)):
            seen |= {g.name for g in c.gates}
    assert seen == set(GATES)


# ----------------------------------------------------------------------------- values + grads
@pytest.mark.parametrize("n", range(1, 9))
def test_paths_match_reference_complex128(n):
    for i, c in enumerate(_circuits(n, range(2) if n > 5 else range(4))):
        _check_all_paths(c, i, torch.float64, 1e-10, 1e-10)


@pytest.mark.parametrize("n", [1, 3, 5, 8])
def test_paths_match_reference_complex64(n):
    for i, c in enumerate(_circuits(n, range(2))):
        _check_all_paths(c, i, torch.float32, 1e-5, 1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("n", range(1, 9))
def test_paths_match_reference_many_seeds(n):
    for i, c in enumerate(_circuits(n, range(4, 24 if n < 7 else 10))):
        _check_all_paths(c, i, torch.float64, 1e-10, 1e-10)
        _check_all_paths(c, i, torch.float32, 1e-5, 2e-4)


@pytest.mark.parametrize("kind", BUILDER_KINDS)
@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_builders_all_paths(kind, n):
    c = builder_circuit(kind, n, n_layers=2)
    assert "unitary" in _paths_for(c)
    _check_all_paths(c, n, torch.float64, 1e-10, 1e-10, B=4)
    _check_all_paths(c, n, torch.float32, 1e-5, 1e-4, B=4)


@pytest.mark.parametrize("name", sorted(GATES))
def test_each_gate_alone(name):
    """Each gate after a non-trivial product state, with input-, weight- and constant-bound angles."""
    n = 4
    nw, npar = GATES[name]
    nw = 3 if nw is None else nw
    for wires in ([0, 1, 2][:nw], [3, 1, 0][:nw], [2, 0, 3][:nw]):
        c = Circuit(n)
        idx = c.new_inputs(n)
        wi = c.new_weights("w", (n + 3,))
        for q in range(n):
            c.add("RX" if q % 2 else "RY", q, [Param.input(idx[q])])
            c.add("Rot", q, [Param.weight(wi[q]), Param.const(0.3), Param.weight(wi[n])])
        params = [Param.input(0, 0.7, 0.1), Param.weight(n + 1, -0.5), Param.const(1.1)][:npar]
        c.add(name, wires, params)
        c.add("RX", wires[0], [Param.weight(n + 2)])
        c.measure_z()
        c.measure_pauli("XY", [wires[0], (wires[0] + 1) % n])
        c.measure_probs([wires[-1]])
        _check_all_paths(c, 7, torch.float64, 1e-10, 1e-10)


def test_sel_matches_pennylane_convention_on_known_circuit():
    """Rot = RZ(omega) RY(theta) RZ(phi), CNOT ring, wire 0 most significant (checked by the reference)."""
    c = Circuit(3)
    angle_embedding(c, rotation="X")
    strongly_entangling_layers(c, n_layers=2)
    c.measure_z()
    c.measure_probs([2, 0])
    _check_all_paths(c, 3, torch.float64, 1e-10, 1e-10, B=5)


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("mode", PATHS)
def test_gradcheck(mode):
    for c in (builder_circuit("strongly_entangling", 2, 1), builder_circuit("amplitude", 2, 1),
              random_circuit(3, 12, seed=5, measure="mixed")):
        if mode not in _paths_for(c):
            continue
        X, W = _data(c, 2, 0)
        eng = TorchEngine(mode=mode)
        assert torch.autograd.gradcheck(lambda x, w: eng.run(c, x, w), (X.requires_grad_(), W.requires_grad_()),
                                        eps=1e-6, atol=1e-6)


def _shift_param(c: Circuit, gi: int, pi: int, delta: float) -> Circuit:
    new = Circuit(c.n_qubits)
    new.gates = list(c.gates)
    g = c.gates[gi]
    ps = list(g.params)
    ps[pi] = dataclasses.replace(ps[pi], offset=ps[pi].offset + delta)
    new.gates[gi] = dataclasses.replace(g, params=tuple(ps))
    new.state_prep, new.measurements = c.state_prep, c.measurements
    new.n_inputs, new.n_weights, new.weight_blocks = c.n_inputs, c.n_weights, c.weight_blocks
    return new


def parameter_shift(c: Circuit, X, W, g):
    """d(sum g*f)/dw and d/dx by the two-term rule (generators with eigenvalues +-1/2 or {0,1})
    and the four-term rule for controlled rotations (eigenvalues {0, +-1/2})."""
    eng = TorchEngine(mode="gates")
    f = lambda cc: float((eng.run(cc, X, W) * g).sum())  # noqa: E731
    gx = torch.zeros_like(X)
    gw = torch.zeros_like(W)
    c1, c2 = (math.sqrt(2) + 1) / (4 * math.sqrt(2)), (math.sqrt(2) - 1) / (4 * math.sqrt(2))
    for gi, gate in enumerate(c.gates):
        for pi, p in enumerate(gate.params):
            if p.kind == "const":
                continue
            if gate.name in ("CRX", "CRY", "CRZ", "MCRY"):
                d = c1 * (f(_shift_param(c, gi, pi, math.pi / 2)) - f(_shift_param(c, gi, pi, -math.pi / 2))) - c2 * (
                    f(_shift_param(c, gi, pi, 3 * math.pi / 2)) - f(_shift_param(c, gi, pi, -3 * math.pi / 2)))
            else:
                d = (f(_shift_param(c, gi, pi, math.pi / 2)) - f(_shift_param(c, gi, pi, -math.pi / 2))) / 2
            if p.kind == "weight":
                gw[p.index] += p.scale * d
            else:
                gx[:, p.index] += p.scale * d  # one sample per row in X (B=1 below)
    return gx, gw


@pytest.mark.parametrize("seed", range(4))
def test_parameter_shift_equals_backprop(seed):
    c = random_circuit(3, 14, seed=seed, measure="mixed")
    X, W = _data(c, 1, seed)
    g = torch.linspace(-1, 1, c.n_outputs, dtype=torch.float64).reshape(1, -1)
    psx, psw = parameter_shift(c, X, W, g)
    for mode in _paths_for(c):
        _, gx, gw = _run_grad(c, X, W, mode, g=g)
        torch.testing.assert_close(gw, psw, atol=1e-10, rtol=0)
        torch.testing.assert_close(gx, psx, atol=1e-10, rtol=0)


def test_central_differences_of_reference():
    """Backprop of every path equals central differences of the independent numpy reference."""
    for c in (random_circuit(3, 16, seed=11), random_circuit(2, 12, seed=12, amplitude=True)):
        X, W = _data(c, 2, 3)
        g = np.linspace(-1, 1, 2 * c.n_outputs).reshape(2, -1)
        Xn, Wn = X.numpy(), W.numpy()
        h = 1e-6
        fd_w = np.zeros_like(Wn)
        for k in range(len(Wn)):
            e = np.zeros_like(Wn)
            e[k] = h
            fd_w[k] = ((reference(c, Xn, Wn + e) - reference(c, Xn, Wn - e)) * g).sum() / (2 * h)
        fd_x = np.zeros_like(Xn)
        for b in range(Xn.shape[0]):
            for i in range(Xn.shape[1]):
                e = np.zeros_like(Xn)
                e[b, i] = h
                fd_x[b, i] = ((reference(c, Xn + e, Wn) - reference(c, Xn - e, Wn)) * g).sum() / (2 * h)
        for mode in _paths_for(c):
            _, gx, gw = _run_grad(c, X, W, mode, g=torch.tensor(g))
            np.testing.assert_allclose(gw.numpy(), fd_w, atol=1e-7)
            np.testing.assert_allclose(gx.numpy(), fd_x, atol=1e-7)


def test_adjoint_large_register_matches_blocked():
    c = builder_circuit("strongly_entangling", 10, n_layers=2)
    X, W = _data(c, 3, 0)
    a = _run_grad(c, X, W, "adjoint")
    b = _run_grad(c, X, W, "blocked")
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, atol=1e-10, rtol=0)


# ----------------------------------------------------------------------------- behaviour
def test_dtype_rules():
    c = builder_circuit("angle_y", 3)
    X, W = _data(c, 2, 0, torch.float32)
    out32 = TorchEngine().run(c, X, W)
    assert out32.dtype == torch.float32
    out128 = TorchEngine(dtype=torch.complex128).run(c, X, W)
    assert out128.dtype == torch.float32
    ref = reference(c, X.double().numpy(), W.double().numpy())
    np.testing.assert_allclose(out128.double().numpy(), ref, atol=1e-7)
    np.testing.assert_allclose(out32.double().numpy(), ref, atol=1e-5)
    assert TorchEngine().run(c, X.double(), W).dtype == torch.float64
    with pytest.raises(ValueError, match="dtype must be complex64/complex128"):
        TorchEngine(dtype=torch.int32)


def test_empty_batch():
    c = builder_circuit("angle_y", 2)
    w = torch.zeros(c.n_weights, requires_grad=True)
    out = TorchEngine().run(c, torch.zeros(0, 2), w)
    assert out.shape == (0, c.n_outputs)
    out.sum().backward()


def test_run_validation():
    c = builder_circuit("angle_y", 2)
    eng = TorchEngine()
    with pytest.raises(ValueError, match=r"inputs must have shape \(batch, n_inputs=2\); got \(3, 5\)"):
        eng.run(c, torch.zeros(3, 5), torch.zeros(c.n_weights))
    with pytest.raises(ValueError, match=r"weights must have shape \(n_weights=12,\); got \(3,\)"):
        eng.run(c, torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(TypeError, match="inputs must be a float32 or float64 tensor; got torch.int64"):
        eng.run(c, torch.zeros(3, 2, dtype=torch.long), torch.zeros(c.n_weights))
    with pytest.raises(ValueError, match="mode must be one of"):
        TorchEngine(mode="fast")
    empty = Circuit(1)
    with pytest.raises(ValueError, match="no measurements"):
        eng.run(empty, torch.zeros(1, 0), torch.zeros(0))


def test_forced_unitary_rejects_input_bound_gates_after_entangling():
    c = Circuit(2)
    i = c.new_inputs(1)
    c.add("CNOT", (0, 1)).add("RX", 0, [Param.input(i[0])])
    c.measure_z()
    assert not TorchEngine().plan(c).unitary_ok
    with pytest.raises(ValueError, match="mode 'unitary' needs every gate"):
        TorchEngine(mode="unitary").run(c, torch.zeros(2, 1), torch.zeros(0))
    assert TorchEngine().run(c, torch.zeros(2, 1), torch.zeros(0)).shape == (2, 2)


def test_amplitude_zero_vector_names_sample():
    c = Circuit(2)
    amplitude_embedding(c, n_features=3)
    c.measure_z()
    X = torch.tensor([[1.0, 0, 0], [0, 0, 0]])
    for mode in _paths_for(c):
        with pytest.raises(ValueError, match="sample 1 is the all-zero vector"):
            TorchEngine(mode=mode).run(c, X, torch.zeros(0))
    with pytest.raises(ValueError, match="mode 'mps' cannot run this circuit: it has an amplitude embedding"):
        TorchEngine(mode="mps").run(c, X, torch.zeros(0))


def test_memory_refusal_message():
    c = builder_circuit("strongly_entangling", 10)
    eng = TorchEngine(max_memory_bytes=10_000_000)
    B = 256
    parts = eng.memory_parts(c, B, "adjoint")
    state = B * 2**10 * 8  # complex64
    assert parts["states"] == 6 * state and parts["readout"] >= state  # probabilities + gradient
    assert eng.estimate_bytes(c, B, "adjoint") == sum(parts.values())
    with pytest.raises(MemoryLimitError, match=r"needs about [\d,]+ bytes .* limit \(max_memory_bytes\) is 10,000,000 bytes"):
        eng.run(c, torch.zeros(B, 10), torch.zeros(c.n_weights))
    with pytest.raises(MemoryError):
        eng.run(c, torch.zeros(B, 10), torch.zeros(c.n_weights))
    # auto mode falls back to the O(1)-state adjoint path when autograd would not fit
    adjoint, blocked = eng.estimate_bytes(c, B, "adjoint"), eng.estimate_bytes(c, B, "blocked")
    assert blocked > adjoint
    limit = (adjoint + blocked) // 2
    eng = TorchEngine(max_memory_bytes=limit)
    eng.run(c, torch.zeros(B, 10), torch.zeros(c.n_weights))
    assert eng.last_mode == "adjoint"


def test_memory_refusal_before_compiling_huge_register():
    c = Circuit(40)
    angle_embedding(c)
    strongly_entangling_layers(c, 1)
    c.measure_z()
    sv = TorchEngine()
    sv.mps_min_qubits = 0  # the state-vector paths (auto runs this shallow circuit as an MPS)
    with pytest.raises(ValueError, match="needs about"):
        sv.run(c, torch.zeros(2, 40), torch.zeros(c.n_weights))
    assert sv._plans == {}
    c.add("MCRY", tuple(range(40)), [Param.const(0.2)])  # no MPS path either: refused
    with pytest.raises(ValueError, match="needs about"):
        TorchEngine().run(c, torch.zeros(2, 40), torch.zeros(c.n_weights))


def test_auto_mode_choice_and_plan_cache():
    eng = TorchEngine()
    assert eng.choose_mode(builder_circuit("strongly_entangling", 4), 256) == "small"
    cx = builder_circuit("strongly_entangling", 4)
    cx.measure_pauli("X", [0])  # not <Z>-only: no small path, the unitary one
    assert eng.choose_mode(cx, 256) == "unitary"
    assert eng.choose_mode(builder_circuit("strongly_entangling", 10), 256) == "small"  # its state variant
    assert eng.choose_mode(builder_circuit("strongly_entangling", 10), 2048) == "blocked"
    # two layers of range 1 at 11 qubits: the MPS path with its compiled readout (measured on one
    # core, bench_modes_ab.py --n 11 --modes small mps: 26.8 ms against small's 33.9 ms), the
    # state vector with the torch readout
    c11 = Circuit(11)
    angle_embedding(c11, rotation="Y")
    strongly_entangling_layers(c11, 2, ranges=[1, 1])
    c11.measure_z()
    assert eng.choose_mode(c11, 256) == ("mps" if kernel_readout("cpu") else "small")  # numba: CI installs it
    old, MPSRunner.use_kernel = MPSRunner.use_kernel, False
    try:
        assert eng.choose_mode(c11, 256) == "small"
    finally:
        MPSRunner.use_kernel = old
    assert eng.choose_mode(builder_circuit("strongly_entangling", 14), 256) == "mps"  # shallow: narrow bonds
    assert eng.choose_mode(builder_circuit("strongly_entangling", 16), 512) == "mps"
    sv = TorchEngine()  # the state-vector paths' choice
    sv.mps_min_qubits = 0
    assert sv.choose_mode(builder_circuit("strongly_entangling", 14), 256) == "blocked"
    assert sv.choose_mode(builder_circuit("strongly_entangling", 14), 4096) == "adjoint"
    assert sv.choose_mode(builder_circuit("strongly_entangling", 16), 256) == "blocked"  # 1.27 GiB estimated
    assert sv.choose_mode(builder_circuit("strongly_entangling", 16), 512) == "adjoint"
    low = TorchEngine(autograd_max_bytes=2**20)
    low.mps_min_qubits = 0
    assert low.choose_mode(builder_circuit("strongly_entangling", 14), 256) == "adjoint"
    c = builder_circuit("strongly_entangling", 3)
    p1 = eng.plan(c)
    assert eng.plan(c) is p1
    c.measure_pauli("X", [0])
    assert eng.plan(c) is not p1
    assert eng.run(c, torch.zeros(2, 3), torch.zeros(c.n_weights)).shape == (2, 4)
    circuits = [builder_circuit("angle_y", 2) for _ in range(80)]
    for cc in circuits:
        eng.run(cc, torch.zeros(1, 2), torch.zeros(cc.n_weights))
    assert len(eng._plans) <= 64 and len(eng._runners) <= 64


def test_fused_plan_structure():
    """The SEL workload compiles to: product state, one gather per CNOT ring, fused blocks,
    and the last ring folded into the <Z> readout."""
    c = Circuit(8)
    angle_embedding(c)
    strongly_entangling_layers(c, 2)
    c.measure_z()
    plan = TorchEngine(block_size=4).plan(c)
    assert plan.init == "product"
    kinds = [type(op).__name__ for op in plan.ops]
    assert kinds == ["MonoOp", "BlockOp", "BlockOp", "MonoOp"]


def test_get_engine_by_name():
    eng = get_engine("torch", mode="adjoint")
    assert isinstance(eng, TorchEngine) and eng.mode == "adjoint"
    assert set(MODES) == {"auto", *PATHS}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA device not available")
@pytest.mark.parametrize("mode", PATHS)
def test_cuda_parity(mode):
    c = builder_circuit("strongly_entangling", 5)
    X, W = _data(c, 8, 0, torch.float32)
    cpu = _run_grad(c, X, W, mode)
    gpu = _run_grad(c, X.cuda(), W.cuda(), mode)
    assert gpu[0].device.type == "cuda"
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(a, b.cpu(), atol=1e-5, rtol=1e-5)
    c2 = random_circuit(4, 20, seed=1)
    X, W = _data(c2, 4, 1)
    for a, b in zip(_run_grad(c2, X, W, "blocked"), _run_grad(c2, X.cuda(), W.cuda(), "blocked")):
        torch.testing.assert_close(a, b.cpu(), atol=1e-10, rtol=0)
