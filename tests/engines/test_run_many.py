"""Copies of one circuit in one call: ``Engine.run_many`` (the torch engine's stacked small
path, the other engines' one run per copy) and ``qnn.layers.forward_many`` (KACQ-DCNN's three
circuits), against one run per copy on the one-op-per-gate path, values and gradients."""

from __future__ import annotations

import pytest
import torch

import qnn
from qnn.engines import get_engine
from qnn.engines._small_numpy import _NumpyFused
from qnn.engines.torch_engine import TorchEngine
from qnn.layers import QuantumLayer, forward_many


def _circuit(n, embed, layers=1):
    c = qnn.Circuit(n)
    if embed == "amplitude":
        qnn.amplitude_embedding(c, 2**n)
    else:
        qnn.angle_embedding(c, rotation=embed)
    qnn.strongly_entangling_layers(c, layers)
    c.measure_z()
    return c


def _data(c, G, B, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(G, B, c.n_inputs, dtype=dtype, generator=g) + 0.1
    W = torch.rand(G, c.n_weights, dtype=dtype, generator=g) * 6.3
    return X, W


def _grads(fn, X, W):
    x, w = X.clone().requires_grad_(), W.clone().requires_grad_()
    out = fn(x, w)
    cot = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    gx, gw = torch.autograd.grad((out * cot).sum(), (x, w))
    return out.detach(), gx, gw


def _per_copy(c, mode="gates"):
    eng = TorchEngine(mode=mode)
    return lambda x, w: torch.stack([eng.run(c, x[g], w[g]) for g in range(x.shape[0])])


@pytest.mark.parametrize("n,embed,layers,B", [(4, "amplitude", 1, 32), (4, "Y", 2, 256), (3, "X", 2, 20),
                                             (2, "amplitude", 2, 9), (5, "Y", 1, 64), (1, "Y", 1, 5)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("kernel", [True, False], ids=["kernels", "numpy"])
def test_stacked_small_path_matches_one_run_per_copy(n, embed, layers, B, dtype, tol, kernel, monkeypatch):
    """In the compiled kernels (where numba is available) and in the numpy twin."""
    monkeypatch.setattr(_NumpyFused, "use_kernel", kernel)
    c = _circuit(n, embed, layers)
    X, W = _data(c, 3, B, seed=n, dtype=dtype)
    eng = TorchEngine()
    got = _grads(lambda x, w: eng.run_many(c, x, w), X, W)
    assert eng.last_mode == "small"
    (runner,) = eng._runners.values()
    assert runner.small.can_run_many()
    ref = _grads(_per_copy(c), X, W)
    for a, b in zip(got, ref):  # (gradients summed over B samples: tolerance relative to their size)
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=tol * max(1.0, b.abs().max().item()), rtol=0)


def test_other_paths_run_one_copy_at_a_time():
    """Where the stacked path does not apply (the state variant at 2**n >= B, a circuit with
    input-bound gates after the embedding, another engine), run_many is one run per copy."""
    c = _circuit(5, "Y", 2)
    X, W = _data(c, 2, 8)  # 2**5 >= 8: the state variant
    for fn in (lambda x, w: TorchEngine().run_many(c, x, w),
               lambda x, w: get_engine("pennylane").run_many(c, x, w)):
        for a, b in zip(_grads(fn, X, W), _grads(_per_copy(c), X, W)):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    c = qnn.Circuit(2)
    qnn.angle_embedding(c)
    qnn.strongly_entangling_layers(c, 1)
    qnn.angle_embedding(c, rotation="Z")  # re-uploading: not the small path
    c.measure_z()
    X, W = _data(c, 2, 6)
    eng = TorchEngine()
    for a, b in zip(_grads(lambda x, w: eng.run_many(c, x, w), X, W), _grads(_per_copy(c), X, W)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    assert eng.last_mode != "small"


def test_run_many_rejects_bad_shapes():
    c = _circuit(2, "Y")
    eng = TorchEngine()
    w = torch.zeros(3, c.n_weights)
    with pytest.raises(ValueError, match=r"run_many: inputs must have shape \(copies, batch, n_inputs=2\); got \(3, 4\)"):
        eng.run_many(c, torch.zeros(3, 4), w)
    with pytest.raises(ValueError, match=r"run_many: inputs must have shape \(copies, batch, n_inputs=2\); got \(3, 4, 5\)"):
        eng.run_many(c, torch.zeros(3, 4, 5), w)
    with pytest.raises(ValueError, match=r"run_many: weights must have shape \(copies, n_weights=6\); got \(6,\)"):
        eng.run_many(c, torch.zeros(3, 4, 2), torch.zeros(6))
    with pytest.raises(ValueError, match="same number of copies; got 2 .* and 3"):
        eng.run_many(c, torch.zeros(2, 4, 2), w)
    with pytest.raises(ValueError, match="at least one copy"):
        eng.run_many(c, torch.zeros(0, 4, 2), torch.zeros(0, c.n_weights))
    with pytest.raises(ValueError, match="weights contain NaN or inf"):
        eng.run_many(c, torch.zeros(3, 4, 2), torch.full((3, c.n_weights), float("nan")))
    with pytest.raises(TypeError, match="inputs must be a torch.Tensor; got list"):
        eng.run_many(c, [[0.0]], w)
    with pytest.raises(ValueError, match="run_many: weights must have shape"):
        get_engine("pennylane").run_many(c, torch.zeros(3, 4, 2), torch.zeros(3, 5))


def test_empty_batch():
    c = _circuit(2, "Y")
    out = TorchEngine().run_many(c, torch.zeros(3, 0, 2), torch.zeros(3, c.n_weights))
    assert out.shape == (3, 0, 2)


def _layers(n, count, embed="amplitude", engine="torch", seed=0):
    out = []
    for i in range(count):
        out.append(QuantumLayer(_circuit(n, embed), engine=engine, seed=seed + i, dtype=torch.float64))
    return out


def test_forward_many_equals_each_layer():
    layers = _layers(4, 3)
    g = torch.Generator().manual_seed(0)
    xs = [torch.rand(2, 16, 16, dtype=torch.float64, generator=g).requires_grad_() for _ in range(3)]
    got = forward_many(layers, xs)
    ref = [m(x) for m, x in zip(layers, xs)]
    params = [m.weight for m in layers] + xs
    gg = torch.autograd.grad(sum((o * (i + 1)).sum() for i, o in enumerate(got)), params)
    gr = torch.autograd.grad(sum((o * (i + 1)).sum() for i, o in enumerate(ref)), params)
    for a, b in zip(got, ref):
        assert a.shape == (2, 16, 4)
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    for a, b in zip(gg, gr):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=0)


def test_forward_many_errors():
    a, b = _layers(2, 2)
    other = QuantumLayer(_circuit(2, "Y"))
    x = torch.rand(3, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match="non-empty sequence of QuantumLayer"):
        forward_many([], [])
    with pytest.raises(TypeError, match=r"non-empty sequence of QuantumLayer; got \['Linear'\]"):
        forward_many([torch.nn.Linear(2, 2)], [x])
    with pytest.raises(ValueError, match="one input per layer is needed; got 1 inputs for 2 layers"):
        forward_many([a, b], [x])
    with pytest.raises(ValueError, match="same circuit structure; layer 1's circuit differs"):
        forward_many([a, other], [x, torch.rand(3, 2)])
    with pytest.raises(ValueError, match=r"same shape; input 1 has \(2, 4\), input 0 \(3, 4\)"):
        forward_many([a, b], [x, torch.rand(2, 4, dtype=torch.float64)])
    with pytest.raises(ValueError, match="expected input with last dimension 4, got 3"):
        forward_many([a, b], [x, torch.rand(3, 3)])
    c = QuantumLayer(_circuit(2, "amplitude"), engine_options={"mode": "gates"})
    with pytest.raises(ValueError, match="same engine settings; layer 1 has"):
        forward_many([a, c], [x, x])


def test_kacq_quantum_channel_uses_one_call():
    """The KACQ model's three circuits go through forward_many: the same logits as the
    circuits run one by one."""
    from qnn.models import KACQDCNN

    m = KACQDCNN(n_features=11, seed=0).double().eval()
    x = torch.rand(8, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    calls = []
    eng = m.circuits[0].engine
    orig = type(eng).run_many

    def spy(self, *a):
        calls.append(a[1].shape)
        return orig(self, *a)

    type(eng).run_many = spy
    try:
        got = m.logits(x)
    finally:
        type(eng).run_many = orig
    assert calls == [torch.Size([3, 8, 16])]
    q = m.q_enc(m.q_pre(m.q_in(x.unsqueeze(-1)).flatten(1)))
    outs = [circ(s) for circ, s in zip(m.circuits, q.split(m.per_circuit, dim=-1))]
    ref = m.head(torch.cat([m.classical_forward(x), m.q_post(torch.cat(outs, -1))], -1)).squeeze(-1)
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=0)


def test_stacked_memory_is_checked_for_every_copy():
    from qnn.engines.torch_engine import MemoryLimitError

    c = _circuit(4, "Y", 2)
    X, W = _data(c, 3, 64)
    one = TorchEngine().estimate_bytes(c, 64, "small")
    eng = TorchEngine(max_memory_bytes=2 * one)  # one copy fits, three do not
    eng.run(c, X[0], W[0])
    with pytest.raises(MemoryLimitError, match="simulating 3 copies of 4 qubits with batch 64 on path 'small'"):
        eng.run_many(c, X, W)
