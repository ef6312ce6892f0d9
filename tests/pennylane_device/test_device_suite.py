"""PennyLane's own device test suite (``pennylane/devices/tests``) against ``qnn.torch``, exact
and with shots, as a subprocess: any failure fails this test.

Counts on the dev machine (PennyLane 0.45.1; the same suite on ``default.qubit`` beside it):
exact 398 passed / 53 skipped / 9 xfailed (default.qubit 396 / 55 / 9); shots=10000
383 / 68 / 9 (default.qubit 383 / 68 / 9)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

qml = pytest.importorskip("pennylane", reason="PennyLane not installed (pip install pennylane)")
pytest.importorskip("flaky", reason="flaky not installed (the test extra installs it)")
pytest.importorskip("pytest_mock", reason="pytest-mock not installed (the test extra installs it)")

ROOT = Path(__file__).resolve().parents[2]
SUITE = Path(qml.__file__).parent / "devices" / "tests"


def _entry_point(tmp_path: Path) -> Path:
    """A dist-info that registers ``qnn.torch`` (so the suite's ``qml.device`` finds this
    checkout's device whether or not the installed qnn has the entry point)."""
    d = tmp_path / "ep" / "qnn_dev_suite-0.0.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text("Metadata-Version: 2.1\nName: qnn-dev-suite\nVersion: 0.0\n")
    (d / "entry_points.txt").write_text("[pennylane.plugins]\nqnn.torch = qnn.pennylane_device:QnnTorchDevice\n")
    return d.parent


def _counts(text: str) -> dict:
    tail = [ln for ln in text.splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
    assert tail, f"no pytest summary in the suite's output:\n{text[-3000:]}"
    return {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?)", tail[-1])}


@pytest.mark.parametrize("shots", [None, 10000], ids=["exact", "shots"])
def test_pennylane_device_suite_passes(tmp_path, shots):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(_entry_point(tmp_path)), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "pytest", str(SUITE), "--device=qnn.torch", "-q", "-p", "no:cacheprovider",
           "-p", "no:warnings", "-rf", "--rootdir", str(SUITE)]
    if shots:
        cmd.append(f"--shots={shots}")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    counts = _counts(out)
    print(f"qnn.torch suite ({'exact' if shots is None else f'shots={shots}'}): {counts}")
    failed = [ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    assert counts.get("failed", 0) == 0 and counts.get("error", 0) == 0 and counts.get("errors", 0) == 0, \
        "\n".join(failed[:40])
    assert proc.returncode == 0, out[-3000:]
    assert counts.get("passed", 0) >= 350, counts  # the suite really ran (not all skipped)
