"""bench/bench_layer.py, the side-by-side layer benchmark of bench/README.md, runs end to end in
its smallest form: qnn and tensorcircuit-ng's JAX at 4 qubits, each checked against the
complex128 oracle before it is timed, and the JSON carries what made it (git commit, packages,
command)."""

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_layer.py"


def test_layer_bench_checks_every_system_against_the_oracle_and_records_the_run(tmp_path):
    out = tmp_path / "layer.json"
    cmd = [sys.executable, str(BENCH), "--n", "4", "--systems", "qnn_auto", "tc_jax_probs", "--threads", "1",
           "--repeats", "3", "--max-seconds", "2", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    d = json.loads(out.read_text())
    by = {r["system"]: r for r in d["results"]}
    assert set(by) == {"qnn_auto", "tc_jax_probs"}
    for r in by.values():
        assert r["agrees"] and r["err_out"] < 1e-4 and r["median_s"] > 0, r
    assert by["qnn_auto"]["path"] == "small"
    assert "speed-up over the fastest peer" in d["table"]
    run = d["run"]
    assert run["command"].startswith("python ") and "--max-seconds 2" in run["command"]
    assert "torch" in run["packages"] and "git_commit" in run and "git_dirty" in run
