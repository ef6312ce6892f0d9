"""RuntimeTransport's execution modes: job mode sends on the backend, batch and session modes open one
``Batch`` / ``Session`` on first use, send every job in it, carry the plan tag, and close it.  Run on
qiskit-ibm-runtime's local mode (a fake backend), with a stub service that hands back the jobs."""

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import Batch, Session
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qnn.planner import RuntimeTransport
from qnn.planner import _transport


class _Service:
    def __init__(self):
        self.jobs = {}

    def job(self, job_id):
        return self.jobs[job_id]


@pytest.mark.parametrize("mode,cls", [("job", None), ("batch", Batch), ("session", Session)])
def test_modes_send_in_one_mode_object_and_close_it(mode, cls, monkeypatch):
    backend = FakeManilaV2()
    svc = _Service()
    seen = []
    real = _transport._primitive

    def recording(kind, mode_obj, options):
        prim = real(kind, mode_obj, options)
        seen.append((mode_obj, options["environment"]["job_tags"]))
        run = prim.run

        def run_and_register(pubs):
            job = run(pubs)
            svc.jobs[job.job_id()] = job
            return job

        prim.run = run_and_register
        return prim

    monkeypatch.setattr(_transport, "_primitive", recording)
    qc = QuantumCircuit(1)
    qc.x(0)
    isa = generate_preset_pass_manager(optimization_level=1, backend=backend, seed_transpiler=0).run(qc)
    obs = SparsePauliOp("Z").apply_layout(isa.layout)
    tr = RuntimeTransport(svc, backend, mode=mode)
    ids = [tr.submit("estimator", [(isa, obs)], {"default_shots": 500}, f"qnn:run:{k}") for k in range(2)]
    values = [float(np.asarray(tr.result(i)[0].data.evs)) for i in ids]
    assert all(v < -0.8 for v in values)  # <Z> after X, on the device's noise model
    modes = [m for m, _ in seen]
    if cls is None:
        assert all(m is backend for m in modes)
    else:
        assert all(isinstance(m, cls) for m in modes) and modes[0] is modes[1]  # one Batch/Session for both jobs
    assert [tags[-1] for _, tags in seen] == ["qnn:run:0", "qnn:run:1"]
    tr.close()
    assert tr._mode_obj is None
