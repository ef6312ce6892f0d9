"""The small path's compiled kernels (``qnn.engines._small_kernel``, numba) against the numpy
twin they replace (``_NumpyFused.use_kernel = False``) and the one-op-per-gate path (the slow
reference): values and gradients, one copy and several, float64 and float32.  CI installs
numba (``qnn[all]``) and ``.ci/run`` fails when it does not import, so these tests never skip
there."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import qnn
from qnn.circuit import Circuit, Param
from qnn.engines import _small_kernel
from qnn.engines._small_numpy import _NumpyFused
from qnn.engines.torch_engine import TorchEngine
from qnn.testing import BUILDER_KINDS, builder_circuit

pytest.importorskip("numba")


@pytest.fixture
def numpy_twin(monkeypatch):
    """Run the U variant in numpy (the kernels switched off) within the test."""
    monkeypatch.setattr(_NumpyFused, "use_kernel", False)


def _grads(c, X, W, mode="auto", many=False, kernel=True, cot=None):
    old = _NumpyFused.use_kernel
    _NumpyFused.use_kernel = kernel
    try:
        eng = TorchEngine(mode=mode)
        x, w = X.clone().requires_grad_(), W.clone().requires_grad_()
        out = eng.run_many(c, x, w) if many else eng.run(c, x, w)
        if cot is None:
            cot = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
        gx, gw = torch.autograd.grad((out * cot).sum(), (x, w))
        return eng, (out.detach(), gx, gw)
    finally:
        _NumpyFused.use_kernel = old


def _kernel_ran(eng):
    """Whether the last run took the compiled kernels (the U variant on a real state)."""
    (runner,) = eng._runners.values()
    return runner.small is not None and runner.small.np_fused.kernel_ok(True)


def _data(c, B, seed, dtype, G=None):
    g = torch.Generator().manual_seed(seed)
    lead = () if G is None else (G,)
    X = torch.rand(*lead, B, c.n_inputs, dtype=dtype, generator=g) * 2 - 0.5
    W = torch.rand(*lead, c.n_weights, dtype=dtype, generator=g) * 6.3
    return X, W


def _close(got, ref, tol):
    for a, b in zip(got, ref):  # (gradients summed over the batch: tolerance relative to their size)
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a, b, atol=tol * max(1.0, b.abs().max().item()), rtol=0)


def test_kernels_are_available_here():
    """numba imports (it is installed with qnn[all]), so the kernels run instead of the twin."""
    assert _small_kernel.available()


@pytest.mark.parametrize("kind", BUILDER_KINDS)
@pytest.mark.parametrize("n", [1, 2, 4, 5])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-11), (torch.float32, 3e-5)])
def test_kernels_match_numpy_twin_and_gates_path(kind, n, dtype, tol):
    """Every builder (RY, amplitude and other embeddings; Rot, RX and hardware-efficient layers;
    CNOT rings as permutations) with 2**n < B: the U variant in the kernels equals the numpy
    twin and the one-op-per-gate path."""
    c = builder_circuit(kind, n, n_layers=2)
    X, W = _data(c, 40, n, dtype)
    eng, got = _grads(c, X, W)
    assert eng.last_mode == "small"
    _, twin = _grads(c, X, W, kernel=False)
    _, ref = _grads(c, X, W, mode="gates")
    _close(got, twin, tol)
    _close(got, ref, tol)


def test_kernels_run_the_real_embeddings(monkeypatch):
    """The RY product state and the amplitude embedding (real) take the kernels; an X angle
    embedding (a complex product state) stays in the numpy twin."""
    calls = []
    real = _small_kernel.u_forward
    monkeypatch.setattr(_small_kernel, "u_forward", lambda *a: calls.append(1) or real(*a))
    for kind, expect in (("angle_y", 1), ("amplitude", 1), ("strongly_entangling", 1), ("angle_x", 0)):
        c = builder_circuit(kind, 3)
        calls.clear()
        eng, _ = _grads(c, *_data(c, 16, 0, torch.float64))
        assert eng.last_mode == "small" and len(calls) == expect, kind


def test_shared_scaled_and_constant_angles():
    """A weight used by several rotations with scales and offsets, constant angles, CZ phases
    and a block on part of the register: the kernels' angle table and gradient scatter."""
    c = Circuit(3)
    qnn.angle_embedding(c, rotation="Y")
    w = c.new_weights("w", (4,))
    c.add("Rot", 0, [Param.weight(w[0]), Param.weight(w[1], scale=-2.0, offset=0.3), Param.const(0.7)])
    c.add("RX", 1, [Param.weight(w[0], scale=0.5)])
    c.add("CZ", (0, 2))
    c.add("RZ", 2, [Param.weight(w[2], offset=-1.0)])
    c.add("CNOT", (2, 1))
    c.add("RY", 1, [Param.weight(w[3])])
    c.add("RZ", 0, [Param.const(-0.4)])
    c.measure_z()
    for dtype, tol in ((torch.float64, 1e-11), (torch.float32, 3e-5)):
        X, W = _data(c, 24, 1, dtype)
        eng, got = _grads(c, X, W)
        assert eng.last_mode == "small"
        _close(got, _grads(c, X, W, kernel=False)[1], tol)
        _close(got, _grads(c, X, W, mode="gates")[1], tol)


@pytest.mark.parametrize("embed,n,B", [("amplitude", 4, 32), ("Y", 4, 256), ("Y", 5, 40), ("amplitude", 2, 9)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-11), (torch.float32, 3e-5)])
def test_copies_in_the_kernels_match_one_run_per_copy(embed, n, B, dtype, tol):
    """run_many's copies axis through the kernels (KACQ-DCNN's three 4-qubit circuits) against
    the numpy twin's stacked call and one gates-path run per copy."""
    c = Circuit(n)
    if embed == "amplitude":
        qnn.amplitude_embedding(c, 2**n)
    else:
        qnn.angle_embedding(c, rotation="Y")
    qnn.strongly_entangling_layers(c, 2)
    c.measure_z()
    X, W = _data(c, B, n, dtype, G=3)
    eng, got = _grads(c, X, W, many=True)
    assert eng.last_mode == "small" and _kernel_ran(eng)
    _close(got, _grads(c, X, W, many=True, kernel=False)[1], tol)
    cot = torch.linspace(-1, 1, got[0].numel(), dtype=dtype).reshape(got[0].shape)
    per_copy = [_grads(c, X[g], W[g], mode="gates", cot=cot[g])[1] for g in range(3)]
    ref = [torch.stack([p[i] for p in per_copy]) for i in range(3)]
    _close(got, ref, tol)


def test_given_real_state_gradient():
    """A real initial state handed to the U variant: the kernels' state gradient equals the numpy
    twin's (the torch wrapper's psi0 route)."""
    c = builder_circuit("strongly_entangling", 3)
    eng = TorchEngine(mode="small")
    X, W = _data(c, 16, 2, torch.float64)
    eng.run(c, X, W)
    (runner,) = eng._runners.values()
    fz = runner.small.np_fused
    rng = np.random.default_rng(0)
    psi0 = rng.normal(size=(2, 16, 8))
    psi0 /= np.linalg.norm(psi0, axis=-1, keepdims=True)
    xn = np.repeat(X.numpy()[None], 2, 0)
    wn = np.stack([W.numpy(), W.numpy() * 0.5])
    g = rng.normal(size=(2, 16, 3))
    res = []
    for kernel in (True, False):
        fz.use_kernel = kernel
        out, st = fz.forward_u(xn, wn, psi0)
        assert isinstance(st[0], str) is kernel
        res.append((out, *fz.backward_u(g, st, False, True, True)))
    del fz.use_kernel
    for a, b in zip(*res):
        if a is None:
            assert b is None
        else:
            np.testing.assert_allclose(a, b, atol=1e-12, rtol=0)


def test_without_numba_the_numpy_twin_runs(monkeypatch):
    """Where numba is missing (or QNN_NO_NUMBA=1), available() is False and the U variant runs
    in numpy with the same results."""
    c = builder_circuit("angle_y", 4)
    X, W = _data(c, 64, 3, torch.float64)
    _, got = _grads(c, X, W)
    monkeypatch.setattr(_small_kernel, "_KERNELS", [None])
    assert not _small_kernel.available()
    eng, twin = _grads(c, X, W)
    assert not _kernel_ran(eng)
    _close(got, twin, 1e-11)


def test_compile_kernels_ahead():
    """compile_kernels compiles (or loads) both dtypes and refuses anything else, before any work."""
    from qnn.engines import compile_kernels

    assert compile_kernels(["float32", "float64"]) is True
    with pytest.raises(ValueError, match=r"compile_kernels: dtypes must be 'float32' or 'float64'; got 'int64'"):
        compile_kernels(["float64", "int64"])


def test_no_numba_environment_switch(monkeypatch):
    monkeypatch.setattr(_small_kernel, "_KERNELS", [])
    monkeypatch.setenv("QNN_NO_NUMBA", "1")
    assert not _small_kernel.available()
    monkeypatch.setattr(_small_kernel, "_KERNELS", [])
    monkeypatch.setenv("QNN_NO_NUMBA", "0")
    assert _small_kernel.available()


def test_all_zero_amplitude_vector_is_refused_by_name():
    """An all-zero (padded) vector in the kernels' amplitude embedding: the error names the
    sample (and the copy), as the numpy twin's."""
    c = Circuit(2)
    qnn.amplitude_embedding(c, n_features=3)
    qnn.strongly_entangling_layers(c, 1)
    c.measure_z()
    X = torch.rand(8, 3, dtype=torch.float64) + 0.1  # 2**2 < 8: the U variant
    X[5] = 0
    W = torch.zeros(c.n_weights, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"TorchEngine: amplitude embedding of sample 5 is the all-zero vector"):
        TorchEngine().run(c, X, W)
    X3 = torch.rand(3, 8, 3, dtype=torch.float64) + 0.1
    X3[2, 6] = 0
    with pytest.raises(ValueError, match=r"amplitude embedding of sample 6 of copy 2 is the all-zero vector"):
        TorchEngine().run_many(c, X3, W.expand(3, -1))
