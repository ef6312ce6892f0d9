"""The torch engine's workspace: pooled state buffers are reused only when nothing refers to them."""

import threading

import pytest
import torch

import qnn
import qnn.engines.torch_engine as te
from qnn.engines._workspace import Workspace, _refs
from qnn.engines.torch_engine import TorchEngine


def _circuit(n=5, layers=2):
    c = qnn.Circuit(n)
    qnn.angle_embedding(c, rotation="Y")
    qnn.strongly_entangling_layers(c, layers)
    c.measure_z()
    return c


def _data(c, B, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, c.n_inputs, generator=g, dtype=torch.float64) * 3
    w = torch.rand(c.n_weights, generator=g, dtype=torch.float64) * 6
    return x, w


def _grads(eng, c, x, w, g):
    x = x.clone().requires_grad_()
    w = w.clone().requires_grad_()
    out = eng.run(c, x, w)
    gx, gw = torch.autograd.grad((out * g).sum(), (x, w))
    return out.detach(), gx, gw


def test_take_reuses_only_unreferenced_buffers():
    ws = Workspace(4)
    a = ws.take((3, 4), torch.float32, "cpu")
    assert ws.take((3, 4), torch.float32, "cpu").data_ptr() != a.data_ptr()  # leased
    ws.release(a)
    view = a.view(12)
    b = ws.take((3, 4), torch.float32, "cpu")
    assert b.data_ptr() != a.data_ptr()  # a view of a is alive
    ws.release(b)
    del view
    assert _refs(a) == 0
    assert ws.take((3, 4), torch.float32, "cpu").data_ptr() in (a.data_ptr(), b.data_ptr())
    assert ws.take((3, 5), torch.float32, "cpu").shape == (3, 5)  # another shape: a new buffer
    # the miss for (3, 5) dropped the free (3, 4) buffer; the two leased ones stay
    assert ws.nbytes() == 4 * (3 * 4 * 2 + 3 * 5)


def test_a_saved_tensor_is_not_reused():
    ws = Workspace(4)
    b = ws.take((2,), torch.float64, "cpu")
    ws.release(b)

    class Keep(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(b)  # the pooled tensor itself, not a view
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g

    y = Keep.apply(torch.ones(2, requires_grad=True))
    assert ws.take((2,), torch.float64, "cpu").data_ptr() != b.data_ptr()
    del y
    ws.clear()
    assert len(ws) == 1  # the second buffer is still leased; b was dropped


def test_full_workspace_hands_out_untracked_buffers():
    ws = Workspace(1)
    a = ws.take((2,), torch.float32, "cpu")
    b = ws.take((2,), torch.float32, "cpu")  # a is leased and the pool is full
    assert b.data_ptr() != a.data_ptr() and len(ws) == 1
    ws.release(a, b)
    assert ws.take((2,), torch.float32, "cpu").data_ptr() == a.data_ptr()


@pytest.mark.parametrize("mode", ["adjoint", "blocked"])
def test_two_live_forwards_then_one_backward(mode, monkeypatch):
    # every state-sized tensor from the workspace, also the product state
    monkeypatch.setattr(te, "_POOL_BYTES", 0)
    c = _circuit()
    eng = TorchEngine(mode=mode)
    ref = TorchEngine(mode="gates")
    x1, w = _data(c, 4, 1)
    x2, _ = _data(c, 4, 2)
    g = torch.linspace(-1, 1, 4 * c.n_outputs, dtype=torch.float64).reshape(4, -1)
    xa, xb = x1.clone().requires_grad_(), x2.clone().requires_grad_()
    wa = w.clone().requires_grad_()
    o1 = eng.run(c, xa, wa)
    o2 = eng.run(c, xb, wa)  # o1's saved state must survive this forward
    o3 = eng.run(c, xa, wa)
    gxa, gxb, gw = torch.autograd.grad((o1 * g).sum() + (o2 * g).sum() - 0.5 * (o3 * g).sum(), (xa, xb, wa))
    r1, rx1, rw1 = _grads(ref, c, x1, w, g)
    r2, rx2, rw2 = _grads(ref, c, x2, w, g)
    torch.testing.assert_close(o1.detach(), r1, atol=1e-12, rtol=0)
    torch.testing.assert_close(o2.detach(), r2, atol=1e-12, rtol=0)
    torch.testing.assert_close(gxa, 0.5 * rx1, atol=1e-12, rtol=0)
    torch.testing.assert_close(gxb, rx2, atol=1e-12, rtol=0)
    torch.testing.assert_close(gw, 0.5 * rw1 + rw2, atol=1e-12, rtol=0)
    # and again: the buffers are reused now, results unchanged
    for _ in range(2):
        out, gx, gw2 = _grads(eng, c, x1, w, g)
        torch.testing.assert_close(out, r1, atol=1e-12, rtol=0)
        torch.testing.assert_close(gx, rx1, atol=1e-12, rtol=0)
        torch.testing.assert_close(gw2, rw1, atol=1e-12, rtol=0)
    runner = next(iter(eng._runners.values()))
    assert len(runner.ws) > 0


@pytest.mark.parametrize("mode", ["adjoint", "blocked"])
def test_threads_share_an_engine(mode, monkeypatch):
    monkeypatch.setattr(te, "_POOL_BYTES", 0)
    c = _circuit(6)
    eng = TorchEngine(mode=mode)
    ref = TorchEngine(mode="gates")
    data = [_data(c, 8, s) for s in range(4)]
    g = torch.ones(8, c.n_outputs, dtype=torch.float64)
    expect = [_grads(ref, c, x, w, g) for x, w in data]
    got: dict = {}

    def work(i):
        for _ in range(5):
            got[i] = _grads(eng, c, *data[i], g)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        for a, b in zip(got[i], expect[i]):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_large_state_paths_match_the_gate_reference():
    """A state above the pooling threshold (4096 x 512 complex64 = 16 MiB): the pooled product
    state, ping-pong buffers and the Z measurement against the one-op-per-gate path."""
    c = _circuit(12, 2)
    x, w = _data(c, 512, 3)
    x, w = x.float(), w.float()
    g = torch.randn(512, 12, generator=torch.Generator().manual_seed(0))
    ref = _grads(TorchEngine(mode="gates", dtype=torch.complex128), c, x.double(), w.double(), g.double())
    for mode in ("adjoint", "blocked"):
        eng = TorchEngine(mode=mode)
        for _ in range(2):
            out, gx, gw = _grads(eng, c, x, w, g)
            torch.testing.assert_close(out.double(), ref[0], atol=2e-5, rtol=0)
            torch.testing.assert_close(gx.double(), ref[1], atol=2e-4, rtol=0)
            torch.testing.assert_close(gw.double(), ref[2], atol=5e-4, rtol=0)


def test_clear_cache_frees_the_buffers():
    c = _circuit(6)
    eng = TorchEngine(mode="adjoint")
    x, w = _data(c, 4, 0)
    _grads(eng, c, x, w, torch.ones(4, 6, dtype=torch.float64))
    assert eng.workspace_bytes() >= 2 * 64 * 4 * 16
    eng.clear_cache()
    assert eng.workspace_bytes() == 0
    out, *_ = _grads(eng, c, x, w, torch.ones(4, 6, dtype=torch.float64))  # still runs
    assert out.shape == (4, 6)


def test_array_pool_hands_out_only_unreferenced_arrays():
    import numpy as np

    from qnn.engines._workspace import ArrayPool

    pool = ArrayPool(max_buffers=2)
    a = pool.take((4, 4), np.float32)
    pool.release(a)
    b = pool.take((4, 4), np.float32)
    assert b is not a  # a is still referenced
    view = a.reshape(16)
    del a
    pool.release(b)
    del b
    c = pool.take((4, 4), np.float32)  # b's array is free again; a's is held by the view
    assert c.base is None and len(pool) == 2
    assert c is not view.base
    pool.release(c)
    d = pool.take((4, 4), np.float64)  # another dtype, and the full pool has nothing free: not kept
    assert d.dtype == np.float64 and len(pool) == 2
    e = pool.take((4, 4), np.float64)
    assert len(pool) == 2 and e is not d
    pool.release(d)
    del d, c
    pool.clear()
    assert len(pool) == 1  # only the one the view holds stays
