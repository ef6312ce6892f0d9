"""IBMEngine on fake backends in local mode (no machine here reaches IBM), plus injected faults.

Stated noise tolerance: on FakeManilaV2 (its calibrated noise model) a shallow 2-3 qubit
circuit is within 0.15 of the exact value for every output (<Z>, Pauli words, probabilities).
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
import torch

import qnn
from qnn.engines import get_engine

pytest.importorskip("qiskit_ibm_runtime", reason="pip install qiskit-ibm-runtime")
from qiskit_ibm_runtime.fake_provider import FakeManilaV2  # noqa: E402

from qnn.engines.ibm_engine import IBMAccountError, IBMEngine  # noqa: E402
from qnn.engines.qiskit_engine import QiskitEngine  # noqa: E402

NOISE_TOL = 0.15
FAKE_TOKEN = "FAKE-TOKEN-d41d8cd98f00b204e9800998ecf8427e"


@pytest.fixture(scope="module")
def backend():
    return FakeManilaV2()


def _asymmetric_circuit():
    """X on wire 0 only, an input rotation on wire 1, wire 2 idle: a wrong qubit mapping fails."""
    c = qnn.Circuit(3)
    c.add("X", 0)
    (i,) = c.new_inputs(1)
    (k,) = c.new_weights("w", (1,))
    c.add("RY", 1, [qnn.Param.input(i)])
    c.add("RX", 2, [qnn.Param.weight(k)])
    c.measure_z()
    c.measure_pauli("ZX", [0, 1])
    c.measure_probs([0, 1])
    c.measure_probs([2, 0])
    return c


def test_fake_backend_close_to_exact_with_nontrivial_layout(backend):
    c = _asymmetric_circuit()
    x = torch.tensor([[0.4], [2.2]], dtype=torch.float64)
    w = torch.tensor([0.3], dtype=torch.float64)
    eng = IBMEngine(backend, shots=4000, seed=11, initial_layout=[3, 4, 2])
    y = eng.run(c, x, w)
    exact = QiskitEngine().run(c, x, w)
    est_isa, _, samp_isa, _ = eng._cached_isa(c)
    for isa in (est_isa, samp_isa):
        layout = isa.layout.final_index_layout()
        assert layout[:3] != [0, 1, 2], layout  # the mapping really is non-trivial
    assert (y - exact).abs().max() < NOISE_TOL, (y - exact).abs().max()
    # per-user-qubit check: wire 0 is |1>, wire 2 is near |0> -> asymmetric readings
    assert (y[:, 0] < -0.7).all() and (y[:, 2] > 0.7).all()


def test_automatic_layout_and_routing_mapping(backend):
    """No forced layout: a CNOT triangle cannot sit on Manila's line, so the pass manager picks
    a non-trivial layout and routes with SWAPs (final layout differs again).  Results must still
    be per user qubit.  Routing makes the circuit deeper: stated tolerance 0.35 here, and the
    per-wire signs / most likely outcome must be exact."""
    c = qnn.Circuit(3)
    c.add("X", 0)
    c.add("CNOT", (0, 2))
    c.add("CNOT", (2, 1))
    c.add("X", 2)
    c.add("CNOT", (1, 0))
    c.add("CNOT", (0, 2))  # final state |010>
    c.measure_z()
    c.measure_probs()
    eng = IBMEngine(backend, shots=2000, seed=3)
    y = eng.run(c, torch.zeros(1, 0), torch.zeros(0))
    est_isa, _, samp_isa, _ = eng._cached_isa(c)
    assert est_isa.layout.initial_index_layout()[:3] != [0, 1, 2]
    assert samp_isa.layout.final_index_layout()[:3] != [0, 1, 2]
    exact = QiskitEngine().run(c, torch.zeros(1, 0), torch.zeros(0))
    assert exact[0, :3].tolist() == [1.0, -1.0, 1.0] and int(exact[0, 3:].argmax()) == 2
    assert (y - exact).abs().max() < 0.35
    assert y[0, 0] > 0.5 and y[0, 1] < -0.5 and y[0, 2] > 0.5 and int(y[0, 3:].argmax()) == 2


def test_amplitude_embedding_on_fake_backend(backend):
    c = qnn.Circuit(2)
    qnn.amplitude_embedding(c, 3, pad=0.2)
    c.measure_z()
    c.measure_probs([1])
    x = torch.tensor([[1.0, 0.1, 0.0], [0.0, 0.2, 1.0]], dtype=torch.float64)
    y = IBMEngine(backend, shots=4000, seed=2).run(c, x, torch.zeros(0, dtype=torch.float64))
    exact = QiskitEngine().run(c, x, torch.zeros(0, dtype=torch.float64))
    assert (y - exact).abs().max() < NOISE_TOL


def test_fake_backend_by_name_and_repr_and_registry():
    eng = get_engine("ibm", backend="fake_manila", shots=100)
    assert isinstance(eng, IBMEngine)
    assert repr(eng) == "IBMEngine(backend='fake_manila', shots=100, optimization_level=1)"
    with pytest.raises(ValueError, match=r"unknown fake backend 'fake_nowhere'; valid names are \[.*'fake_manila'"):
        IBMEngine("fake_nowhere")


def test_one_primitive_call_per_pass_and_gradients(backend, monkeypatch):
    """Whole batch and every shifted point = one EstimatorV2 call + one SamplerV2 call in the
    forward pass; the backward pass sends nothing.  The gradient is close to the exact one."""
    from qiskit_ibm_runtime import EstimatorV2, SamplerV2

    calls = []
    for cls in (EstimatorV2, SamplerV2):
        orig = cls.run

        def counting(self, pubs, *a, _orig=orig, _name=cls.__name__, **k):
            pubs = list(pubs)
            calls.append((_name, len(pubs)))
            return _orig(self, pubs, *a, **k)

        monkeypatch.setattr(cls, "run", counting)
    c = _asymmetric_circuit()
    x = torch.tensor([[0.4], [1.3], [2.2]], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    eng = IBMEngine(backend, shots=4000, seed=5, initial_layout=[3, 4, 2])
    y = eng.run(c, x, w)
    assert calls == [("EstimatorV2", 1), ("SamplerV2", 1)]
    cot = torch.zeros_like(y)
    cot[:, 1] = 1.0  # d<Z_1>/dx = -sin(x)
    cot[:, 3] = 1.0
    y.backward(cot)
    assert calls == [("EstimatorV2", 1), ("SamplerV2", 1)]
    xe, we = x.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
    QiskitEngine().run(c, xe, we).backward(cot)
    assert (x.grad - xe.grad).abs().max() < 2 * NOISE_TOL
    assert (w.grad - we.grad).abs().max() < 2 * NOISE_TOL


class _Service:
    """Stand-in for QiskitRuntimeService (no network here)."""

    def __init__(self):
        self.asked = []

    def backend(self, name):
        self.asked.append(name)
        if name != "ibm_test":
            raise KeyError(f"no backend {name}")
        return FakeManilaV2()

    def least_busy(self, operational=True, simulator=False):
        self.asked.append(("least_busy", operational, simulator))
        return FakeManilaV2()


def test_backend_resolution_through_a_service():
    svc = _Service()
    assert IBMEngine("ibm_test", service=svc).backend.name == "fake_manila"
    assert IBMEngine(service=svc).backend.name == "fake_manila"
    assert svc.asked == ["ibm_test", ("least_busy", True, False)]
    with pytest.raises(ValueError, match=r"backend must be one the service offers; got 'ibm_nope' \(KeyError"):
        IBMEngine("ibm_nope", service=svc)


class _Boom:
    def __init__(self, *a, **k):
        self.options = type("O", (), {"default_shots": None, "simulator": type("S", (), {})()})()

    def run(self, pubs):
        raise ConnectionError("socket closed")


class _Malformed(_Boom):
    def run(self, pubs):
        class Job:
            def result(self_inner):
                class R:
                    data = type("D", (), {"evs": np.zeros(7)})()

                return [R() for _ in pubs]

        return Job()


class _WrongCount(_Boom):
    def run(self, pubs):
        class Job:
            def result(self_inner):
                return []

        return Job()


@pytest.mark.parametrize("fault,match", [
    (_Boom, r"socket closed"),
    (_Malformed, r"estimator result of job 0 must have shape \(1, 2\) \(observables x rows\); got \(7,\)"),
    (_WrongCount, r"a estimator job must return one result per PUB \(1\); got 0"),
])
def test_injected_estimator_faults(backend, monkeypatch, fault, match):
    import qiskit_ibm_runtime

    c = qnn.Circuit(1)
    qnn.angle_embedding(c)
    c.measure_z()
    eng = IBMEngine(backend, shots=100)
    eng.planner._sleep = lambda s: None  # retries without waiting
    monkeypatch.setattr(qiskit_ibm_runtime, "EstimatorV2", fault)
    with pytest.raises((RuntimeError, ConnectionError), match=match):
        eng.run(c, torch.zeros(2, 1), torch.zeros(0))


def test_injected_sampler_malformed(backend, monkeypatch):
    c = qnn.Circuit(1)
    qnn.angle_embedding(c)
    c.measure_probs()
    import qiskit_ibm_runtime

    eng = IBMEngine(backend, shots=100)
    monkeypatch.setattr(qiskit_ibm_runtime, "SamplerV2", _Malformed)
    with pytest.raises(RuntimeError, match="sampler result 0 must hold a BitArray 'meas'"):
        eng.run(c, torch.zeros(2, 1), torch.zeros(0))


@pytest.fixture
def no_account(monkeypatch, tmp_path):
    """A home without ~/.qiskit and no QISKIT_IBM_* variables."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for k in list(os.environ):
        if k.startswith("QISKIT_IBM"):
            monkeypatch.delenv(k)
    from qiskit_ibm_runtime.accounts import management

    monkeypatch.setattr(management, "_DEFAULT_ACCOUNT_CONFIG_JSON_FILE", str(tmp_path / "qiskit-ibm.json"))


def test_no_account_configured(no_account, caplog):
    with pytest.raises(IBMAccountError, match=r"could not open the IBM Quantum service \(AccountNotFoundError.*save_account.*QISKIT_IBM_TOKEN"):
        IBMEngine("ibm_brisbane")
    with pytest.raises(IBMAccountError, match="fake backend"):
        get_engine("ibm")


def test_token_never_in_messages_or_repr(no_account, monkeypatch, caplog, capsys):
    """A service that rejects the token (the failure echoes it): the token never reaches our
    message, the exception chain, the logs or stdout/stderr."""
    import qiskit_ibm_runtime

    class Rejecting:
        def __init__(self, **kw):
            raise ValueError(f"invalid token {kw.get('token')}")

    monkeypatch.setattr(qiskit_ibm_runtime, "QiskitRuntimeService", Rejecting)
    with pytest.raises(IBMAccountError) as info:
        IBMEngine("ibm_brisbane", token=FAKE_TOKEN)
    assert FAKE_TOKEN not in str(info.value) and "***" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    # a backend object given with a token: repr and attributes never hold it
    eng = IBMEngine(FakeManilaV2(), token=FAKE_TOKEN)
    assert FAKE_TOKEN not in repr(eng) and FAKE_TOKEN not in str(vars(eng))
    out = capsys.readouterr()
    assert FAKE_TOKEN not in out.out + out.err + caplog.text


class TestBadInput:
    def test_shots(self, backend):
        with pytest.raises(ValueError, match="shots must be a positive int; got 0"):
            IBMEngine(backend, shots=0)

    def test_optimization_level(self, backend):
        with pytest.raises(ValueError, match="optimization_level must be 0, 1, 2 or 3; got 5"):
            IBMEngine(backend, optimization_level=5)

    def test_backend_type(self):
        with pytest.raises(TypeError, match="backend must be a BackendV2 object, a backend name or None; got int"):
            IBMEngine(3)

    def test_too_many_qubits(self, backend):
        c = qnn.Circuit(6)
        c.measure_z()
        with pytest.raises(ValueError, match=r"the circuit must fit backend 'fake_manila' \(5 qubits\); got a circuit on 6 qubits"):
            IBMEngine(backend).run(c, torch.zeros(1, 0), torch.zeros(0))

    def test_missing_sdk(self, monkeypatch):
        real = importlib.import_module

        def fake(name, *a, **k):
            if name.startswith("qiskit_ibm_runtime"):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return real(name, *a, **k)

        monkeypatch.setattr(importlib, "import_module", fake)
        with pytest.raises(ImportError, match=r"IBMEngine needs .*pip install qiskit-ibm-runtime .*qnn\[ibm\]"):
            IBMEngine()
