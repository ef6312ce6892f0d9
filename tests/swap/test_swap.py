"""qnn.swap on an MLP, a small CNN, nested / shared / ModuleDict models; refusals; plans."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import qnn
from qnn.layers import QuantumLinear, QuanvConv2d
from qnn.swap import Rule, SwapPlan, select, swap


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3))


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.conv1 = nn.Conv2d(1, 2, 2, stride=2)
        self.conv2 = nn.Conv2d(2, 3, 2)
        self.fc = nn.Linear(3 * 2 * 2, 4)
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x):
        return self.fc(self.conv2(self.conv1(x)).flatten(1))


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        shared = nn.Linear(3, 3)
        self.encoder = nn.Sequential(nn.Linear(5, 3), nn.ReLU())
        self.blocks = nn.ModuleDict({"a": shared, "b": shared})
        self.heads = nn.ModuleList([nn.Linear(3, 2), nn.Linear(3, 2)])

    def forward(self, x):
        h = self.encoder(x)
        h = self.blocks["b"](self.blocks["a"](h))
        return self.heads[0](h) + self.heads[1](h)


def test_mlp_simplest_call():
    net = mlp()
    before = copy.deepcopy(net.state_dict())
    hybrid, report = qnn.swap(net, nn.Linear, seed=0)
    assert [type(m).__name__ for m in hybrid] == ["QuantumLinear", "Tanh", "QuantumLinear"]
    # the original is untouched
    assert all(type(m) is not QuantumLinear for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # shapes kept, biases copied as the warm start
    assert (hybrid[0].in_features, hybrid[0].out_features) == (6, 4)
    assert torch.equal(hybrid[2].bias.detach(), net[2].bias.detach())
    y = hybrid(torch.rand(5, 6))
    assert y.shape == (5, 3)
    y.sum().backward()
    assert hybrid[0].weight.grad is not None and hybrid[0].bias.grad is not None
    assert report.names == ["0", "2"] and len(report) == 2
    assert report.params_before == sum(p.numel() for p in net.parameters())
    assert report.params_after == sum(p.numel() for p in hybrid.parameters())
    text = str(report)
    assert "QuantumLinear" in text and "qubits" in text and "(whole model)" in text
    assert report.to_markdown().count("\n") == 4
    row = report.rows[0]
    assert row.n_qubits == hybrid[0].n_qubits and row.depth == hybrid[0].circuit.depth and row.engine == "torch"


def test_inplace_changes_the_model():
    net = mlp()
    out, _ = swap(net, "2", inplace=True)
    assert out is net and isinstance(net[2], QuantumLinear) and isinstance(net[0], nn.Linear)


def test_small_cnn_all_layer_types():
    net = SmallCNN()
    hybrid, report = swap(net, (nn.Conv2d, nn.Linear), seed=3)
    assert isinstance(hybrid.conv1, QuanvConv2d) and isinstance(hybrid.conv2, QuanvConv2d)
    assert isinstance(hybrid.fc, QuantumLinear)
    x = torch.rand(2, 1, 6, 6)
    assert net(x).shape == hybrid(x).shape == (2, 4)
    assert hybrid.conv1.kernel_size == (2, 2) and hybrid.conv1.stride == (2, 2)
    assert [r.new for r in report.rows] == ["QuanvConv2d", "QuanvConv2d", "QuantumLinear"]
    hybrid(x).sum().backward()
    assert hybrid.conv1.weight.grad.abs().sum() > 0


def test_nested_shared_and_moduledict():
    net = Nested()
    hybrid, report = swap(net, {"blocks.*": None, ("heads.1",): None}, seed=0)
    assert hybrid.blocks["a"] is hybrid.blocks["b"] and isinstance(hybrid.blocks["a"], QuantumLinear)
    assert isinstance(hybrid.heads[1], QuantumLinear) and isinstance(hybrid.heads[0], nn.Linear)
    assert isinstance(hybrid.encoder[0], nn.Linear)
    assert report.rows[0].names == ["blocks.a", "blocks.b"]
    assert hybrid(torch.rand(4, 5)).shape == (4, 2)


def test_custom_factory_and_first_rule_wins():
    made = []

    def factory(module, name, engine):
        made.append((name, engine))
        return QuantumLinear.from_linear(module, n_layers=1, seed=0)

    net = mlp()
    hybrid, _ = swap(net, [Rule("0", factory), Rule(nn.Linear)], seed=0)
    assert made == [("0", "torch")]
    assert hybrid[0].n_layers == 1 and hybrid[2].n_layers == 2


def test_children_of_a_selected_module_are_not_searched():
    outer = nn.Sequential(nn.Sequential(nn.Linear(2, 2)), nn.Linear(2, 2))
    found = select(outer, {nn.Sequential: None, nn.Linear: None})
    assert [n for n, _, _ in found] == [["0"], ["1"]]


REFUSALS = [
    ("too-many-features", lambda: swap(nn.Sequential(nn.Linear(12544, 10)), nn.Linear, qubit_budget=10), ValueError,
     r"swap: cannot replace '0' \(Linear\(in_features=12544, out_features=10, bias=True\)\): QuantumLinear: "
     r"amplitude encoding of 12544 features needs 14 qubits, more than qubit_budget=10; use encoding='reupload' "
     r"\(chunks of up to 10 features re-uploaded on one register\), a classical projection in front"),
    ("conv-too-wide", lambda: swap(nn.Sequential(nn.Conv2d(32, 16, 3)), {nn.Conv2d: lambda m: QuanvConv2d.from_conv2d(m)}),
     ValueError, r"swap: cannot replace '0' .*QuanvConv2d: a 3x3 patch of 32 channel\(s\) is 288 features: .*"
     r"use encoding='amplitude' \(9 qubits\), encoding='reupload'"),
    ("too-many-outputs", lambda: swap(nn.Sequential(nn.Linear(4, 30)), {nn.Linear: lambda m: QuantumLinear.from_linear(m)}),
     ValueError, r"readout='z' of 30 outputs needs 30 qubits, more than qubit_budget=20; use readout='probs' \(5 qubits\)"),
    ("no-match", lambda: swap(mlp(), nn.Conv2d), ValueError, r"swap: the rules \['nn.Conv2d'\] match no module of Sequential"),
    ("missing-name", lambda: swap(mlp(), ("0", "fc")), ValueError, r"swap: no module named \['fc'\]; the model's modules are \['0', '1', '2'\]"),
    ("no-default", lambda: swap(nn.Sequential(nn.LSTM(3, 3)), nn.LSTM), TypeError,
     r"swap: no default quantum layer for LSTM '0'; give a factory"),
    ("bad-selector", lambda: swap(mlp(), 3), TypeError, r"swap: a rule selects by an nn.Module type, a name pattern"),
    ("not-a-module", lambda: swap("net", nn.Linear), TypeError, r"swap: model must be a torch.nn.Module; got str"),
    ("wrong-shape-factory", lambda: swap(mlp(), {"0": lambda m: QuantumLinear(6, 3)}), ValueError,
     r"swap: the replacement of '0' must keep out_features=4; got 3 from QuantumLinear"),
    ("factory-not-module", lambda: swap(mlp(), {"0": lambda m: 3}), TypeError, r"must return an nn.Module; got int"),
    ("dilated-conv", lambda: swap(nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2)), nn.Conv2d), ValueError,
     r"dilation, groups and padding modes other than zeros have no quanvolution counterpart"),
]


@pytest.mark.parametrize("call,exc,match", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refused_at_construction(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_refusal_leaves_inplace_model_unchanged():
    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 40))
    with pytest.raises(ValueError):
        swap(net, {nn.Linear: lambda m: QuantumLinear.from_linear(m)}, inplace=True)
    assert all(isinstance(m, nn.Linear) for m in net)


def test_plan_cumulative_is_the_papers_sequence():
    net = SmallCNN()
    plan = SwapPlan(net, [("conv1", "conv2"), "fc"])
    assert [s.name for s in plan] == ["level0", "level1", "level2"]
    assert [s.swapped for s in plan] == [(), ("conv1+conv2",), ("conv1+conv2", "fc")]
    m0, r0 = plan["level0"].build()
    assert type(m0.conv1) is nn.Conv2d and len(r0) == 0 and m0 is not net
    m1, r1 = plan[1].build(seed=0)
    assert isinstance(m1.conv1, QuanvConv2d) and isinstance(m1.fc, nn.Linear) and r1.names == ["conv1", "conv2"]
    m2, _ = plan["level2"].build(seed=0)
    assert isinstance(m2.fc, QuantumLinear)


def test_plan_subsets_and_errors():
    net = SmallCNN()
    plan = SwapPlan(net, ["conv1", "conv2", "fc"], schedule="subsets")
    assert len(plan) == 8 and plan[0].name == "classical" and plan[-1].name == "conv1+conv2+fc"
    assert {s.name for s in plan} >= {"conv1", "fc", "conv2+fc"}
    with pytest.raises(KeyError, match=r"no step named 'level9'"):
        plan["level9"]
    with pytest.raises(ValueError, match=r"SwapPlan: group 'conv9' selects no module"):
        SwapPlan(net, ["conv9"])
    with pytest.raises(ValueError, match=r"SwapPlan: module 'fc' is in groups 'fc' and 'Linear'"):
        SwapPlan(net, ["fc", nn.Linear])
    with pytest.raises(ValueError, match=r"schedule must be one of \['cumulative', 'subsets'\]"):
        SwapPlan(net, ["fc"], schedule="random")
    with pytest.raises(ValueError, match=r"SwapPlan: factories name unknown groups \['fc2'\]"):
        SwapPlan(net, ["fc"], factories={"fc2": None})
    # an impossible match is refused when the plan is made, not when its last step is built
    with pytest.raises(ValueError, match="qubit_budget=3"):
        SwapPlan(net, ["fc"], qubit_budget=3)


def test_swapped_model_pickles_and_deep_copies(tmp_path):
    import pickle

    hybrid, _ = swap(SmallCNN(), (nn.Conv2d, nn.Linear), seed=0)
    x = torch.rand(2, 1, 6, 6)
    y = hybrid(x)
    assert torch.equal(pickle.loads(pickle.dumps(hybrid))(x), y)
    assert torch.equal(copy.deepcopy(hybrid)(x), y)
    torch.save(hybrid.state_dict(), tmp_path / "w.pt")
    again, _ = swap(SmallCNN(), (nn.Conv2d, nn.Linear), seed=1)
    again.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    assert torch.equal(again(x), y)
