"""The MPS path's compiled readout (``qnn.engines._mps_kernel``, numba) against the torch
readout it replaces (``MPSRunner.use_kernel = False``, the slow reference): values and
gradients on random complex site tensors (per-sample and shared sites, every kind of word),
both dtypes; that the engine takes it, and falls back without numba.  CI installs numba
(``qnn[all]``) and ``.ci/run`` fails when it does not import, so these tests never skip there;
``tests/engines/test_mps.py`` runs the whole path both ways against the dense reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qnn import Circuit, angle_embedding, strongly_entangling_layers
from qnn.engines import _mps_kernel, _small_kernel
from qnn.engines._mps import MPSProgram, MPSRunner
from qnn.engines.torch_engine import TorchEngine, _mats_1q
from qnn.testing import random_circuit

pytest.importorskip("numba")

CDT = {torch.float64: torch.complex128, torch.float32: torch.complex64}


def _sites(prog, B, dtype, seed):
    """Random complex sites of ``prog``'s final bonds, some shared (batch 1), some per sample."""
    g = torch.Generator().manual_seed(seed)
    D = [1, *prog.bonds, 1]
    A = []
    for w in range(prog.n):
        b = B if (w + seed) % 3 else 1
        re, im = (torch.randn(b, D[w], 2, D[w + 1], generator=g, dtype=dtype) for _ in range(2))
        A.append(torch.complex(re, im).requires_grad_())
    return A


def _readout(prog, A, B, dtype, kernel):
    runner = MPSRunner(prog, torch.device("cpu"), CDT[dtype], dtype, _mats_1q)
    runner.use_kernel = kernel
    out = runner._readout(A, B)
    cot = torch.linspace(-1.5, 1, out.numel(), dtype=dtype).reshape(out.shape)
    grads = torch.autograd.grad((out * cot).sum(), A)
    return out.detach(), grads


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("measure", ["z", "pauli", "probs", "mixed"])
@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_kernel_readout_matches_the_torch_readout(n, measure, dtype):
    tol = 1e-11 if dtype == torch.float64 else 2e-4
    for seed in range(2):
        prog = MPSProgram(random_circuit(n, n_gates=10 + 4 * n, seed=seed, measure=measure, max_wires=2))
        A = _sites(prog, 5, dtype, seed)
        out, grads = _readout(prog, A, 5, dtype, True)
        ref, ref_grads = _readout(prog, A, 5, dtype, False)
        assert out.shape == ref.shape == (5, len(prog.words)) and out.dtype == dtype
        scale = 1 + float(ref.abs().max())
        torch.testing.assert_close(out, ref, atol=tol * scale, rtol=0)
        for w, (a, b) in enumerate(zip(grads, ref_grads)):
            assert a.shape == b.shape == A[w].shape and a.dtype == b.dtype
            torch.testing.assert_close(a, b, atol=tol * (1 + float(b.abs().max())), rtol=0, msg=f"site {w}")


def test_kernel_readout_of_shared_sites_only():
    """No input-bound gate: every site is shared, the words come back broadcast to the batch."""
    prog = MPSProgram(random_circuit(5, n_gates=20, seed=3, measure="mixed", max_wires=2))
    D = [1, *prog.bonds, 1]
    A = [torch.randn(1, D[w], 2, D[w + 1], dtype=torch.complex128).requires_grad_() for w in range(5)]
    out, grads = _readout(prog, A, 4, torch.float64, True)
    ref, ref_grads = _readout(prog, A, 4, torch.float64, False)
    assert out.shape == (4, len(prog.words))
    torch.testing.assert_close(out, ref)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_gradcheck_of_the_kernel_readout():
    prog = MPSProgram(random_circuit(3, n_gates=14, seed=5, measure="mixed", max_wires=2))
    runner = MPSRunner(prog, torch.device("cpu"), torch.complex128, torch.float64, _mats_1q)
    A = _sites(prog, 2, torch.float64, 1)
    assert torch.autograd.gradcheck(lambda *a: runner._readout(list(a), 2), A)


def _layer(n):
    c = Circuit(n)
    angle_embedding(c, rotation="Y")
    strongly_entangling_layers(c, 2, ranges=[1, 2])
    c.measure_z()
    return c


def test_the_engine_takes_the_kernels_and_falls_back_without_numba(monkeypatch):
    c = _layer(10)
    x, w = torch.rand(6, 10, dtype=torch.float64), torch.rand(c.n_weights, dtype=torch.float64)
    calls = []
    real = _mps_kernel.readout_forward
    monkeypatch.setattr(_mps_kernel, "readout_forward", lambda *a: calls.append(1) or real(*a))
    out = TorchEngine(mode="mps").run(c, x, w)
    assert calls == [1]
    monkeypatch.setattr(_small_kernel, "_KERNELS", [None])  # numba unavailable
    assert not _mps_kernel.available()
    ref = TorchEngine(mode="mps").run(c, x, w)
    assert calls == [1]  # the torch readout ran
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(ref, TorchEngine(mode="gates").run(c, x, w), atol=1e-12, rtol=0)


def test_a_table_of_other_shapes_is_refused():
    prog = MPSProgram(_layer(4))
    runner = MPSRunner(prog, torch.device("cpu"), torch.complex128, torch.float64, _mats_1q)
    A = _sites(prog, 2, torch.float64, 0)
    runner._readout(A, 2)
    wider = [torch.randn(T.shape[0], T.shape[1], 2, T.shape[3] * (2 if w == 0 else 1), dtype=T.dtype)
             for w, T in enumerate(A)]
    with pytest.raises(RuntimeError, match="MPS readout: the sites hold .* values; the kernels' table expects"):
        runner._readout(wider, 2)


def test_node_table_reads_right_sites_transposed():
    """Two wires, one word Z (x) X: the left trie reads site 0 as stored, the right one site 1
    transposed (strides of r, s, l)."""
    nodes, ops, pairs, size = _mps_kernel.node_table(2, [(1, 2), (2, 1)], [([0], ["Z"])], [([0], ["X"])],
                                                     [(1, 0, 0)], lambda x: (1 if x == "Z" else 2, np.eye(2)))
    assert size == 8 and nodes.shape == (4, 9) and pairs.tolist() == [[1, 3]]
    # parent, offset, strides l s r, D_l, D_r, kind, environment offset (the roots' are 1 x 1)
    assert nodes[1].tolist() == [0, 0, 4, 2, 1, 1, 2, 1, 1]
    assert nodes[3].tolist() == [2, 4, 1, 1, 2, 1, 2, 2, 6]
