"""Memory of the torch engine: a run the memory check admits stays within its estimate (peak
RSS of a fresh subprocess), the filed cases are refused before anything of size ``2**n`` is
built, and the memory-saving paths (controlled rotations on the controlled slice, ``<Z>``
words read from the probabilities, the folded final permutation, Pauli words, monomial index
arrays) equal the dense reference of ``test_torch_engine``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from qnn.circuit import Circuit, Param, angle_embedding, strongly_entangling_layers
from qnn.engines._torch_plan import CONST_MATS, MonoOp, compile_circuit
from qnn.engines.torch_engine import MemoryLimitError, TorchEngine

from test_torch_engine import PATHS, _check_all_paths, _paths_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ----------------------------------------------------------------------------- circuits
def sel(n, layers=2):
    c = Circuit(n)
    angle_embedding(c)
    strongly_entangling_layers(c, layers)
    c.measure_z()
    return c


def mcry(n, input_angle=True):
    """An angle embedding, a CNOT, an n-wire MCRY (target wire 0) with an input-bound angle,
    a CRX and a rotation; <Z> on every wire."""
    c = Circuit(n)
    idx = c.new_inputs(n)
    for q in range(n):
        c.add("RY", q, [Param.input(idx[q])])
    w = c.new_weights("w", (3,))
    c.add("CNOT", (0, 1))
    c.add("MCRY", list(range(n - 1, -1, -1)), [Param.input(0, 0.5, 0.2) if input_angle else Param.weight(w[2])])
    c.add("CRX", (n - 1, 0), [Param.weight(w[0])])
    c.add("RX", 0, [Param.weight(w[1])])
    c.measure_z()
    return c


def pauli(n):
    c = Circuit(n)
    angle_embedding(c)
    strongly_entangling_layers(c, 1)
    c.measure_pauli("XYZ", [0, n // 2, n - 1])
    c.measure_pauli("ZIZ", [0, 1, n - 1])
    c.measure_probs([2, 1])
    c.measure_z([n - 1, 0])
    return c


def probs(n):
    c = Circuit(n)
    angle_embedding(c)
    strongly_entangling_layers(c, 1)
    c.measure_probs(list(range(n)))
    return c


BUILD = {"sel": sel, "mcry": mcry, "pauli": pauli, "probs": probs}

# ----------------------------------------------------------------------------- peak RSS
_PROBE = r"""
import gc, json, sys
import torch
torch.set_num_threads(1)
from test_torch_memory import BUILD
from qnn.engines.torch_engine import TorchEngine

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024

res = []
for kind, n, B, mode in json.loads(sys.argv[1]):
    # warm-up: the same kind of circuit and path on a tiny register and batch
    small = BUILD[kind](4)
    TorchEngine(mode=mode).run(small, torch.rand(1, small.n_inputs), torch.rand(small.n_weights, requires_grad=True)).sum().backward()
    c = BUILD[kind](n)
    est = TorchEngine().estimate_bytes(c, B, mode, torch.complex64)
    eng = TorchEngine(mode=mode, max_memory_bytes=est)
    x = torch.rand(B, c.n_inputs, requires_grad=True)
    w = torch.rand(c.n_weights, requires_grad=True)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM, ru_maxrss) to the current RSS
    before = status("VmRSS")
    eng.run(c, x, w).sum().backward()
    assert x.grad is not None and w.grad is not None
    res.append({"kind": kind, "n": n, "B": B, "mode": mode, "estimate": est, "peak_increase": status("VmHWM") - before})
    del eng, x, w
    gc.collect()
print(json.dumps(res))
"""

CASES = [
    ("sel", 17, 16, "adjoint"),
    ("sel", 17, 8, "blocked"),
    ("sel", 14, 8, "gates"),
    ("mcry", 16, 32, "adjoint"),
    ("mcry", 16, 16, "blocked"),
    ("mcry", 14, 16, "gates"),
    ("pauli", 17, 16, "blocked"),
    ("pauli", 17, 16, "adjoint"),
    ("probs", 17, 16, "adjoint"),
    ("sel", 10, 16, "unitary"),
]


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _can_reset_peak(),
                    reason="needs Linux /proc/self/clear_refs to reset the peak RSS")
def test_admitted_runs_stay_within_their_estimate():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests", "engines"), os.environ.get("PYTHONPATH", "")]),
               MALLOC_MMAP_THRESHOLD_="65536")  # large blocks are mmapped and returned on free
    env.pop("THP_MEM_ALLOC_ENABLE", None)
    p = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(CASES)], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    print(json.dumps(res, indent=1))
    for r in res:
        assert r["estimate"] > 50e6, r  # large enough that a missed buffer shows
        assert 0 < r["peak_increase"] <= r["estimate"], r


# ----------------------------------------------------------------------------- filed cases
def _quantum_linear_26():
    """The circuit of ``QuantumLinear(26, 26, n_layers=1)``."""
    c = Circuit(26)
    angle_embedding(c, rotation="Y")
    strongly_entangling_layers(c, 1)
    c.measure_z()
    return c


@pytest.mark.parametrize("which", ["quantum_linear_26", "mcry_16", "mcry_16_weight"])
def test_filed_cases_refused_before_allocating(which):
    if which == "quantum_linear_26":
        c, B, item = _quantum_linear_26(), 1, 8
    else:
        c, B, item = mcry(16, input_angle=which == "mcry_16"), 64, 8
    eng = TorchEngine()
    for mode in ("adjoint", "blocked", "gates"):
        est = eng.estimate_bytes(c, B, mode)
        assert est >= 2 * B * 2**c.n_qubits * item  # at least the state and its gradient
        per_gate = 3 * len(c.gates) if mode == "gates" else 0  # one saved state per gate
        assert est < (per_gate + 20) * B * 2**c.n_qubits * item  # no 4**k or 2**n x outputs term
    limit = eng.estimate_bytes(c, B, "adjoint") - 1
    eng = TorchEngine(max_memory_bytes=limit)
    x = torch.zeros(B, c.n_inputs)
    if which == "quantum_linear_26":  # shallow: auto runs it on the exact MPS path, in a few MB
        out = eng.run(c, x, torch.zeros(c.n_weights))
        assert eng.last_mode == "mps" and out.shape == (B, 26)
        torch.testing.assert_close(out, torch.ones(B, 26))  # |0..0>-like: RY(0) and zero weights
        eng = TorchEngine(max_memory_bytes=limit)
        eng.mps_min_qubits = 0  # the state-vector paths: refused before allocating
    with pytest.raises(MemoryLimitError, match=r"needs about [\d,]+ bytes .* limit \(max_memory_bytes\) is "):
        eng.run(c, x, torch.zeros(c.n_weights))
    assert eng._plans == {} and eng._runners == {}  # nothing was compiled into the cache or built
    for mode in ("adjoint", "blocked", "gates"):
        with pytest.raises(MemoryLimitError):
            TorchEngine(mode=mode, max_memory_bytes=TorchEngine().estimate_bytes(c, B, mode) - 1).run(
                c, x, torch.zeros(c.n_weights))


def test_mcry_16_runs_within_a_small_limit():
    c = mcry(16)
    B = 2
    eng = TorchEngine(mode="adjoint")
    est = eng.estimate_bytes(c, B, "adjoint")
    assert est < 20 * B * 2**16 * 8
    x = torch.rand(B, 16, requires_grad=True)
    w = torch.rand(c.n_weights, requires_grad=True)
    out = TorchEngine(max_memory_bytes=est).run(c, x, w)
    out.sum().backward()
    assert out.shape == (B, 16) and w.grad is not None


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("n", [3, 5, 7])
def test_controlled_rotations_on_slice_all_paths(n):
    """CRX/CRY/CRZ/MCRY with input-, weight- and constant-bound angles, controls above and
    below the target, after and before entangling gates, in every path."""
    rng = np.random.default_rng(n)
    for seed in range(3):
        c = Circuit(n)
        idx = c.new_inputs(n)
        wi = c.new_weights("w", (12,))
        for q in range(n):
            c.add("RY" if q % 2 else "RX", q, [Param.input(idx[q])])
        params = [Param.input(int(rng.integers(n)), 0.7, 0.1), Param.weight(wi[0], -0.5), Param.const(1.1)]
        for j, name in enumerate(["CRX", "CRY", "CRZ", "MCRY", "MCRY", "CRY"]):
            k = 2 if name != "MCRY" else int(rng.integers(2, n + 1))
            wires = [int(v) for v in rng.permutation(n)[:k]]
            c.add(name, wires, [params[(j + seed) % 3]])
            if j == 2:
                c.add("CNOT", (wires[0], wires[1])).add("Rot", wires[0], [Param.weight(wi[1]), 0.3, Param.weight(wi[2])])
        c.measure_z()
        c.measure_pauli("XZ", [0, n - 1])
        if seed == 0:  # every path; unitary needs shared gates (checked by _paths_for)
            assert set(_paths_for(c)) <= set(PATHS)
        _check_all_paths(c, seed, torch.float64, 1e-10, 1e-10)
    cw = mcry(n, input_angle=False)
    assert "unitary" in _paths_for(cw)
    _check_all_paths(cw, 1, torch.float64, 1e-10, 1e-10)


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_z_words_and_fold_all_paths(n):
    """Z words on one or several wires (high half, low half, across both, the identity), in
    any order, after a final permutation (folded into the readout) with and without phases."""
    rng = np.random.default_rng(10 + n)
    for seed in range(3):
        c = Circuit(n)
        angle_embedding(c, rotation="X")
        w = c.new_weights("w", (n,))
        for q in range(n):
            c.add("RY", q, [Param.weight(w[q])])
        c.add("Y", 0).add("Z", n - 1)  # single-wire monomials join the blocks
        for _ in range(2 * n if n > 1 else 0):  # a final run of CNOT/SWAP (and CZ: phases)
            name = ["CNOT", "SWAP", "CZ"][int(rng.integers(3 if seed else 2))]
            c.add(name, [int(v) for v in rng.permutation(n)[:2]])
        for q in rng.permutation(n):
            c.measure_z([int(q)])
        for _ in range(3):
            k = int(rng.integers(1, n + 1))
            wires = [int(v) for v in rng.permutation(n)[:k]]
            c.measure_pauli("".join(rng.choice(["Z", "I"], size=k)), wires)
        plan = TorchEngine().plan(c)
        if n > 1:
            assert type(plan.ops[-1]).__name__ == "MonoOp"  # the fold is exercised
        _check_all_paths(c, seed, torch.float64, 1e-10, 1e-10)


@pytest.mark.parametrize("n", [2, 5, 8])
def test_pauli_and_probs_readouts_all_paths(n):
    rng = np.random.default_rng(20 + n)
    c = Circuit(n)
    angle_embedding(c)
    strongly_entangling_layers(c, 2)
    for _ in range(4):
        k = int(rng.integers(1, n + 1))
        wires = [int(v) for v in rng.permutation(n)[:k]]
        c.measure_pauli("".join(rng.choice(list("IXYZ"), size=k)), wires)
    c.measure_probs([int(v) for v in rng.permutation(n)[:min(n, 3)]])
    c.measure_z([0])
    c.measure_probs()
    _check_all_paths(c, n, torch.float64, 1e-10, 1e-10)


# ----------------------------------------------------------------------------- monomial arrays
def _old_mono_apply(src, phase, mat, wires, n):
    """The previous implementation (moveaxis copies per gate), kept as the reference."""
    k = len(wires)
    cols = np.argmax(np.abs(mat) > 1e-12, axis=1)
    vals = mat[np.arange(2**k), cols]
    s = np.moveaxis(src.reshape((2,) * n), list(wires), list(range(k))).reshape(2**k, -1)
    p = np.moveaxis(phase.reshape((2,) * n), list(wires), list(range(k))).reshape(2**k, -1)
    s2 = s[cols]
    p2 = p[cols] * vals[:, None]
    s2 = np.moveaxis(s2.reshape((2,) * n), list(range(k)), list(wires)).reshape(-1)
    p2 = np.moveaxis(p2.reshape((2,) * n), list(range(k)), list(wires)).reshape(-1)
    return s2, p2


def _old_make_mono(gates, n):
    src = np.arange(2**n)
    phase = np.ones(2**n, dtype=np.complex128)
    for g in gates:
        src, phase = _old_mono_apply(src, phase, CONST_MATS[g.name], g.wires, n)
    inv = np.empty_like(src)
    inv[src] = np.arange(2**n)
    return src, phase, inv


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_monomial_arrays_match_previous_implementation(n):
    rng = np.random.default_rng(n)
    names = ["X", "Y", "Z"] + (["CNOT", "CZ", "SWAP"] if n > 1 else [])
    for trial in range(20):
        c = Circuit(n)
        for _ in range(int(rng.integers(1, 12))):
            name = names[int(rng.integers(len(names)))]
            k = 1 if name in ("X", "Y", "Z") else 2
            c.add(name, [int(v) for v in rng.permutation(n)[:k]])
        op = MonoOp.of(c.gates, n)
        src, phase, inv, phase_inv = op.arrays(np.complex128, chunk=4)
        osrc, ophase, oinv = _old_make_mono(c.gates, n)
        np.testing.assert_array_equal(src, osrc)
        np.testing.assert_array_equal(inv, oinv)
        ph = np.ones(2**n) if phase is None else phase
        np.testing.assert_allclose(ph, ophase, atol=1e-15)
        np.testing.assert_allclose(np.ones(2**n) if phase_inv is None else phase_inv, ophase[oinv], atol=1e-15)
        assert (phase is None) == np.allclose(ophase, 1)
        if not any(g.name in ("Y", "Z", "CZ") for g in c.gates):
            assert phase is None
        # a Z word after the op is a signed Z word before it
        for mask in range(2**n):
            m2, sign = op.fold_z(mask)
            par = lambda m, x: bin(m & x).count("1") & 1  # noqa: E731
            for x in range(2**n):
                assert (-1) ** par(mask, inv[x]) == sign * (-1) ** par(m2, x)


def test_plan_compiles_without_large_arrays():
    """Compilation is pure Python: a 40-qubit plan compiles (nothing of size 2**40)."""
    c = sel(40, layers=2)
    c.measure_pauli("XY", [0, 39])
    plan = compile_circuit(c, 4)
    assert [type(op).__name__ for op in plan.ops][0] == "MonoOp"
    assert TorchEngine().estimate_bytes(c, 1, "adjoint") > 6 * 2**40 * 8
