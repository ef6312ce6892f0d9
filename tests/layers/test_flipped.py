import pytest
import torch
from torch import nn

from qnn.layers import FlippedQuanv3x3

F64 = torch.float64


def _grads(layer, f, x):
    x = x.clone().requires_grad_()
    y = f(x)
    w = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
    loss = (y * w).sum() + (y**2).sum()
    params = [x, layer.weight, layer.bias]
    return [y] + list(torch.autograd.grad(loss, params))


@pytest.mark.parametrize("mode", ["physical", "paper"])
@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), (1, 2)])
def test_three_forms_equal_values_and_gradients(mode, stride, padding):
    layer = FlippedQuanv3x3(2, 3, stride=stride, padding=padding, mode=mode, seed=0, dtype=F64)
    if mode == "paper":
        with torch.no_grad():  # make the gates non-unitary, as after paper-mode training
            layer.weight.imag.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
            layer.bias.imag.normal_(0, 1.0, generator=torch.Generator().manual_seed(2))
    x = torch.randn(2, 2, 7, 6, dtype=F64, generator=torch.Generator().manual_seed(3))
    fast = _grads(layer, layer.forward, x)
    ref = _grads(layer, layer.forward_reference, x)
    pauli = _grads(layer, lambda t: layer.forward_from_expectations(t, layer.pauli_expectations(),
                                                                    layer.state_norms()), x)
    for a, b, c in zip(fast, ref, pauli):
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-12)
        assert torch.allclose(a, c, atol=1e-12, rtol=1e-12)


def test_pauli_coefficients_reconstruct_the_expectation():
    layer = FlippedQuanv3x3(1, 1, seed=5, dtype=F64)
    psi = layer.states()[0, 0].detach()
    m = torch.randn(3, 3, dtype=F64)
    m4 = torch.zeros(4, 4, dtype=F64)
    m4[:3, :3] = m
    s = (m4 + m4.T) / 2
    e = (psi.conj() @ s.to(psi.dtype) @ psi).real
    coef = FlippedQuanv3x3.pauli_coefficients(m)
    assert coef.shape == (16,)
    ev = layer.pauli_expectations()[0, 0].detach()
    assert torch.allclose(coef[0] + (coef[1:] * ev).sum(), e, atol=1e-13)


def test_kernel_is_the_paper_kernel_and_psd():
    layer = FlippedQuanv3x3(4, 2, seed=1, dtype=F64)
    with torch.no_grad():
        k = layer.kernel() * 4
        psi = layer.states()
        k_direct = (psi[..., :3, None] * psi[..., None, :3].conj()).real
        assert torch.allclose(k, k_direct)
        assert torch.allclose(k, k.transpose(-1, -2))
        ev = torch.linalg.eigvalsh(k)
        assert (ev > -1e-12).all()
        assert (ev > 1e-9).sum(-1).max() <= 2  # rank <= 2
        assert (k.diagonal(dim1=-2, dim2=-1).sum(-1) <= 1 + 1e-12).all()


def test_unitarity_physical_vs_paper():
    for dt, tol in ((torch.float32, 1e-5), (F64, 1e-12)):
        assert FlippedQuanv3x3(3, 4, seed=0, dtype=dt).unitarity_error() < tol
    paper = FlippedQuanv3x3(3, 4, seed=0, mode="paper")
    assert paper.weight.dtype == torch.complex64 and paper.bias.dtype == torch.complex64
    assert paper.unitarity_error() < 1e-5  # real randn cast to complex: unitary at init
    with torch.no_grad():
        paper.weight.imag.normal_(0, 0.1)
    assert paper.unitarity_error() > 1e-2


def test_paper_mode_imaginary_parts_get_gradients_and_train():
    layer = FlippedQuanv3x3(1, 2, mode="paper", seed=0)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    x = torch.randn(4, 1, 5, 5)
    for _ in range(3):
        opt.zero_grad()
        layer(x).square().mean().backward()
        assert layer.weight.grad.imag.abs().sum() > 0
        opt.step()
    assert layer.weight.imag.abs().max() > 0
    assert layer.unitarity_error() > 1e-3


def test_shapes_match_conv2d_and_output_dtype():
    x = torch.randn(2, 1, 32, 32)
    c1 = FlippedQuanv3x3(1, 32, seed=0)
    c2 = FlippedQuanv3x3(32, 16, seed=1)
    y = c2(c1(x))
    assert y.shape == nn.Conv2d(32, 16, 3)(nn.Conv2d(1, 32, 3)(x)).shape == (2, 16, 28, 28)
    assert y.dtype == torch.float32
    assert FlippedQuanv3x3(1, 2, stride=2, padding=1)(torch.randn(1, 9, 9)).shape == (2, 5, 5)
    assert FlippedQuanv3x3(1, 2, mode="paper")(x).dtype == torch.float32
    p = sum(q.numel() for q in c1.parameters()) + sum(q.numel() for q in c2.parameters())
    assert p == 512 + 7696  # creep.md §2a parameter counts


def test_seed_repr_validation():
    a = FlippedQuanv3x3(2, 3, seed=7)
    b = FlippedQuanv3x3(2, 3, seed=7)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert repr(FlippedQuanv3x3(2, 3, stride=2, padding=1, mode="paper")) == (
        "FlippedQuanv3x3(in_channels=2, out_channels=3, stride=2, padding=1, mode=paper, bias=True)")
    assert FlippedQuanv3x3(1, 1, bias=False).bias is None
    with pytest.raises(ValueError, match="FlippedQuanv3x3: mode must be one of"):
        FlippedQuanv3x3(1, 1, mode="complex")
    with pytest.raises(ValueError, match="FlippedQuanv3x3: in_channels must be an int >= 1; got 0"):
        FlippedQuanv3x3(0, 1)
    with pytest.raises(ValueError, match="FlippedQuanv3x3: padding must be an int >= 0"):
        FlippedQuanv3x3(1, 1, padding=-1)
    with pytest.raises(TypeError, match="FlippedQuanv3x3: dtype must be"):
        FlippedQuanv3x3(1, 1, dtype=torch.complex64)
    with pytest.raises(ValueError, match="expected input"):
        FlippedQuanv3x3(2, 1)(torch.randn(1, 3, 5, 5))
    with pytest.raises(TypeError, match="float32 or float64"):
        FlippedQuanv3x3(1, 1)(torch.zeros(1, 1, 5, 5, dtype=torch.int64))
