"""QuantumLinear's swap features: bias, readouts beyond <Z_j>, re-uploading, budget refusals,
from_linear; QuanvConv2d against a per-patch reference and nn.Conv2d's shapes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import qnn
from qnn.layers import QuantumLinear, QuanvConv2d, z_words


def _state(layer, x):
    """The layer's final state by the torch engine's reference path: probs of every basis state."""
    c = qnn.Circuit(layer.n_qubits)
    c.gates, c.state_prep = list(layer.circuit.gates), layer.circuit.state_prep
    c.n_inputs, c.n_weights = layer.circuit.n_inputs, layer.circuit.n_weights
    c.measure_probs()
    return qnn.get_engine("torch", mode="gates").run(c, x, layer.weight.detach())


def test_bias_is_nn_linear_contract():
    m = QuantumLinear(3, 2, seed=0)
    assert m.bias.shape == (2,) and torch.equal(m.bias.detach(), torch.zeros(2))
    no = QuantumLinear(3, 2, bias=False, seed=0)
    assert no.bias is None and "bias=False" in repr(no)
    x = torch.rand(4, 3)
    with torch.no_grad():
        m.bias.copy_(torch.tensor([0.5, -1.0]))
    torch.testing.assert_close(m(x), no(x) + torch.tensor([0.5, -1.0]))
    m(x).sum().backward()
    torch.testing.assert_close(m.bias.grad, torch.full((2,), 4.0))
    m.reset_parameters()
    assert torch.equal(m.bias.detach(), torch.zeros(2))


def test_probs_readout_exceeds_qubits():
    m = QuantumLinear(4, 10, bias=False, encoding="amplitude", readout="probs", seed=0).double()
    assert m.n_qubits == 4  # ceil(log2 4) = 2 for the input, 4 bits for 10 outputs
    x = torch.rand(3, 4, dtype=torch.float64) + 0.1
    p = _state(m, x).reshape(3, 16)
    torch.testing.assert_close(m(x), p[:, :10])


def test_pauli_readout_reads_z_words():
    m = QuantumLinear(3, 6, bias=False, readout="pauli", seed=1).double()
    assert m.n_qubits == 3 and z_words(3, 6) == ["ZII", "IZI", "IIZ", "ZZI", "ZIZ", "IZZ"]
    x = torch.rand(2, 3, dtype=torch.float64)
    p = _state(m, x)  # (2, 8)
    bits = np.array(list(itertools.product([0, 1], repeat=3)))
    signs = np.stack([np.prod(1 - 2 * bits[:, [i for i, ch in enumerate(w) if ch == "Z"]], axis=1)
                      for w in z_words(3, 6)], axis=1)
    torch.testing.assert_close(m(x), p @ torch.as_tensor(signs, dtype=torch.float64))


def test_explicit_pauli_words_and_errors():
    m = QuantumLinear(2, 2, readout=["XZ", "yy"], seed=0)
    assert m.readout == ["XZ", "YY"] and m(torch.rand(5, 2)).shape == (5, 2)
    with pytest.raises(ValueError, match=r"readout must list out_features=3 Pauli words; got 2"):
        QuantumLinear(2, 3, readout=["XZ", "ZZ"])
    with pytest.raises(ValueError, match=r"readout Pauli words must have n_qubits=2 letters; got 3"):
        QuantumLinear(2, 2, readout=["XZZ", "ZZZ"], n_qubits=2)
    with pytest.raises(ValueError, match=r"readout must be one of \['z', 'probs', 'pauli'\] or a list of Pauli words"):
        QuantumLinear(2, 2, readout="expval")
    with pytest.raises(ValueError, match=r"with readout='probs' out_features must be <= 4 on 2 qubits; got 5"):
        QuantumLinear(2, 5, readout="probs", n_qubits=2)


def test_reupload_chunks_and_reference():
    m = QuantumLinear(10, 3, bias=False, encoding="reupload", n_qubits=4, n_layers=1, seed=0).double()
    # 3 chunks (4 + 4 + 2 features), each followed by one ansatz layer
    names = [g.name for g in m.circuit.gates]
    assert names.count("RY") == 10 and names.count("Rot") == 12 and m.circuit.n_inputs == 10
    x = torch.rand(2, 10, dtype=torch.float64, requires_grad=True)
    y = m(x)
    # the same computation on the exact gates path
    ref = qnn.get_engine("torch", mode="gates").run(m.circuit, x, m.weight)
    torch.testing.assert_close(y, ref)
    gx = torch.autograd.grad(y.sum(), x)[0]
    assert torch.isfinite(gx).all() and (gx != 0).all()  # every feature reaches the output


def test_budget_refusals_say_what_would_work():
    with pytest.raises(ValueError, match=r"QuantumLinear: angle encoding of 784 features needs 784 qubits, more than "
                                         r"qubit_budget=20; use encoding='amplitude' \(10 qubits\), encoding='reupload'"):
        QuantumLinear(784, 10)
    with pytest.raises(ValueError, match=r"readout='z' of 25 outputs needs 25 qubits.*readout='probs' \(5 qubits\), "
                                         r"readout='pauli' \(5 qubits\)"):
        QuantumLinear(3, 25)
    with pytest.raises(ValueError, match=r"n_qubits must be <= qubit_budget \(4\); got 6"):
        QuantumLinear(3, 2, n_qubits=6, qubit_budget=4)
    assert QuantumLinear(784, 10, encoding="amplitude").n_qubits == 10
    assert QuantumLinear(784, 10, encoding="reupload", n_qubits=10).n_qubits == 10


def test_from_linear_copies_shape_bias_dtype():
    lin = nn.Linear(3, 2).double()
    q = QuantumLinear.from_linear(lin, seed=0)
    assert (q.in_features, q.out_features) == (3, 2) and q.weight.dtype == torch.float64
    torch.testing.assert_close(q.bias.detach(), lin.bias.detach())
    assert QuantumLinear.from_linear(nn.Linear(3, 2, bias=False)).bias is None
    assert torch.equal(QuantumLinear.from_linear(lin, copy_bias=False).bias.detach(), torch.zeros(2, dtype=torch.float64))
    with pytest.raises(TypeError, match="QuantumLinear.from_linear: expected an nn.Linear; got Conv2d"):
        QuantumLinear.from_linear(nn.Conv2d(1, 1, 1))


@pytest.mark.parametrize("k,stride,padding", [(2, 2, 0), (3, 1, 1), ((2, 3), (1, 2), (1, 0)), (3, 1, "same")])
def test_quanv_equals_per_patch_reference_and_conv_shapes(k, stride, padding):
    q = QuanvConv2d(2, 3, k, stride, padding, n_layers=1, seed=0).double()
    conv = nn.Conv2d(2, 3, k, stride, padding).double()
    x = torch.rand(2, 2, 7, 6, dtype=torch.float64)
    y = q(x)
    assert y.shape == conv(x).shape
    kh, kw = q.kernel_size
    xp = nn.functional.pad(x, (q.padding[1], q.padding[1], q.padding[0], q.padding[0]))
    for n, i, j in itertools.product(range(2), range(y.shape[2]), range(y.shape[3])):
        patch = xp[n, :, i * q.stride[0]: i * q.stride[0] + kh, j * q.stride[1]: j * q.stride[1] + kw]
        torch.testing.assert_close(y[n, :, i, j], q.quantum(patch.reshape(-1)))
    assert q(x[0]).shape == y.shape[1:]


def test_quanv_from_conv2d_and_errors():
    conv = nn.Conv2d(1, 4, 2, stride=2)
    q = QuanvConv2d.from_conv2d(conv, seed=0)
    assert (q.kernel_size, q.stride, q.padding, q.n_qubits) == ((2, 2), (2, 2), (0, 0), 4)
    torch.testing.assert_close(q.bias.detach(), conv.bias.detach())
    with pytest.raises(ValueError, match=r"QuanvConv2d: expected 1 input channel\(s\); got 3"):
        q(torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"QuanvConv2d: expected input \(N, C, H, W\) or \(C, H, W\); got \(4, 4\)"):
        q(torch.rand(4, 4))
    with pytest.raises(ValueError, match=r"QuanvConv2d: input 1x1 is smaller than the kernel"):
        q(torch.rand(1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"padding='same' needs stride 1 and an odd kernel"):
        QuanvConv2d(1, 2, 2, padding="same")
    with pytest.raises(ValueError, match=r"QuanvConv2d: kernel_size must be an int or a pair of ints; got 'x'"):
        QuanvConv2d(1, 2, "x")
    with pytest.raises(ValueError, match=r"QuanvConv2d: out_channels must be an int >= 1; got 0"):
        QuanvConv2d(1, 0, 2)
    y = q(torch.rand(2, 1, 4, 4))
    y.sum().backward()
    assert q.weight.grad.abs().sum() > 0
