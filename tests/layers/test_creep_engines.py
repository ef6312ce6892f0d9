"""The two "Quantum Creep" layers on circuit engines: values and gradients (input, weights,
bias) equal the dense fast path and ``forward_reference`` (float64, 1e-10), the FlippedQuanv
circuit count is independent of the number of images, refusals, deep copy and state_dict."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from qnn.engines import Engine, get_engine
from qnn.layers import DataReUploadingLinear, FlippedQuanv3x3

pytest.importorskip("pennylane", reason="PennyLane not installed (pip install pennylane)")
pytest.importorskip("qiskit", reason="Qiskit not installed (pip install qiskit)")

ENGINES = ["torch", "pennylane", "qiskit"]
F64 = torch.float64


def _grads(layer, x, seed=0):
    x = x.clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = layer(x)
        cot = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
        params = [layer.weight] + ([layer.bias] if layer.bias is not None else [])
        g = torch.autograd.grad(y, [x, *params], cot)
    return [y.detach(), *g]


def _close(a, b, tol=1e-10):
    for i, (p, q) in enumerate(zip(a, b)):
        err = float((p - q).abs().max())
        assert err < tol, f"output {i} (0 values, 1 d/dx, 2 d/dweight, 3 d/dbias): {err:.2e}"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("c_in,c_out", [(1, 2), (2, 2)])
def test_flipped_on_engines_equals_dense(engine, c_in, c_out):
    x = torch.randn(2, c_in, 5, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    dense = FlippedQuanv3x3(c_in, c_out, seed=3, dtype=F64)
    circ = FlippedQuanv3x3(c_in, c_out, seed=3, dtype=F64, engine=engine)
    ref = _grads(dense, x)
    _close(_grads(circ, x), ref)
    ref_lit = dense.forward_reference(x)
    assert float((circ(x).detach() - ref_lit.detach()).abs().max()) < 1e-10


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("n", [2, 3])
def test_reupload_on_engines_equals_dense(engine, n):
    x = torch.randn(2, 4**n - 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    dense = DataReUploadingLinear(4**n - 3, 3, n_qubits=n, n_reps=2, seed=4, dtype=F64)
    circ = DataReUploadingLinear(4**n - 3, 3, n_qubits=n, n_reps=2, seed=4, dtype=F64, engine=engine)
    _close(_grads(circ, x), _grads(dense, x))
    assert float((circ(x) - dense.forward_reference(x)).abs().max()) < 1e-10


class _Counting(Engine):
    """Counts the circuit evaluations (rows) that reach the wrapped engine."""

    name = "counting"

    def __init__(self, inner):
        self.inner, self.rows, self.calls = inner, 0, 0

    def run(self, circuit, inputs, weights):
        self.rows += inputs.shape[0]
        self.calls += 1
        return self.inner.run(circuit, inputs, weights)


def test_flipped_circuit_count_independent_of_images():
    counter = _Counting(get_engine("qiskit"))
    layer = FlippedQuanv3x3(2, 3, seed=0, dtype=F64, engine=counter)
    for b in (1, 7):
        counter.rows = counter.calls = 0
        layer(torch.randn(b, 2, 6, 6, dtype=F64))
        assert (counter.calls, counter.rows) == (1, 6)  # one call, C_out * C_in circuits
    # the backward's shifted circuits: 2 * 15 per pair, counted at the qiskit evaluator
    rows = []
    inner = counter.inner
    orig = inner._exact_evaluator

    def spy(circuit):
        ev = orig(circuit)

        def wrapped(thetas, *rest):
            rows.append(thetas.shape[0])
            return ev(thetas, *rest)
        return wrapped

    inner._exact_evaluator = spy
    layer(torch.randn(5, 2, 6, 6, dtype=F64)).sum().backward()
    assert rows == [6, 6 * 30]


def test_reupload_circuit_structure():
    layer = DataReUploadingLinear(10, 3, n_qubits=2, n_reps=2, seed=0, engine="torch")
    c = layer.circuit
    assert (c.n_inputs, c.n_weights, c.n_outputs) == (15, 30, 4)
    assert [g.name for g in c.gates] == ["H", "H"] + ["PauliExp"] * 4


@pytest.mark.parametrize("cls,args", [(FlippedQuanv3x3, (1, 2)), (DataReUploadingLinear, (10, 3))])
def test_paper_mode_refused_on_engines(cls, args):
    with pytest.raises(ValueError, match=r"mode='paper' cannot run on a circuit engine \(got engine='qiskit'\): .*"
                                         r"non-unitary.*use mode='physical'"):
        cls(*args, mode="paper", engine="qiskit")
    with pytest.raises(ValueError, match=r"engine_options need an engine; got engine=None"):
        cls(*args, engine_options={"shots": 10})
    cls(*args, mode="paper")  # the dense path takes it


@pytest.mark.parametrize("cls,args,x", [
    (FlippedQuanv3x3, (1, 2), torch.randn(2, 1, 5, 5, dtype=F64)),
    (DataReUploadingLinear, (10, 3), torch.randn(2, 10, dtype=F64)),
])
def test_deepcopy_and_state_dict_on_engine(cls, args, x):
    layer = cls(*args, seed=0, dtype=F64, engine="qiskit")
    y = layer(x)
    dup = copy.deepcopy(layer)
    assert torch.equal(dup(x), y) and dup.engine is layer.engine
    other = cls(*args, seed=1, dtype=F64, engine="pennylane")
    other.load_state_dict(layer.state_dict())
    assert float((other(x) - y).abs().max()) < 1e-10
    assert "engine=qiskit" in repr(layer)


def test_ibm_local_forward_fast():
    """Fast run: FlippedQuanv forward on the IBM runtime in local mode (noiseless AerSimulator)."""
    from qiskit_aer import AerSimulator

    x = torch.randn(2, 1, 5, 5, generator=torch.Generator().manual_seed(0), dtype=F64) * 0.3
    ref = FlippedQuanv3x3(1, 2, seed=0, dtype=F64)(x)
    ibm = FlippedQuanv3x3(1, 2, seed=0, dtype=F64, engine=get_engine("ibm", backend=AerSimulator(), shots=20000, seed=1))
    assert float((ibm(x) - ref).abs().max()) < 0.1


@pytest.mark.slow
def test_ibm_local_runs_both_layers():
    """IBM runtime in local mode: a noiseless AerSimulator (shot noise only, 0.1 at 20000 shots)
    and the FakeManilaV2 noise model (runs; 0.5, the noise biases the values)."""
    from qiskit_aer import AerSimulator

    x = torch.randn(2, 1, 5, 5, generator=torch.Generator().manual_seed(0), dtype=F64) * 0.3
    dense = FlippedQuanv3x3(1, 2, seed=0, dtype=F64)
    ibm = FlippedQuanv3x3(1, 2, seed=0, dtype=F64, engine=get_engine("ibm", backend=AerSimulator(), shots=20000, seed=1))
    got, ref = _grads(ibm, x), _grads(dense, x)
    assert float((got[0] - ref[0]).abs().max()) < 0.1 and float((got[2] - ref[2]).abs().max()) < 0.5
    fake = FlippedQuanv3x3(1, 2, seed=0, dtype=F64, engine="ibm", engine_options={"backend": "fake_manila", "shots": 2000, "seed": 2})
    assert float((fake(x) - ref[0]).abs().max()) < 0.5
    xd = torch.randn(2, 10, generator=torch.Generator().manual_seed(0), dtype=F64) * 0.5
    d_dense = DataReUploadingLinear(10, 3, n_qubits=2, n_reps=2, seed=0, dtype=F64)
    d_ibm = DataReUploadingLinear(10, 3, n_qubits=2, n_reps=2, seed=0, dtype=F64,
                                  engine=get_engine("ibm", backend=AerSimulator(), shots=20000, seed=3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert float((d_ibm(xd) - d_dense(xd)).abs().max()) < 0.05
