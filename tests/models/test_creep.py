"""The Creep network: the baseline, every swap configuration, the controls, both modes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qnn.layers import DataReUploadingLinear, FlippedQuanv3x3
from qnn.models.creep import CONFIGURATIONS, CreepNet, composed_conv, hybrid_net, matched_hidden


def _n(m):
    return sum(p.numel() for p in m.parameters())


def test_baseline_matches_the_paper():
    assert _n(CreepNet(1, seed=0)) == 130394 and _n(CreepNet(3, seed=0)) == 130970  # creep.md §1
    a, b = CreepNet(seed=3), CreepNet(seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    state = torch.random.get_rng_state()
    CreepNet(seed=4)
    assert torch.equal(state, torch.random.get_rng_state()), "the global RNG was touched"
    # levels 0 and 1 are affine: f(x + y) - f(y) = f(x) - f(0)
    net = CreepNet(seed=0).double()
    x, y, z = (torch.randn(1, 1, 32, 32, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(net(x + y) - net(y), net(x) - net(z * 0))


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_every_configuration_builds_and_runs(configuration):
    model, report = hybrid_net(configuration, mode="paper", n_reps=2, seed=0)
    out = model(torch.rand(2, 1, 32, 32) * 2 - 1)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    swapped = {"level0": set(), "classical": set(), "level1": {"conv1", "conv2"}, "level2": {"conv1", "conv2", "fc"},
               "control-tanh": set(), "control-mlp": set()}.get(configuration, set(configuration.split("+")))
    assert set(report.names) == swapped
    for name in ("conv1", "conv2"):
        assert isinstance(getattr(model, name), FlippedQuanv3x3 if name in swapped else nn.Conv2d)
    if "fc" in swapped:
        assert isinstance(model.fc, DataReUploadingLinear) and model.fc.n_qubits == 7


def test_level2_parameter_counts_and_modes():
    paper, rp = hybrid_net("level2", mode="paper", seed=0)
    phys, rq = hybrid_net("level2", mode="physical", seed=0)
    assert rp.params_after == rq.params_after == 172048  # creep.md §2b (C_in = 1)
    assert paper.fc.weight.is_complex() and not phys.fc.weight.is_complex()
    assert phys.fc.unitarity_error() < 1e-4 and phys.conv1.unitarity_error() < 1e-4
    assert "mode=paper" in repr(paper.fc) and "mode=physical" in repr(phys.conv2)
    out = phys(torch.rand(3, 1, 32, 32))
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in phys.parameters())


def test_controls_tell_quantum_from_nonlinear():
    tanh, _ = hybrid_net("control-tanh", seed=0)
    assert _n(tanh) == 130394 and isinstance(tanh.act, nn.Tanh)
    mlp, report = hybrid_net("control-mlp", seed=0)
    dru = 10 * (4**7 - 1) + 10
    fc_params = _n(mlp.fc)
    assert abs(fc_params - dru) / dru < 0.01, (fc_params, dru)
    assert matched_hidden(12544, 10) == 13 and report.params_after == _n(mlp)


def test_classical_layers_shared_across_configurations():
    l0, _ = hybrid_net("level0", seed=5)
    l1, _ = hybrid_net("conv1", seed=5)
    assert torch.equal(l0.fc.weight, l1.fc.weight) and torch.equal(l0.conv2.weight, l1.conv2.weight)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"hybrid_net: configuration must be one of \['level0', 'level1'"):
        hybrid_net("level3")
    with pytest.raises(ValueError, match=r"hybrid_net: mode must be one of \['paper', 'physical'\]; got 'exact'"):
        hybrid_net("level2", mode="exact")
    with pytest.raises(ValueError, match="CreepNet: in_channels must be 1 or 3; got 2"):
        CreepNet(2)
    with pytest.raises(ValueError, match="FlippedQuanv3x3.from_conv2d: needs a 3x3 kernel"):
        FlippedQuanv3x3.from_conv2d(nn.Conv2d(1, 2, 5))
    with pytest.raises(TypeError, match="DataReUploadingLinear.from_linear: expected an nn.Linear; got Conv2d"):
        DataReUploadingLinear.from_linear(nn.Conv2d(1, 2, 3))


def test_from_classical_copies_shapes_and_bias():
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    q = FlippedQuanv3x3.from_conv2d(conv, seed=0)
    assert (q.in_channels, q.out_channels, q.stride, q.padding) == (3, 4, 2, 1)
    torch.testing.assert_close(q.bias.detach(), conv.bias.detach())
    x = torch.rand(2, 3, 9, 9)
    assert q(x).shape == conv(x).shape
    lin = nn.Linear(20, 3)
    d = DataReUploadingLinear.from_linear(lin, n_reps=2, seed=0)
    assert (d.in_features, d.out_features, d.n_qubits) == (20, 3, 3)
    torch.testing.assert_close(d.bias.detach(), lin.bias.detach())


def _grads(net, x):
    net.zero_grad(set_to_none=True)
    out = net(x)
    (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape).to(out)).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}


@pytest.mark.parametrize("layers", ["classical", "flipped-physical", "flipped-paper", "mixed"])
def test_fused_convolutions_equal_the_layer_by_layer_path(layers):
    net = CreepNet(3, image_size=9, seed=0).double()
    if layers != "classical":
        mode = "paper" if layers == "flipped-paper" else "physical"
        net.conv2 = FlippedQuanv3x3(32, 16, mode=mode, seed=2, dtype=torch.float64)
        if layers != "mixed":
            net.conv1 = FlippedQuanv3x3(3, 32, mode=mode, seed=1, dtype=torch.float64)
    x = torch.randn(4, 3, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert composed_conv(net.conv1, net.conv2, x) is not None  # the fused path is taken
    out, grads = _grads(net, x)
    net.fuse_convs = False
    ref, ref_grads = _grads(net, x)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-10, atol=1e-12, msg=name)


def test_fused_convolutions_float32_level2_and_fallbacks():
    model, _ = hybrid_net("level2", n_reps=2, seed=0)
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out, grads = _grads(model, x)
    model.fuse_convs = False
    ref, ref_grads = _grads(model, x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    for name in grads:
        scale = ref_grads[name].abs().max()
        assert (grads[name] - ref_grads[name]).abs().max() <= 1e-3 * scale, name
    # not fused: a forward hook on a convolution (it must see its input), padding, other dtypes
    model.fuse_convs = True
    seen = []
    handle = model.conv1.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    assert composed_conv(model.conv1, model.conv2, x) is None
    model(x)
    assert seen == [torch.Size([3, 32, 30, 30])]
    handle.remove()
    assert composed_conv(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3), x) is None
    assert composed_conv(model.conv1, model.conv2, x.double()) is None
    assert composed_conv(model.conv1, model.conv2, x[:, :, :4, :4]) is None
    tanh, _ = hybrid_net("control-tanh", seed=0)
    torch.testing.assert_close(tanh(x), tanh.fc(tanh.act(tanh.conv2(tanh.act(tanh.conv1(x)))).flatten(1)))
