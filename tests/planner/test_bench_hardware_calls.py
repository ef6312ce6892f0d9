"""The packing comparison of bench/bench_hardware_calls.py runs and keeps its shape: qnn's step is one
job while Qiskit ML's TorchConnector needs two primitive calls per circuit."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_hardware_calls.py"


def test_qnn_step_is_one_job_and_qiskit_ml_needs_two_calls_per_circuit(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_hardware_calls", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.main(["--configs", "2x2x1", "--out", str(tmp_path / "calls.json")])
    by = {r["system"]: r for r in rows}
    ours = by["qnn planner (ibm engine)"]
    theirs = by["Qiskit ML EstimatorQNN + TorchConnector"]
    assert ours["primitive_calls"] == 1 and ours["estimate_jobs"] == 1
    assert ours["circuits"] == ours["estimate_circuits"]
    assert theirs["primitive_calls"] == 2 * 2
    import json

    saved = json.loads((tmp_path / "calls.json").read_text())
    assert saved["rows"] == rows and "git_commit" in saved["run"] and "torch" in saved["run"]["packages"]
