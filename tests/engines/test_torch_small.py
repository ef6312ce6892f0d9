"""The torch engine's small-register path (``mode="small"``, qnn.engines._torch_small): values
and gradients against the dense numpy reference of test_torch_engine and against the
one-op-per-gate path (the slow reference), its automatic choice, and its op count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qnn.circuit import Circuit, Param, amplitude_embedding, angle_embedding, strongly_entangling_layers
from qnn.engines._small_numpy import _NumpyFused
from qnn.engines.torch_engine import TorchEngine
from qnn.testing import BUILDER_KINDS, builder_circuit, random_circuit

from test_torch_engine import _data, _run_grad, reference


def _sel(n, layers=2, embed="angle"):
    c = Circuit(n)
    if embed == "angle":
        angle_embedding(c, rotation="Y")
    else:
        amplitude_embedding(c, 2**n)
    strongly_entangling_layers(c, layers)
    c.measure_z()
    return c


def _variant(c, B=3):
    """``"fused"`` (closed form) or ``"generic"``: which variant of the small path ran."""
    eng = TorchEngine(mode="small")
    eng.run(c, torch.zeros(B, c.n_inputs, dtype=torch.float64) + 0.3, torch.zeros(c.n_weights, dtype=torch.float64))
    (runner,) = eng._runners.values()
    return "fused" if runner.small.fused is not None else "generic"


def _check(c, seed, dtype, atol_val, atol_grad, B=5):
    X, W = _data(c, B, seed, dtype)
    ref = reference(c, X.double().numpy(), W.double().numpy())
    out, gx, gw = _run_grad(c, X, W, "small")
    assert out.dtype == dtype
    np.testing.assert_allclose(out.double().numpy(), ref, atol=atol_val, rtol=0)
    _, gx0, gw0 = _run_grad(c, X, W, "gates")
    torch.testing.assert_close(gx, gx0, atol=atol_grad, rtol=0)
    torch.testing.assert_close(gw, gw0, atol=atol_grad, rtol=0)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("embed", ["angle", "amplitude"])
def test_fused_variant_matches_reference(n, embed):
    c = _sel(n, layers=2 if n > 1 else 1, embed=embed)
    assert _variant(c) == "fused"
    _check(c, n, torch.float64, 1e-10, 1e-10)
    _check(c, n, torch.float32, 1e-5, 1e-4)


@pytest.mark.parametrize("kind", BUILDER_KINDS)
@pytest.mark.parametrize("n", [1, 3, 5])
def test_builders(kind, n):
    c = builder_circuit(kind, n, n_layers=2)
    _check(c, 0, torch.float64, 1e-10, 1e-10)


def test_variants_are_chosen_by_structure():
    assert _variant(builder_circuit("basic_entangler", 4)) == "fused"
    assert _variant(builder_circuit("strongly_entangling", 6)) == "fused"
    c = _sel(3, layers=1)
    c.add("CRX", [0, 2], [Param.weight(c.new_weights("crx", [1])[0], scale=0.7)])
    c.add("Y", 1)
    assert _variant(c) == "generic"  # a controlled rotation: the blocked ops on the identity
    _check(c, 0, torch.float64, 1e-10, 1e-10)
    c = Circuit(3)
    angle_embedding(c, rotation="X")  # a complex product state
    strongly_entangling_layers(c, 2)
    c.measure_z()
    assert _variant(c) == "fused"
    _check(c, 1, torch.float64, 1e-10, 1e-10)


_RANDOM_GATES = {"RX": 1, "RY": 1, "RZ": 1, "Rot": 3, "PhaseShift": 1, "H": 0, "X": 0, "Y": 0, "Z": 0,
                 "CNOT": 0, "CZ": 0, "SWAP": 0, "CRX": 1, "CRY": 1, "CRZ": 1}


def _random_shared(n, seed):
    """An embedding, then random gates bound to weights or constants (the small path's
    domain: nothing after the embedding depends on the inputs), <Z> on every wire."""
    rng = np.random.default_rng(seed)
    c = Circuit(n)
    kind = ["X", "Y", "Z", "amplitude"][seed % 4]
    if kind == "amplitude":
        amplitude_embedding(c, 2**n)
    else:
        angle_embedding(c, rotation=kind)
    names = [g for g in _RANDOM_GATES if n > 1 or g in ("RX", "RY", "RZ", "Rot", "PhaseShift", "H", "X", "Y", "Z")]
    for j in range(8 + 3 * n):
        g = names[rng.integers(len(names))]
        nw = 2 if g in ("CNOT", "CZ", "SWAP", "CRX", "CRY", "CRZ") else 1
        wires = [int(v) for v in rng.choice(n, nw, replace=False)]
        params = []
        for _ in range(_RANDOM_GATES[g]):
            if rng.random() < 0.8:
                params.append(Param.weight(c.new_weights(f"w{j}_{len(params)}", [1])[0], scale=float(rng.uniform(0.5, 2))))
            else:
                params.append(float(rng.normal()))
        c.add(g, wires, params)
    c.measure_z()
    return c


@pytest.mark.parametrize("seed", range(12))
def test_random_shared_circuits(seed):
    c = _random_shared(1 + seed % 5, seed)
    assert TorchEngine().choose_mode(c, 16) == "small"
    _check(c, seed, torch.float64, 1e-10, 1e-10)
    _check(c, seed, torch.float32, 1e-5, 1e-4)


@pytest.mark.parametrize("n", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("embed", ["angle", "amplitude", "angle_x"])
def test_numpy_twin_equals_torch_ops(n, embed):
    """On CPU the fused variant runs in numpy; the torch-op version (used on other devices)
    must give the same values and gradients."""
    if embed == "angle_x":
        c = Circuit(n)
        angle_embedding(c, rotation="X")
        strongly_entangling_layers(c, 2)
        c.measure_z()
    else:
        c = _sel(n, layers=2, embed=embed)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        X, W = _data(c, 6, n, dtype)
        if embed == "amplitude":
            X = X.abs() + 0.1
        res = []
        # numpy on U (ops on the identity, then the readout products; in the compiled kernels
        # where numba is available, and in numpy), numpy on the states, and the torch ops
        for use_numpy, ratio, kernel in ((True, 0, True), (True, 0, False), (True, 10**9, True), (False, None, True)):
            eng = TorchEngine(mode="small")
            eng.run(c, X, W)
            (runner,) = eng._runners.values()
            assert runner.small.fused is not None
            runner.small.use_numpy = use_numpy
            runner.small.np_fused = None
            if ratio is not None:
                runner.small.state_ratio = ratio
            x, w = X.clone().requires_grad_(), W.clone().requires_grad_()
            _NumpyFused.use_kernel = kernel
            try:
                out = eng.run(c, x, w)
                (out * torch.linspace(-1, 1, out.numel(), dtype=dtype).reshape(out.shape)).sum().backward()
            finally:
                _NumpyFused.use_kernel = True
            assert (runner.small.np_fused is not None) == use_numpy
            res.append((out.detach(), x.grad, w.grad))
        for other in res[:3]:
            for a, b in zip(other, res[3]):
                torch.testing.assert_close(a, b, atol=tol, rtol=0)


def test_gradcheck_fused():
    c = _sel(3, layers=2)
    X, W = _data(c, 3, 0)
    eng = TorchEngine(mode="small")
    torch.autograd.gradcheck(lambda x, w: eng.run(c, x, w), (X.requires_grad_(), W.requires_grad_()))
    c = _sel(2, layers=1, embed="amplitude")
    X, W = _data(c, 3, 1)
    X = X.abs() + 0.1
    torch.autograd.gradcheck(lambda x, w: eng.run(c, x, w), (X.requires_grad_(), W.requires_grad_()))


def test_auto_choice():
    eng = TorchEngine()
    eng.mps_min_qubits = 0  # the state-vector paths' choice (the MPS path's: tests/engines/test_mps.py)
    assert eng.choose_mode(_sel(4), 256) == "small"
    assert eng.choose_mode(_sel(7), 256) == "small"
    assert eng.choose_mode(_sel(7), 32) == "small"  # 2**n > 2 B: the state variant, not U
    assert eng.choose_mode(_sel(8), 256) == "small"  # the numpy twin runs on the states there
    assert eng.choose_mode(_sel(8), 4096) == "small"
    assert eng.choose_mode(_sel(9), 4096) == "blocked"  # 2**n < B: neither variant pays off
    assert eng.choose_mode(_sel(12), 256) == "small"  # the numpy twin on the states, 2**n >= B
    assert eng.choose_mode(_sel(13), 256) != "small"
    assert eng.choose_mode(_sel(12), 256, device=torch.device("meta")) != "small"  # CPU only
    assert eng.choose_mode(_sel(4, embed="amplitude"), 32) == "small"
    off = TorchEngine()
    off.small_max_qubits = 0
    assert off.choose_mode(_sel(4), 256) != "small"
    c = _sel(3)
    c.measure_pauli("X", [0])
    assert eng.choose_mode(c, 256) != "small"


def test_forced_small_rejects_other_readouts():
    c = _sel(3)
    c.measure_pauli("X", [0])
    with pytest.raises(ValueError, match="mode 'small' needs"):
        TorchEngine(mode="small").run(c, torch.zeros(2, 3), torch.zeros(c.n_weights))


def test_op_count():
    """The point of the path: few ATen ops per forward + backward (the blocked path issues
    about 500 at 4 qubits)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    c = _sel(4)
    eng = TorchEngine()
    x = torch.rand(256, 4, requires_grad=True)
    w = torch.rand(c.n_weights, requires_grad=True)
    eng.run(c, x, w).sum().backward()
    with Count():
        eng.run(c, x, w).sum().backward()
    assert eng.last_mode == "small"
    assert Count.n < 260, Count.n


def test_small_path_runs_weight_only_pauli_exp_gates_exactly():
    """A PauliExp gate on weights after the embedding: the small path (picked by auto) equals the
    one-op-per-gate path in values and gradients."""
    import qnn
    from qnn.engines import get_engine

    c = qnn.Circuit(3)
    qnn.angle_embedding(c, rotation="Y")
    ws = c.new_weights("pe", [3])
    c.add_pauli_exp((0, 2), ("XY", "ZZ", "YI"), [qnn.Param.weight(i) for i in ws])
    qnn.strongly_entangling_layers(c, 1)
    c.measure_z()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.rand(c.n_weights, dtype=torch.float64, generator=g, requires_grad=True)
    ref = get_engine("torch", mode="gates").run(c, x, w)
    gref = torch.autograd.grad(ref.pow(2).sum(), (x, w))
    eng = get_engine("torch")
    assert eng.choose_mode(c, 16) == "small"
    out = eng.run(c, x, w)
    got = torch.autograd.grad(out.pow(2).sum(), (x, w))
    assert torch.allclose(out, ref, atol=1e-12)
    assert all(torch.allclose(a, b, atol=1e-11) for a, b in zip(got, gref))


@pytest.mark.parametrize("n", [10, 12])
def test_state_variant_with_folded_first_layer_matches_gates_path(n):
    """From 9 qubits the small path runs only in its state variant, with the first layer's
    rotations folded into the product state's factors: against the one-op-per-gate path."""
    c = _sel(n, layers=2)
    eng = TorchEngine()
    assert eng.choose_mode(c, 8) == "small"
    X, W = _data(c, 8, n, torch.float64)
    g = torch.linspace(-1, 1, 8 * n, dtype=torch.float64).reshape(8, n)
    res = []
    for mode in ("small", "gates"):
        x, w = X.clone().requires_grad_(), W.clone().requires_grad_()
        out = TorchEngine(mode=mode).run(c, x, w)
        gx, gw = torch.autograd.grad((out * g).sum(), (x, w))
        res.append((out.detach(), gx, gw))
    for a, b in zip(*res):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("cap,wrt", [("GATHER_MAX", "x"), ("PTRACE_MAX", "w")])
def test_u_variant_routes_for_large_registers_agree(cap, wrt, monkeypatch):
    """The U variant's size-dependent routes, forced with their cap at 0: the RY input
    gradient one wire at a time (GATHER_MAX) and the partial traces one einsum per wire
    instead of one product (PTRACE_MAX) give the same gradient, equal to the gates path."""
    c = _sel(5, layers=2)
    X, W = _data(c, 64, 2, torch.float64)
    monkeypatch.setattr(_NumpyFused, "use_kernel", False)  # the numpy twin's routes

    def grad(mode):
        x, w = X.clone().requires_grad_(), W.clone().requires_grad_()
        out = TorchEngine(mode=mode).run(c, x, w)
        return torch.autograd.grad(out.pow(2).sum(), x if wrt == "x" else w)[0]

    res = [grad("small")]
    old = getattr(_NumpyFused, cap)
    setattr(_NumpyFused, cap, 0)
    try:
        res.append(grad("small"))
    finally:
        setattr(_NumpyFused, cap, old)
    torch.testing.assert_close(res[0], res[1], atol=1e-12, rtol=0)
    torch.testing.assert_close(res[0], grad("gates"), atol=1e-10, rtol=0)


@pytest.mark.parametrize("name,npar", [("RX", 1), ("RY", 1), ("RZ", 1), ("Rot", 3)])
def test_rotation_table_equals_the_rotation_formulas(name, npar):
    """The numpy twin's rotations (a fitted trigonometric polynomial of the half angles, its
    copies with one angle shifted by pi) against _np_rot, the formulas, on random angles."""
    from qnn.engines._small_numpy import _np_rot, _RotTable

    A = np.random.default_rng(1).uniform(-20, 20, size=(npar, 3, 5))
    shift = np.zeros((npar, 1 + npar, 1, 1))
    shift[np.arange(npar), 1 + np.arange(npar)] = np.pi
    ref = _np_rot(name, A[:, None] + shift, np.complex128)
    for cdtype, tol in ((np.complex128, 1e-12), (np.complex64, 2e-6)):
        got = _RotTable(name, npar, cdtype)(A.astype(np.float64 if cdtype == np.complex128 else np.float32))
        assert got.shape == (2, 2, 1 + npar, 3, 5) and got.dtype == cdtype
        np.testing.assert_allclose(got, ref, atol=tol, rtol=0)


def test_state_variant_pooled_arrays_are_never_shared_by_pending_graphs():
    """The state variant takes its state-sized arrays from a pool: two forwards whose backwards
    are still pending (the second overwrites nothing the first saved), then both backwards,
    equal the gates path; a steady loop keeps the pool's size fixed."""
    c = _sel(6, layers=2)
    eng = TorchEngine(mode="small")
    X1, W = _data(c, 16, 0, torch.float64)  # 2**6 >= 16: the state variant
    X2, _ = _data(c, 16, 1, torch.float64)
    w = W.clone().requires_grad_()
    outs = [eng.run(c, X, w) for X in (X1, X2)]
    (runner,) = eng._runners.values()
    pool = runner.small.np_fused.pool
    assert len(pool) > 0
    g1 = torch.autograd.grad(outs[0].pow(2).sum(), w, retain_graph=True)[0]
    g2 = torch.autograd.grad(outs[1].pow(2).sum(), w)[0]
    for X, g, out in ((X1, g1, outs[0]), (X2, g2, outs[1])):
        w0 = W.clone().requires_grad_()
        ref = TorchEngine(mode="gates").run(c, X, w0)
        torch.testing.assert_close(out.detach(), ref.detach(), atol=1e-12, rtol=0)
        torch.testing.assert_close(g, torch.autograd.grad(ref.pow(2).sum(), w0)[0], atol=1e-10, rtol=0)
    sizes = []
    for _ in range(4):
        eng.run(c, X1, w).sum().backward()
        sizes.append(len(pool))
    assert sizes[1:] == sizes[:-1], sizes
    assert eng.workspace_bytes() >= pool.nbytes() > 0
    del outs, out, ref  # their graphs hold the arrays the first two forwards saved
    eng.clear_cache()
    assert len(pool) == 0
