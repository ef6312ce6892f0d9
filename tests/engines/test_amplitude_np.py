"""The amplitude embedding's numpy twin (the small path's U variant) against the torch
version (values, autograd gradients, the all-zero refusal), on padded, huge and tiny rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import qnn
from qnn.engines._amplitude import amplitude_grad_np, amplitude_states, amplitude_states_np


@pytest.mark.parametrize("n,n_features,pad", [(2, 4, 0.0), (3, 5, 0.0), (3, 6, 0.3), (1, 1, 0.5)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_numpy_twin_matches_torch(n, n_features, pad, dtype):
    c = qnn.Circuit(n)
    c.new_inputs(2)  # the embedded features do not start at input 0
    c.amplitude_prep(n_features, pad=pad)
    sp = c.state_prep
    g = torch.Generator().manual_seed(n + n_features)
    x = torch.randn(3, 7, c.n_inputs, dtype=dtype, generator=g)
    x[0, 0] *= 1e20 if dtype == torch.float32 else 1e150
    x[1, 1] *= 1e-30
    ref = torch.stack([amplitude_states("T", sp, n, x[i]) for i in range(3)])
    got, norms = amplitude_states_np("T", sp, n, x.numpy())
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    np.testing.assert_allclose(got, ref.numpy(), atol=tol, rtol=0)
    cot = torch.randn(ref.shape, dtype=dtype, generator=g)
    xs = x.clone().requires_grad_()
    (torch.stack([amplitude_states("T", sp, n, xs[i]) for i in range(3)]) * cot).sum().backward()
    gx = amplitude_grad_np(sp, c.n_inputs, got, norms, cot.numpy())
    scale = np.abs(xs.grad.numpy()).max(-1, keepdims=True) + 1e-30
    np.testing.assert_allclose(gx / scale, xs.grad.numpy() / scale, atol=10 * tol, rtol=0)


def test_all_zero_rows_are_refused():
    c = qnn.Circuit(2)
    qnn.amplitude_embedding(c, 3)
    x = np.ones((2, 4, 3))
    x[1, 2] = 0
    with pytest.raises(ValueError, match=r"Eng: amplitude embedding of sample 2 of copy 1 is the all-zero vector \(after padding with 0.0\)"):
        amplitude_states_np("Eng", c.state_prep, 2, x)
    with pytest.raises(ValueError, match=r"of sample 2 is the all-zero vector"):
        amplitude_states_np("Eng", c.state_prep, 2, x[1:])
    x[0, 0] = 0
    with pytest.raises(ValueError, match=r"sample 0 of copy 0 \(and 1 more\)"):
        amplitude_states_np("Eng", c.state_prep, 2, x)


def test_engine_refuses_zero_rows_on_the_numpy_path():
    from qnn.engines.torch_engine import TorchEngine

    c = qnn.Circuit(2)
    qnn.amplitude_embedding(c, 4)
    qnn.strongly_entangling_layers(c, 1)
    c.measure_z()
    x = torch.rand(16, 4)
    x[5] = 0
    eng = TorchEngine()
    assert eng.choose_mode(c, 16) == "small"
    with pytest.raises(ValueError, match="TorchEngine: amplitude embedding of sample 5 is the all-zero vector"):
        eng.run(c, x, torch.zeros(c.n_weights))
