"""The planner on fake backends and a fake runtime that fails on purpose (offline)."""

import os

import numpy as np
import pytest
import torch
from torch import nn

import qnn
from qnn.engines.ibm_engine import IBMEngine
from qnn.planner import (
    Budget,
    BudgetExceededError,
    CircuitTooWideError,
    JobStore,
    PlanMismatchError,
    Planner,
    UnknownBackendError,
    estimate,
)
from qnn.testing import FakeRuntimeService, SimulatedKill

SHOTS = 32


def _circuit(n=2, layers=1):
    c = qnn.Circuit(n)
    qnn.angle_embedding(c)
    qnn.strongly_entangling_layers(c, layers)
    c.measure_z()
    return c


class Parallel(nn.Module):
    """``k`` independent circuits on the same input (KACQ-like)."""

    def __init__(self, k=3, n=2, layers=1, backend="fake_manila"):
        super().__init__()
        eng = IBMEngine(backend, shots=SHOTS, seed=1)
        self.layers = nn.ModuleList(qnn.QuantumLayer(_circuit(n, layers), engine=eng, seed=i) for i in range(k))

    def forward(self, x):
        return torch.cat([layer(x) for layer in self.layers], dim=1).sum(dim=1)


def _planner(svc, **kw):
    kw.setdefault("shots", SHOTS)
    kw.setdefault("seed", 1)
    return Planner("fake_manila", service=svc, backoff=0.0, sleep=lambda s: None, **kw)


@pytest.mark.parametrize("k,B,layers", [(1, 2, 1), (3, 2, 1), (3, 3, 2)])
def test_one_step_is_one_job_whatever_the_batch_parameters_or_circuits(k, B, layers):
    svc = FakeRuntimeService()
    planner = _planner(svc)
    model = Parallel(k, layers=layers)
    x = torch.rand(B, 2, generator=torch.Generator().manual_seed(0))
    est = estimate(model, "step", example=x, planner=planner)
    loss = planner.step(lambda: model(x).pow(2).mean())
    loss.backward()
    assert svc.jobs == 1 and est.jobs == 1  # constant: not proportional to B, P or k
    P = model.layers[0].weight.numel()
    assert svc.circuits == k * B * (1 + 2 * P)  # forward + two shifts per weight angle (x needs no grad)
    # the estimate is exactly what the fake runtime was sent
    assert (est.circuits, est.pubs, est.jobs, est.shots) == (svc.circuits, svc.pubs, svc.jobs, svc.shots)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_limits_split_jobs_and_estimate_agrees():
    svc = FakeRuntimeService()
    planner = _planner(svc, max_circuits_per_job=40)
    model = Parallel(3)
    x = torch.rand(4, 2, generator=torch.Generator().manual_seed(1))
    est = estimate(model, "step", example=x, planner=planner)
    planner.step(lambda: model(x).sum()).backward()
    assert svc.jobs > 1 and all(e["circuits"] <= 40 for e in planner.log)
    assert (est.circuits, est.pubs, est.jobs, est.shots) == (svc.circuits, svc.pubs, svc.jobs, svc.shots)


def test_packed_gradient_matches_unpacked():
    x = torch.rand(3, 2, generator=torch.Generator().manual_seed(2))
    grads = []
    for packed in (True, False):
        model = Parallel(2)
        planner = _planner(FakeRuntimeService())
        if packed:
            loss = planner.step(lambda: model(x).sum())
        else:
            qnn.planner.attach(model, planner)
            loss = model(x).sum()
        loss.backward()
        grads.append(torch.cat([p.grad for p in model.parameters()]))
    assert torch.isfinite(grads[0]).all() and (grads[0] - grads[1]).abs().max() < 1.5  # both shot-noisy estimates


def test_budget_refuses_before_sending_and_can_be_raised():
    svc = FakeRuntimeService()
    budget = Budget(qpu_seconds=0.5)
    planner = _planner(svc, budget=budget)
    model = Parallel(1)
    x = torch.rand(2, 2)
    with pytest.raises(BudgetExceededError, match=r"would exceed the budget of 0.5 QPU s \(0.0 spent\)"):
        planner.step(lambda: model(x).sum())
    assert svc.jobs == 0
    budget.raise_to(qpu_seconds=100)
    planner.step(lambda: model(x).sum())
    assert svc.jobs == 1 and 0 < budget.spent_qpu_seconds < 100 and budget.spent_jobs == 1
    with pytest.raises(ValueError, match="qpu_seconds must be >= 100"):
        budget.raise_to(qpu_seconds=1)


def test_amplitude_circuits_transpiled_once_per_state():
    c = qnn.Circuit(2)
    qnn.amplitude_embedding(c)
    c.measure_z()
    eng = IBMEngine("fake_manila", shots=SHOTS, seed=0)
    x = torch.rand(3, 4, generator=torch.Generator().manual_seed(3)) + 0.1
    eng.run(c, x, torch.zeros(0))
    n = eng.planner.transpile_count
    eng.run(c, x, torch.zeros(0))
    assert n == 3 and eng.planner.transpile_count == n


def test_two_backend_sizes_and_clear_errors():
    svc = FakeRuntimeService()
    big = Planner("fake_guadalupe", service=svc)
    assert big.n_qubits == 16 and _planner(svc).n_qubits == 5
    eng = IBMEngine("fake_manila", shots=SHOTS)
    with pytest.raises(CircuitTooWideError, match=r"must fit backend 'fake_manila' \(5 qubits\); got a circuit on 6"):
        eng.run(_circuit(6), torch.zeros(1, 6), torch.zeros(18))
    with pytest.raises(UnknownBackendError, match=r"backend must be one of \['fake_manila', 'fake_guadalupe'\]"):
        Planner("ibm_nowhere", service=svc)
    with pytest.raises(UnknownBackendError, match="unknown fake backend 'fake_nowhere'"):
        Planner("fake_nowhere")
    with pytest.raises(ValueError, match="mode must be one of"):
        Planner("fake_manila", mode="burst")


def test_wide_backend_runs_on_the_right_qubits():
    """On a 16-qubit backend the layout is not trivial: <Z> of X-flipped wire 1 is -1."""
    c = qnn.Circuit(3)
    c.add("X", 1)
    c.add("CNOT", [0, 2])
    c.measure_z()
    eng = IBMEngine("fake_guadalupe", shots=400, seed=4, initial_layout=[5, 8, 11])
    y = eng.run(c, torch.zeros(1, 0), torch.zeros(0))[0]
    layout = eng.planner.isa(("qnn-ibm", qnn.engines._convert.circuit_key(c), None, None), lambda: [])[0].layout
    assert layout.initial_index_layout()[:3] != [0, 1, 2]
    assert y[1] < -0.8 and y[0] > 0.8 and y[2] > 0.8


def _train(svc, store, steps=6, run="r", data_seed=0):
    planner = _planner(svc, store=store, run=run)
    model = Parallel(2)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    X = torch.rand(steps, 2, 2, generator=torch.Generator().manual_seed(data_seed))
    for s in range(steps):
        opt.zero_grad()
        planner.step(lambda: model(X[s]).pow(2).mean()).backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _faulty_runs(tmp_path, trials):
    """Timeouts, failed jobs, dropped connections and kills at random points: restarted runs
    submit no job twice and end with the same weights as an uninterrupted run."""
    reference = _train(FakeRuntimeService(noise=False), None)
    total_faults, kills = 0, 0
    for trial in range(trials):
        svc = FakeRuntimeService(fault_rate=0.45, seed=trial, noise=False)
        store = tmp_path / f"jobs{trial}.sqlite"
        while True:
            try:
                w = _train(svc, store)
                break
            except SimulatedKill:
                kills += 1
            assert kills < 500
        total_faults += svc.n_faults
        assert svc.duplicates() == 0
        assert torch.equal(w, reference)  # same results: nothing lost, nothing resampled
        rows = JobStore(store).rows("r")
        assert len(rows) == 6 and all(r["status"] == "done" for r in rows)
    return total_faults, kills


def test_resume_after_faults_fast(tmp_path):
    faults, kills = _faulty_runs(tmp_path, 1)
    assert faults >= 5


@pytest.mark.slow
def test_resume_after_over_100_faults(tmp_path):
    faults, kills = _faulty_runs(tmp_path, 8)
    assert faults >= 100 and kills > 0, (faults, kills)


def test_resumed_run_with_other_data_is_refused(tmp_path):
    svc = FakeRuntimeService()
    _train(svc, tmp_path / "j.sqlite", steps=2)
    with pytest.raises(PlanMismatchError, match="must send what the store recorded"):
        _train(svc, tmp_path / "j.sqlite", steps=2, data_seed=1)


def test_no_secret_on_disk_after_a_run(tmp_path, monkeypatch, capsys):
    secret = "sk-TEST-never-write-me-0123456789"
    monkeypatch.setenv("QISKIT_IBM_TOKEN", secret)
    svc = FakeRuntimeService(require_token=True)
    _train(svc, tmp_path / "jobs.sqlite", steps=2)
    qnn.save(qnn.QuantumLayer(_circuit(), engine=IBMEngine("fake_manila", shots=SHOTS), seed=0),
             tmp_path / "model.qnn")
    for root, _, files in os.walk(tmp_path):
        for f in files:
            assert secret.encode() not in open(os.path.join(root, f), "rb").read(), f
    out = capsys.readouterr()
    assert secret not in out.out + out.err
    monkeypatch.delenv("QISKIT_IBM_TOKEN")
    with pytest.raises(qnn.planner.AuthenticationError, match="token must be set in QISKIT_IBM_TOKEN"):
        FakeRuntimeService(require_token=True)


def test_estimates_of_workloads():
    planner = _planner(FakeRuntimeService())
    model = Parallel(2)
    x = torch.rand(4, 2)
    fwd = estimate(model, "forward", example=x, planner=planner)
    step = estimate(model, "step", example=x, planner=planner)
    train = estimate(model, "train", example=x, planner=planner, n_samples=10, epochs=3)
    expl = estimate(model, "explain", example=x, planner=planner, n_evaluations=1000)
    cal = estimate(model, "calibrate", example=x, planner=planner, n_samples=50)
    assert fwd.circuits == 2 * 4 and step.circuits > fwd.circuits
    assert train.jobs == 3 * 3 and train.circuits == 3 * (2 * step.circuits // 4 * 4 + step.circuits // 2)
    assert expl.circuits == 2 * 1000 and not expl.exact and cal.circuits == 2 * 50
    assert expl.qpu_seconds > cal.qpu_seconds > 0
    with pytest.raises(ValueError, match="workload must be one of"):
        estimate(model, "dance", example=x, planner=planner)
    # a model on the torch engine, estimated as if on a fake backend
    torch_model = qnn.QuantumLayer(_circuit(), seed=0)
    assert estimate(torch_model, "forward", example=x).jobs == 0
    assert estimate(torch_model, "forward", example=x, backend="fake_manila", shots=SHOTS).circuits == 4
