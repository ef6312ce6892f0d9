"""Tests of qnn.layers: torch.nn conventions, validation, and training as a drop-in for nn.Linear."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

import qnn
from qnn.circuit import Circuit, angle_embedding, strongly_entangling_layers
from qnn.engines import Engine
from qnn.engines.torch_engine import TorchEngine
from qnn.layers import QuantumLayer, QuantumLinear


def _circuit(n=3, layers=2):
    c = Circuit(n)
    angle_embedding(c)
    strongly_entangling_layers(c, layers)
    c.measure_z()
    return c


# ----------------------------------------------------------------------------- QuantumLayer
class TestQuantumLayer:
    def test_shapes_dtype_device(self):
        layer = QuantumLayer(_circuit(), seed=0)
        assert layer.weight.shape == (18,)
        for shape in [(3,), (5, 3), (2, 4, 3)]:
            x = torch.rand(shape)
            y = layer(x)
            assert y.shape == (*shape[:-1], 3)
            assert y.dtype == torch.float32 and y.device == x.device
        y64 = layer(torch.rand(4, 3, dtype=torch.float64))
        assert y64.dtype == torch.float64
        assert torch.all(y64.abs() <= 1 + 1e-12)

    def test_matches_engine_and_gradients_flow(self):
        c = _circuit()
        layer = QuantumLayer(c, seed=1)
        x = torch.rand(6, 3, requires_grad=True)
        y = layer(x)
        torch.testing.assert_close(y, TorchEngine().run(c, x, layer.weight))
        y.sum().backward()
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
        assert x.grad is not None and x.grad.shape == x.shape

    def test_init_and_seed(self):
        a = QuantumLayer(_circuit(), seed=3)
        b = QuantumLayer(_circuit(), seed=3)
        c = QuantumLayer(_circuit(), seed=4)
        torch.testing.assert_close(a.weight, b.weight)
        assert not torch.equal(a.weight, c.weight)
        assert 0 <= a.weight.min() and a.weight.max() < 2 * math.pi
        before = a.weight.detach().clone()
        with torch.no_grad():
            a.weight.zero_()
        a.reset_parameters()
        torch.testing.assert_close(a.weight, before)
        assert torch.count_nonzero(QuantumLayer(_circuit(), init="zeros").weight) == 0
        custom = QuantumLayer(_circuit(), init=lambda w, g: w.fill_(0.5))
        assert torch.all(custom.weight == 0.5)
        with pytest.raises(ValueError, match="init must be one of"):
            QuantumLayer(_circuit(), init="xavier")

    def test_extra_repr(self):
        layer = QuantumLayer(_circuit(4), seed=0)
        assert layer.extra_repr() == "n_qubits=4, n_inputs=4, n_outputs=4, n_weights=24, engine=torch"
        assert "QuantumLayer(n_qubits=4" in repr(layer)

    def test_state_dict_round_trip(self):
        a = QuantumLayer(_circuit(), seed=0)
        b = QuantumLayer(_circuit(), seed=1)
        buf = io.BytesIO()
        torch.save(a.state_dict(), buf)
        buf.seek(0)
        b.load_state_dict(torch.load(buf))
        x = torch.rand(4, 3)
        torch.testing.assert_close(a(x), b(x))

    def test_state_dict_wrong_shape(self):
        a = QuantumLayer(_circuit(), seed=0)
        with pytest.raises(RuntimeError, match=r"size mismatch for weight.*torch.Size\(\[5\]\).*torch.Size\(\[18\]\)"):
            a.load_state_dict({"weight": torch.zeros(5)})

    def test_bad_inputs(self):
        layer = QuantumLayer(_circuit(), seed=0)
        with pytest.raises(ValueError, match="expected input with last dimension 3, got 4"):
            layer(torch.rand(2, 4))
        with pytest.raises(TypeError, match="expected a float32 or float64 input; got torch.int64"):
            layer(torch.ones(2, 3, dtype=torch.long))
        with pytest.raises(TypeError, match="expected a float32 or float64 input; got torch.complex64"):
            layer(torch.ones(2, 3, dtype=torch.complex64))
        with pytest.raises(TypeError, match="expected a torch.Tensor input; got list"):
            layer([[0.0, 0.0, 0.0]])
        for bad in (float("nan"), float("inf"), -float("inf")):
            x = torch.zeros(2, 3)
            x[1, 2] = bad
            with pytest.raises(ValueError, match="input contains NaN or inf"):
                layer(x)
        with pytest.raises(ValueError, match="expected input with last dimension 3, got a scalar"):
            layer(torch.tensor(1.0))

    def test_empty_batch(self):
        layer = QuantumLayer(_circuit(), seed=0)
        y = layer(torch.zeros(0, 3))
        assert y.shape == (0, 3)
        y = layer(torch.zeros(2, 0, 3, dtype=torch.float64))
        assert y.shape == (2, 0, 3) and y.dtype == torch.float64
        y.sum().backward()

    def test_engine_argument(self):
        with pytest.raises(ValueError, match=r"Unknown engine 'nope'; valid engines are \['torch', 'pennylane', 'qiskit', 'ibm'\]"):
            QuantumLayer(_circuit(), engine="nope")
        eng = TorchEngine(mode="adjoint")
        layer = QuantumLayer(_circuit(), engine=eng, seed=0)
        assert layer.engine is eng
        ref = QuantumLayer(_circuit(), engine="torch", engine_options={"mode": "gates"}, seed=0)
        x = torch.rand(3, 3, dtype=torch.float64)
        torch.testing.assert_close(layer(x), ref(x))
        with pytest.raises(ValueError, match="options can only be given with an engine name"):
            QuantumLayer(_circuit(), engine=eng, engine_options={"mode": "gates"})

    def test_any_engine_through_contract(self):
        """A minimal third-party engine (autograd through torch ops) works in the layer."""

        class Doubling(Engine):
            name = "doubling"

            def run(self, circuit, inputs, weights):
                return 2 * TorchEngine().run(circuit, inputs, weights)

        layer = QuantumLayer(_circuit(), engine=Doubling(), seed=0)
        ref = QuantumLayer(_circuit(), seed=0)
        x = torch.rand(2, 3)
        torch.testing.assert_close(layer(x), 2 * ref(x))
        assert "engine=doubling" in repr(layer)

    def test_circuit_validation(self):
        with pytest.raises(TypeError, match="circuit must be a qnn.Circuit; got int"):
            QuantumLayer(3)
        with pytest.raises(ValueError, match="the circuit has no measurements"):
            QuantumLayer(Circuit(2))
        with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64"):
            QuantumLayer(_circuit(), dtype=torch.int32)

    def test_float64_parameters(self):
        layer = QuantumLayer(_circuit(), dtype=torch.float64, seed=0)
        assert layer.weight.dtype == torch.float64
        assert layer(torch.rand(2, 3)).dtype == torch.float32

    @pytest.mark.gpu
    @pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA device not available")
    def test_cuda(self):
        layer = QuantumLayer(_circuit(), seed=0)
        x = torch.rand(4, 3)
        cpu = layer(x)
        layer = layer.cuda()
        y = layer(x.cuda())
        assert y.device.type == "cuda"
        torch.testing.assert_close(y.cpu(), cpu, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- QuantumLinear
class TestQuantumLinear:
    def test_shape_rules_angle(self):
        m = QuantumLinear(4, 2, seed=0)
        assert (m.in_features, m.out_features, m.n_qubits, m.n_layers) == (4, 2, 4, 2)
        assert m.weight.shape == (24,)
        assert m.circuit.n_inputs == 4 and m.circuit.n_outputs == 2
        assert QuantumLinear(2, 5).n_qubits == 5
        assert QuantumLinear(3, 2, n_qubits=6).circuit.n_qubits == 6
        x = torch.rand(7, 3, 4)
        assert m(x).shape == (7, 3, 2)

    def test_shape_rules_amplitude(self):
        m = QuantumLinear(10, 3, encoding="amplitude", seed=0)
        assert m.n_qubits == 4
        assert QuantumLinear(10, 1, encoding="amplitude").n_qubits == 4
        assert QuantumLinear(1, 1, encoding="amplitude").n_qubits == 1
        assert QuantumLinear(64, 2, encoding="amplitude").n_qubits == 6
        y = m(torch.rand(5, 10) + 0.1)
        assert y.shape == (5, 3)
        with pytest.raises(ValueError, match="sample 1 is the all-zero vector"):
            m(torch.stack([torch.ones(10), torch.zeros(10)]))

    def test_outputs_are_z_expectations(self):
        m = QuantumLinear(3, 2, seed=0)
        x = torch.rand(4, 3, dtype=torch.float64)
        full = TorchEngine().run(_circuit(3), x, m.weight.double())
        torch.testing.assert_close(m(x), full[:, :2])

    def test_bad_configuration(self):
        with pytest.raises(ValueError, match=r"with readout='z' out_features must be <= 3 on 3 qubits; got 4; use readout='probs' or 'pauli'"):
            QuantumLinear(3, 4, n_qubits=3)
        with pytest.raises(ValueError, match=r"in_features must be <= n_qubits \(2\); got 3"):
            QuantumLinear(3, 2, n_qubits=2)
        with pytest.raises(ValueError, match=r"in_features must be <= 2\*\*n_qubits \(4\); got 5"):
            QuantumLinear(5, 2, n_qubits=2, encoding="amplitude")
        with pytest.raises(ValueError, match=r"encoding must be one of \['angle', 'amplitude', 'reupload'\]; got 'basis'"):
            QuantumLinear(3, 2, encoding="basis")
        with pytest.raises(ValueError, match="ansatz must be one of"):
            QuantumLinear(3, 2, ansatz="qaoa")
        with pytest.raises(ValueError, match="in_features must be an int >= 1; got 0"):
            QuantumLinear(0, 2)
        with pytest.raises(ValueError, match="n_layers must be an int >= 1; got 0"):
            QuantumLinear(2, 2, n_layers=0)
        with pytest.raises(ValueError, match="rotation must be 'X', 'Y' or 'Z'"):
            QuantumLinear(2, 2, rotation="W")

    def test_extra_repr_and_seed(self):
        m = QuantumLinear(4, 2, seed=0)
        assert m.extra_repr() == (
            "in_features=4, out_features=2, bias=True, n_qubits=4, n_layers=2, encoding=angle, engine=torch, n_weights=24")
        assert "ansatz=basic_entangler" in repr(QuantumLinear(4, 2, ansatz="basic_entangler"))
        torch.testing.assert_close(QuantumLinear(4, 2, seed=5).weight, QuantumLinear(4, 2, seed=5).weight)

    @pytest.mark.parametrize("ansatz", ["strongly_entangling", "basic_entangler", "hardware_efficient"])
    def test_ansatz_weights(self, ansatz):
        m = QuantumLinear(3, 3, n_layers=2, ansatz=ansatz)
        assert m.circuit.weight_blocks[0].shape == qnn.ANSATZE[ansatz].shape(2, 3)

    def test_state_dict_round_trip(self):
        a = QuantumLinear(4, 2, seed=0)
        b = QuantumLinear(4, 2, seed=9)
        b.load_state_dict(a.state_dict())
        x = torch.rand(3, 4)
        torch.testing.assert_close(a(x), b(x))
        with pytest.raises(RuntimeError, match=r"size mismatch for weight.*\[36\].*\[24\]"):
            a.load_state_dict(QuantumLinear(4, 2, n_layers=3).state_dict())

    def test_drop_in_for_linear_trains(self):
        torch.manual_seed(0)
        X = torch.rand(64, 4) * math.pi
        y = (X[:, :1].cos() * X[:, 1:2].sin())
        ref = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
        model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
        model[2] = nn.Linear(3, 1)
        model[0] = QuantumLinear(4, 3, seed=0)  # replaces nn.Linear(4, 3)
        assert isinstance(ref[0], nn.Linear)
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        losses = []
        for _ in range(15):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(X), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.7 * losses[0]
        assert model[0].weight.grad is not None

    def test_amplitude_encoding_gradients(self):
        m = QuantumLinear(5, 2, encoding="amplitude", seed=0, dtype=torch.float64)
        x = (torch.rand(3, 5, dtype=torch.float64) + 0.1).requires_grad_()
        assert torch.autograd.gradcheck(lambda inp: m(inp), (x,), eps=1e-6, atol=1e-6)


def test_exported_from_package():
    assert qnn.QuantumLayer is QuantumLayer and qnn.QuantumLinear is QuantumLinear


@pytest.mark.parametrize("engine", ["torch", "pennylane", "qiskit"])
def test_circuit_without_inputs_runs_through_the_layer(engine):
    """Issue 10, defect 2: a weights-only circuit takes inputs of shape (*, 0)."""
    c = qnn.Circuit(2)
    qnn.strongly_entangling_layers(c, 1)
    c.measure_z()
    layer = QuantumLayer(c, engine=engine, seed=0)
    y = layer(torch.zeros(5, 0))
    assert y.shape == (5, 2) and torch.allclose(y, y[:1].expand(5, 2))
    assert layer(torch.zeros(3, 4, 0)).shape == (3, 4, 2)
    y.sum().backward()
    ref = TorchEngine().run(c, torch.zeros(1, 0), layer.weight.detach().clone().requires_grad_(True))
    assert torch.allclose(y[0], ref[0], atol=1e-6)
    assert torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().sum() > 0
