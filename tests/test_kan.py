"""Tests for qnn.kan: B-spline basis against a direct Cox–de Boor recursion, KANLinear."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from qnn.kan import KANLinear, bspline_basis, uniform_bspline_basis, uniform_knots


def cox_de_boor(x: float, k: int, p: int, t: np.ndarray) -> float:
    """Direct scalar recursion B_{k,p}(x) on knots t (half-open order-0 pieces)."""
    if p == 0:
        return 1.0 if t[k] <= x < t[k + 1] else 0.0
    a = 0.0 if t[k + p] == t[k] else (x - t[k]) / (t[k + p] - t[k]) * cox_de_boor(x, k, p - 1, t)
    b = 0.0 if t[k + p + 1] == t[k + 1] else (t[k + p + 1] - x) / (t[k + p + 1] - t[k + 1]) * cox_de_boor(
        x, k + 1, p - 1, t)
    return a + b


class TestBasis:
    @pytest.mark.parametrize("G,K", [(3, 3), (5, 3), (4, 2), (6, 1)])
    def test_against_cox_de_boor(self, G, K):
        t = uniform_knots(G, K, (-1.0, 1.0), dtype=torch.float64)
        tn = t.numpy()
        np.testing.assert_allclose(tn[0], -1 - K * 2 / G)
        assert len(tn) == G + 2 * K + 1
        xs = np.linspace(tn[0] - 0.3, tn[-1] + 0.3, 97)
        B = bspline_basis(torch.tensor(xs).unsqueeze(1), t, K)[:, 0].numpy()
        assert B.shape == (97, G + K)
        ref = np.array([[cox_de_boor(x, k, K, tn) for k in range(G + K)] for x in xs])
        np.testing.assert_allclose(B, ref, atol=1e-12)

    @pytest.mark.parametrize("G,K,rng", [(3, 3, (-1, 1)), (5, 3, (-2, 3)), (4, 2, (0, 1))])
    def test_uniform_fast_path_equals_general(self, G, K, rng):
        t = uniform_knots(G, K, rng, dtype=torch.float64)
        x = torch.linspace(t[0].item() - 1, t[-1].item() + 1, 301, dtype=torch.float64).reshape(-1, 1)
        torch.testing.assert_close(uniform_bspline_basis(x, G, K, rng), bspline_basis(x, t, K), atol=1e-12, rtol=0)

    def test_partition_of_unity_inside_grid(self):
        G, K = 5, 3
        t = uniform_knots(G, K, dtype=torch.float64)
        x = torch.linspace(-1, 0.999, 200, dtype=torch.float64).unsqueeze(1)
        np.testing.assert_allclose(bspline_basis(x, t, K).sum(-1).numpy(), 1.0, atol=1e-12)

    def test_zero_outside_extended_range(self):
        G, K = 3, 3
        t = uniform_knots(G, K, dtype=torch.float64)
        x = torch.tensor([[t[0].item() - 0.01], [t[-1].item() + 0.01], [-10.0], [10.0]], dtype=torch.float64)
        assert torch.all(bspline_basis(x, t, K) == 0)

    def test_per_input_knots(self):
        t1 = uniform_knots(3, 3, (-1, 1), dtype=torch.float64)
        t2 = uniform_knots(3, 3, (0, 4), dtype=torch.float64)
        x = torch.tensor([[0.3, 2.5]], dtype=torch.float64)
        B = bspline_basis(x, torch.stack([t1, t2]), 3)
        np.testing.assert_allclose(B[0, 0].numpy(), [cox_de_boor(0.3, k, 3, t1.numpy()) for k in range(6)])
        np.testing.assert_allclose(B[0, 1].numpy(), [cox_de_boor(2.5, k, 3, t2.numpy()) for k in range(6)])


class TestKANLinear:
    def test_param_count_tfkan(self):
        for i, o, G in [(12, 112, 3), (1344, 176, 3), (176, 48, 5), (1, 112, 3)]:
            layer = KANLinear(i, o, grid_size=G)
            K = 3
            assert sum(p.numel() for p in layer.parameters()) == i * (G + K) * o + i * o + o

    def test_tfkan_formula_direct(self):
        torch.manual_seed(0)
        layer = KANLinear(3, 2, grid_size=3).double()
        with torch.no_grad():
            layer.bias.normal_()
        x = torch.rand(7, 3, dtype=torch.float64) * 2.6 - 1.3
        t = layer.knots.numpy()
        c, w, b = layer.scale.detach().numpy(), layer.spline_weight.detach().numpy(), layer.bias.detach().numpy()
        ref = np.zeros((7, 2))
        for n in range(7):
            for j in range(2):
                s = b[j]
                for i in range(3):
                    xi = x[n, i].item()
                    spl = sum(w[i, k, j] * cox_de_boor(xi, k, 3, t) for k in range(6))
                    s += c[i, j] * (xi / (1 + math.exp(-xi)) + spl)
                ref[n, j] = s
        np.testing.assert_allclose(layer(x).detach().numpy(), ref, atol=1e-10)

    def test_efficient_formula_direct(self):
        torch.manual_seed(1)
        layer = KANLinear(2, 3, grid_size=4, parameterization="efficient").double()
        with torch.no_grad():
            layer.spline_scaler.uniform_(0.5, 1.5)
        x = torch.rand(5, 2, dtype=torch.float64) * 2 - 1
        phi = layer.edge_functions(x)
        t = layer.knots.numpy()
        a = layer.base_weight.detach().numpy()
        s = layer.spline_scaler.detach().numpy()
        w = layer.spline_weight.detach().numpy()
        for n in range(5):
            for i in range(2):
                for j in range(3):
                    xi = x[n, i].item()
                    ref = a[i, j] * xi / (1 + math.exp(-xi)) + s[i, j] * sum(
                        w[i, k, j] * cox_de_boor(xi, k, 3, t[i]) for k in range(7))
                    assert abs(phi[n, i, j].item() - ref) < 1e-10
        np.testing.assert_allclose(layer(x).detach().numpy(), (phi.sum(1) + layer.bias).detach().numpy(), atol=1e-10)

    def test_init_statistics(self):
        torch.manual_seed(0)
        layer = KANLinear(200, 300, grid_size=3)
        bound = math.sqrt(6 / 500)
        assert layer.scale.abs().max() <= bound
        assert abs(layer.spline_weight.std().item() - 0.1) < 0.005
        assert torch.all(layer.bias == 0)

    def test_position_wise(self):
        layer = KANLinear(1, 5, grid_size=3)
        x = torch.rand(4, 12, 1)
        y = layer(x)
        assert y.shape == (4, 12, 5)
        torch.testing.assert_close(y[:, 3], layer(x[:, 3]))

    def test_silu_only_outside_range(self):
        layer = KANLinear(1, 1, grid_size=3).double()
        x = torch.tensor([[5.0], [-7.0]], dtype=torch.float64)
        torch.testing.assert_close(layer(x), layer.scale * F.silu(x) + layer.bias)

    def test_gradcheck(self):
        layer = KANLinear(3, 2, grid_size=3).double()
        x = (torch.rand(4, 3, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
        assert torch.autograd.gradcheck(layer, (x,))

    def test_update_grid_preserves_function(self):
        torch.manual_seed(0)
        layer = KANLinear(3, 2, grid_size=5, parameterization="efficient").double()
        x = torch.rand(400, 3, dtype=torch.float64) * 1.6 - 0.8
        y0 = layer(x)
        old = layer.knots.clone()
        layer.update_grid(x)
        assert not torch.equal(old, layer.knots)
        assert layer.knots[:, 3].max() < -0.75 and layer.knots[:, -4].min() > 0.75
        assert (layer(x) - y0).abs().max() < 0.02 * y0.abs().max()

    def test_update_grid_refuses_tfkan(self):
        with pytest.raises(ValueError, match="update_grid needs parameterization='efficient'"):
            KANLinear(2, 2).update_grid(torch.rand(3, 2))

    def test_bad_args(self):
        with pytest.raises(ValueError, match="parameterization must be one of"):
            KANLinear(2, 2, parameterization="pykan")
        with pytest.raises(ValueError, match="grid_size must be an int >= 1"):
            KANLinear(2, 2, grid_size=0)
        with pytest.raises(ValueError, match="grid_range must be"):
            KANLinear(2, 2, grid_range=(1, -1))
        with pytest.raises(ValueError, match="expected input with last dimension 2; got shape"):
            KANLinear(2, 2)(torch.rand(3, 4))

    def test_repr_and_reset(self):
        layer = KANLinear(4, 3, grid_size=3, parameterization="efficient")
        r = repr(layer)
        assert "in_features=4" in r and "grid_size=3" in r and "efficient" in r and "weights" in r
        w = layer.spline_weight.clone()
        layer.reset_parameters()
        assert not torch.equal(w, layer.spline_weight)

    def test_state_dict_roundtrip(self):
        a, b = KANLinear(3, 2, parameterization="efficient"), KANLinear(3, 2, parameterization="efficient")
        a.update_grid(torch.rand(50, 3))
        b.load_state_dict(a.state_dict())
        x = torch.rand(4, 3)
        torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize("G,K", [(3, 3), (5, 2), (4, 1)])
def test_uniform_basis_analytic_gradient(G, K):
    """The custom backward (analytic B-spline derivative) agrees with finite differences."""
    x = (torch.rand(6, 3, dtype=torch.float64) * 3.2 - 1.6).requires_grad_()
    w = torch.randn(6, 3, G + K, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: (uniform_bspline_basis(z, G, K) * w).sum(), (x,))


@pytest.mark.parametrize("G,K,bias", [(3, 3, True), (5, 2, False), (4, 1, True), (3, 0, True)])
def test_tfkan_fused_forward_backward(G, K, bias):
    """The hand-written tfkan forward/backward equals autograd on the plain formula, and passes
    gradcheck for inputs, scale, spline weights and bias."""
    torch.manual_seed(G + K)
    layer = KANLinear(4, 3, grid_size=G, spline_order=K, bias=bias).double()
    if bias:
        with torch.no_grad():
            layer.bias.normal_()
    x = (torch.rand(6, 4, dtype=torch.float64) * 3.0 - 1.5).requires_grad_()
    params = [p for p in (layer.scale, layer.spline_weight, layer.bias) if p is not None]

    def plain(z):
        B = bspline_basis(z, uniform_knots(G, K, dtype=torch.float64), K).reshape(len(z), -1)
        W = (layer.scale.unsqueeze(1) * layer.spline_weight).reshape(-1, 3)
        y = B @ W + torch.nn.functional.silu(z) @ layer.scale
        return y + layer.bias if bias else y

    gy = torch.randn(6, 3, dtype=torch.float64)
    got = torch.autograd.grad(layer(x), [x, *params], gy)
    ref = torch.autograd.grad(plain(x), [x, *params], gy)
    torch.testing.assert_close(layer(x), plain(x), atol=1e-12, rtol=0)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=1e-12, rtol=1e-10)
    assert torch.autograd.gradcheck(lambda z, *ps: layer(z), (x, *params))
    # only some inputs need gradients
    x2 = x.detach()
    (gs,) = torch.autograd.grad(layer(x2), [layer.scale], gy)
    torch.testing.assert_close(gs, ref[1], atol=1e-12, rtol=1e-10)
