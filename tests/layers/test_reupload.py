import math

import pytest
import torch

from qnn.layers import DataReUploadingLinear
from qnn.pauli import su_gates
from qnn.layers._reupload import _ReuploadEvolve

F64 = torch.float64


def degenerate_inputs(in_features, n_qubits, gen):
    d = 2**n_qubits
    x = torch.randn(5, in_features, dtype=F64, generator=gen)
    x[1] = 0.0                         # H = 0: every eigenvalue equal
    x[2, in_features // 2:] = 0.0      # heavy zero padding
    full = torch.zeros(5, d * d, dtype=F64)
    full[:, :in_features] = x
    m = full.reshape(5, d, d)
    m[3, 1] = m[3, 0]                  # duplicated rows (and columns after symmetrising)
    m[3, 2] = m[3, 0]
    m[4] = torch.eye(d, dtype=F64)     # H = I
    return m.reshape(5, -1)[:, :in_features].clone()


def run(layer, f, x):
    x = x.clone().requires_grad_()
    y = f(x)
    w = torch.linspace(-1, 2, y.numel(), dtype=y.dtype).reshape(y.shape)
    loss = (y * w).sum() + y.square().sum()
    return [y] + list(torch.autograd.grad(loss, [x, layer.weight, layer.bias]))


@pytest.mark.parametrize("mode", ["physical", "paper"])
@pytest.mark.parametrize("in_features,out_features,n_reps", [(10, 3, 2), (16, 4, 3), (40, 5, 2)])
def test_fast_equals_reference_with_repeated_eigenvalues(mode, in_features, out_features, n_reps):
    layer = DataReUploadingLinear(in_features, out_features, n_reps=n_reps, mode=mode, seed=1, dtype=F64)
    if mode == "paper":
        with torch.no_grad():
            layer.weight.imag.normal_(0, 0.05, generator=torch.Generator().manual_seed(4))
    x = degenerate_inputs(in_features, layer.n_qubits, torch.Generator().manual_seed(2))
    h = layer.hamiltonian(x)
    lam = torch.linalg.eigvalsh(h)
    gaps = (lam[:, 1:] - lam[:, :-1]).abs()
    assert (gaps < 1e-12).sum() > 3  # exactly repeated eigenvalues are present
    fast = run(layer, layer.forward, x)
    ref = run(layer, layer.forward_reference, x)
    for a, b in zip(fast, ref):
        assert torch.isfinite(a).all()
        assert torch.allclose(a, b, atol=1e-11, rtol=1e-10), (a - b).abs().max()


def test_gradcheck_of_the_custom_function():
    gen = torch.Generator().manual_seed(0)
    layer = DataReUploadingLinear(10, 3, n_reps=2, seed=0, dtype=F64)
    x = degenerate_inputs(10, 2, gen)[:3].requires_grad_()
    th = layer.weight.detach().clone().requires_grad_()
    torch.autograd.gradcheck(
        lambda x_, t_: torch.view_as_real(_ReuploadEvolve.apply(x_, su_gates(t_, 2), layer._plus(), layer.t)),
        (x, th))


def test_torch_eigh_backward_fails_where_ours_does_not():
    # the reason for the custom backward: eigh's own gradient is singular on repeated eigenvalues
    x = torch.zeros(1, 16, dtype=F64, requires_grad=True)
    h = 0.5 * (x.reshape(1, 4, 4) + x.reshape(1, 4, 4).mT)
    lam, v = torch.linalg.eigh(h)
    psi = torch.full((4,), 0.5, dtype=torch.complex128)
    u = (v.to(psi.dtype) * torch.exp(0.1j * lam).unsqueeze(-2)) @ v.mT.to(psi.dtype)
    (u @ psi).abs().square()[..., 0].sum().backward()
    assert not torch.isfinite(x.grad).all()
    layer = DataReUploadingLinear(16, 1, n_reps=1, seed=0, dtype=F64, bias=False)
    xg = torch.zeros(1, 16, dtype=F64, requires_grad=True)
    layer(xg).sum().backward()
    xr = torch.zeros(1, 16, dtype=F64, requires_grad=True)
    layer.forward_reference(xr).sum().backward()
    assert torch.isfinite(xg.grad).all() and torch.allclose(xg.grad, xr.grad, atol=1e-12)


def test_float32_fast_matches_float64_reference():
    l32 = DataReUploadingLinear(30, 4, n_reps=3, seed=3)
    l64 = DataReUploadingLinear(30, 4, n_reps=3, dtype=F64)
    l64.load_state_dict({k: v.double() for k, v in l32.state_dict().items()})
    x = torch.randn(6, 30)
    assert torch.allclose(l32(x).double(), l64.forward_reference(x.double()), atol=1e-5)


def test_unitarity_physical_vs_paper():
    assert DataReUploadingLinear(40, 4, n_reps=3, seed=0).unitarity_error() < 1e-5
    assert DataReUploadingLinear(40, 4, n_reps=3, seed=0, dtype=F64).unitarity_error() < 1e-12
    paper = DataReUploadingLinear(40, 4, n_reps=3, seed=0, mode="paper")
    assert paper.weight.dtype == torch.complex64 and paper.bias.dtype == torch.float32
    with torch.no_grad():
        paper.weight.imag.normal_(0, 0.05)
    assert paper.unitarity_error() > 1e-2


def test_physical_outputs_are_probabilities_plus_bias():
    layer = DataReUploadingLinear(16, 4, n_reps=2, seed=0, bias=False, dtype=F64)
    y = layer(torch.randn(7, 16, dtype=F64))
    assert (y >= 0).all() and (y.sum(-1) <= 1 + 1e-12).all()
    assert torch.allclose(y.sum(-1), torch.ones(7, dtype=F64))  # out_features = 2^n: all of them


def test_paper_mode_complex_parameters_train():
    layer = DataReUploadingLinear(16, 3, n_reps=2, mode="paper", seed=0)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    x, y = torch.randn(8, 16), torch.randint(0, 3, (8,))
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(layer(x), y).backward()
        assert layer.weight.grad.imag.abs().sum() > 0
        opt.step()
    assert layer.unitarity_error() > 1e-3


def test_size_rule_and_refusal():
    assert DataReUploadingLinear(12544, 10, n_reps=1).n_qubits == 7  # creep.md: 4^7 = 16384
    assert DataReUploadingLinear(16, 4).n_qubits == 2
    assert DataReUploadingLinear(17, 2).n_qubits == 3
    assert DataReUploadingLinear(3, 9).n_qubits == 4
    layer = DataReUploadingLinear(12544, 10, n_reps=10)
    assert sum(p.numel() for p in layer.parameters()) == 163830 + 10
    with pytest.raises(ValueError, match=r"n_qubits must be <= 8; got 9 .*reduce in_features to at most"):
        DataReUploadingLinear(4**8 + 1, 10)
    with pytest.raises(ValueError, match="in_features must be <= 4\\*\\*n_qubits = 16; got 17"):
        DataReUploadingLinear(17, 2, n_qubits=2)
    with pytest.raises(ValueError, match="out_features must be <= 2\\*\\*n_qubits = 4; got 5"):
        DataReUploadingLinear(4, 5, n_qubits=2)
    with pytest.raises(ValueError, match="DataReUploadingLinear: n_reps must be an int >= 1; got 0"):
        DataReUploadingLinear(4, 2, n_reps=0)
    with pytest.raises(ValueError, match="DataReUploadingLinear: mode must be one of"):
        DataReUploadingLinear(4, 2, mode="x")


def test_repr_shapes_empty_and_input_checks():
    layer = DataReUploadingLinear(10, 3, n_reps=2, mode="paper", seed=0)
    assert repr(layer) == ("DataReUploadingLinear(in_features=10, out_features=3, n_qubits=2, n_reps=2, "
                           "mode=paper, bias=True)")
    assert layer(torch.randn(2, 5, 10)).shape == (2, 5, 3)
    assert layer(torch.randn(0, 10)).shape == (0, 3)
    a, b = DataReUploadingLinear(10, 3, seed=4), DataReUploadingLinear(10, 3, seed=4)
    assert torch.equal(a.weight, b.weight)
    with pytest.raises(ValueError, match="last dimension 10, got 9"):
        layer(torch.randn(2, 9))
    for bad in (math.inf, -math.inf, math.nan):
        x = torch.randn(3, 10)
        x[1, 7] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            layer(x)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mode", ["physical", "paper"])
def test_fast_equals_reference_over_several_chunks_and_threads(threads, mode):
    # 37 samples: several work items of unequal size (reupload._CHUNK), spread over the threads,
    # with exactly repeated eigenvalues in some of them
    layer = DataReUploadingLinear(40, 5, n_reps=3, mode=mode, seed=6, dtype=F64)
    if mode == "paper":
        with torch.no_grad():
            layer.weight.imag.normal_(0, 0.05, generator=torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(7)
    x = torch.cat([degenerate_inputs(40, 3, gen), torch.randn(32, 40, dtype=F64, generator=gen)])[torch.randperm(37, generator=gen)]
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fast = run(layer, layer.forward, x)
    finally:
        torch.set_num_threads(old)
    ref = run(layer, layer.forward_reference, x)
    for a, b in zip(fast, ref):
        assert torch.allclose(a, b, atol=1e-11, rtol=1e-10), (a - b).abs().max()


def test_gradients_when_only_the_input_or_only_the_weights_need_them():
    layer = DataReUploadingLinear(16, 4, n_reps=3, seed=2, dtype=F64)
    x = degenerate_inputs(16, 2, torch.Generator().manual_seed(3))
    w = torch.linspace(-1, 1, 5 * 4, dtype=F64).reshape(5, 4)
    gx_ref, gw_ref = torch.autograd.grad((layer.forward_reference(x.requires_grad_()) * w).sum(), [x, layer.weight])
    (gw,) = torch.autograd.grad((layer(x.detach()) * w).sum(), [layer.weight])  # no input gradient
    layer.weight.requires_grad_(False)
    (gx,) = torch.autograd.grad((layer(x) * w).sum(), [x])  # frozen gates
    layer.weight.requires_grad_(True)
    torch.testing.assert_close(gw, gw_ref, atol=1e-11, rtol=1e-10)
    torch.testing.assert_close(gx, gx_ref, atol=1e-11, rtol=1e-10)


def test_float32_fast_gradients_match_float64_reference():
    l32 = DataReUploadingLinear(30, 4, n_reps=3, seed=3)
    l64 = DataReUploadingLinear(30, 4, n_reps=3, dtype=F64)
    l64.load_state_dict({k: v.double() for k, v in l32.state_dict().items()})
    x = torch.randn(20, 30, generator=torch.Generator().manual_seed(1))
    g32 = run(l32, l32.forward, x)
    g64 = run(l64, l64.forward_reference, x.double())
    for a, b in zip(g32, g64):
        a, b = a.detach().double(), b.detach()
        assert (a - b).abs().max() <= 1e-4 * max(float(b.abs().max()), 1.0)
