"""The qnn command: --help of every subcommand, one bad-argument case each (one line, no
traceback, non-zero exit), and a few real runs.  Run as a real process: python -m qnn.cli."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from qnn.cli import cli, main
from qnn.cli._hardware import estimate_cost, workload_circuit

ROOT = Path(__file__).resolve().parents[2]

SUBCOMMANDS = [[], ["train"], ["train", "creep"], ["train", "heart"], ["swap"], ["hardware"],
               ["hardware", "estimate"], ["hardware", "submit"], ["bench"], ["demo"], ["demo", "heart"],
               ["demo", "digits"]]


def qnn(*args, env=None, timeout=300):
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **(env or {}))
    return subprocess.run([sys.executable, "-m", "qnn.cli", *args], cwd=ROOT, env=e, capture_output=True,
                          text=True, timeout=timeout)


def test_console_script_entry_point():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["qnn"] == "qnn.cli:main"


@pytest.mark.parametrize("args", SUBCOMMANDS, ids=lambda a: " ".join(a) or "qnn")
def test_help(args):
    res = CliRunner().invoke(cli, [*args, "--help"], prog_name="qnn")
    assert res.exit_code == 0, res.output
    assert "usage:" in res.output.lower()


BAD = [
    (["nosuch"], 2, r"qnn: error: No such command 'nosuch'"),
    (["train", "creep", "missing.toml"], 2, r"File 'missing.toml' does not exist"),
    (["train", "heart", "--set", "epochs=0"], 2, r"epochs must be positive; got 0"),
    (["swap", "resnet-9000"], 2, r"must be a built-in model \['creep-classical', 'digits-mlp', 'small-cnn'\]"),
    (["hardware", "estimate", "--qubits", "0"], 2, r"'--qubits': 0 is not in the range 1<=x<=127"),
    (["hardware", "submit", "--backend", "ibm_somewhere"], 2, r"is a real device.*add --yes to confirm"),
    (["bench", "nosuch"], 2, r"NAME: must be one of \['creep', .*'layer', .*\]; got 'nosuch'"),
    (["demo", "heart", "--port", "70000"], 2, r"'--port': 70000 is not in the range"),
    (["demo", "heart", "--model", "absent.pt", "--no-train"], 1, r"no saved heart model at absent.pt; create it with `qnn train heart --out absent.pt`"),
    (["demo", "digits", "--epochs", "x"], 2, r"invalid int value: 'x'"),
]


@pytest.mark.parametrize("args,code,pattern", BAD, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_arguments_one_line_no_traceback(args, code, pattern):
    import re

    res = qnn(*args)
    assert res.returncode == code, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    if args[:2] != ["demo", "digits"]:  # argparse's own usage + error lines there
        assert len(lines) == 1, res.stderr
    assert re.search(pattern, res.stderr), res.stderr


def test_missing_data_is_one_line(tmp_path):
    res = qnn("train", "heart", "--out", str(tmp_path / "m.pt"), env={"QNN_DATA_DIR": str(tmp_path / "nodata")})
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "heart.csv" in res.stderr and "QNN_DATA_DIR" in res.stderr


def test_estimate_counts_parameter_shift_circuits():
    c = workload_circuit(4, 2)
    assert c.n_params == 4 + 2 * 4 * 3  # RY embedding + Rot(3 angles) per wire per layer
    est = estimate_cost(c, batch=32, workload="train", steps=3, shots=1000)
    # 3 steps x 32 samples x (forward + 2 shifts per weight angle: the inputs need no gradient), split by
    # fake_manila's 300 circuits per job
    assert est.circuits == 3 * 32 * (1 + 2 * 24) and est.shots == est.circuits * 1000
    assert est.jobs == 3 * -(-32 * (1 + 2 * 24) // 300)
    assert estimate_cost(c, batch=32, workload="forward").circuits == 32
    with pytest.raises(ValueError, match="estimate_cost: batch, steps and shots must be >= 1; got 0, 1, 4096"):
        estimate_cost(c, batch=0)
    out = CliRunner().invoke(cli, ["hardware", "estimate", "--json", "--workload", "train", "--steps", "3",
                                   "--shots", "1000"])
    assert json.loads(out.output)["circuits"] == est.circuits and json.loads(out.output)["jobs"] == est.jobs


def test_swap_prints_the_report(capsys):
    assert main(["swap", "small-cnn", "--select", "Linear"]) == 0
    out = capsys.readouterr().out
    assert "QuantumLinear" in out and "QuanvConv2d" not in out and "output (1, 3)" in out


def test_submit_on_a_fake_backend(capsys):
    assert main(["hardware", "submit", "--qubits", "2", "--layers", "1", "--batch", "2", "--shots", "4000"]) == 0
    out = capsys.readouterr().out
    diff = float(out.rsplit("values: ", 1)[1])
    assert 0.0 < diff < 0.3  # shot noise and the device's noise model, but close to the exact values


def test_train_creep_from_a_config_with_overrides(tmp_path, capsys):
    args = ["train", "creep", str(ROOT / "experiments/creep/configs/ci_tiny.toml"), "--set", 'configurations=["level0"]',
            "--set", 'modes=["physical"]', "--set", "epochs=1", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    assert len(list(tmp_path.rglob("result.json"))) == 1
    assert "level0" in capsys.readouterr().out


def test_demo_digits_trains(capsys):
    assert main(["demo", "digits", "--epochs", "1", "--limit", "200", "--n-qubits", "4", "--n-layers", "1",
                 "--no-progress"]) == 0
    assert "final test accuracy" in capsys.readouterr().out


def test_demo_heart_check_uses_the_saved_model(heart_bundle):
    model, path = heart_bundle
    res = qnn("demo", "heart", "--model", str(path), "--no-train", "--check")
    assert res.returncode == 0, res.stderr
    (pred,) = model.predict(model.splits["test"].head(1), 0.9)
    assert f"probability of heart disease {pred.probability:.4f}" in res.stdout
