import json
import re
from pathlib import Path

import pytest
import torch

from qnn.demo import HybridClassifier, load_embedded, main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_learns_digits(tmp_path, capsys):
    out = tmp_path / "summary.json"
    summary = main(["--epochs", "4", "--no-progress", "--out", str(out), "--n-qubits", "6"])
    text = capsys.readouterr().out
    assert len(re.findall(r"^epoch +\d+ .* test acc", text, flags=re.M)) == 4
    hist = summary["history"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    # 10 classes: chance is 0.1; a working hybrid is far above it after 4 epochs.
    assert hist[-1]["test_acc"] > 0.5
    assert json.loads(out.read_text())["history"] == hist


def test_unknown_dataset():
    with pytest.raises(ValueError, match=r"Unknown dataset 'cifar'; valid datasets are \['digits', 'mnist-sample'\]"):
        load_embedded("cifar")


def test_mnist_sample_ships_with_install():
    X, y, k = load_embedded("mnist-sample")
    assert X.shape == (5000, 784) and y.shape == (5000,) and k == 10
    assert 0.0 <= X.min() and X.max() <= 1.0


def test_hybrid_output_on_input_device_and_shape():
    m = HybridClassifier(64, 10, n_qubits=4, n_layers=1, seed=0)
    assert m(torch.rand(3, 64)).shape == (3, 10)


def test_readme_quick_start_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})


def test_demo_checkpoint_resume_trains_no_more_when_finished(tmp_path, capsys):
    args = ["--epochs", "2", "--no-progress", "--n-qubits", "4", "--n-layers", "1", "--limit", "300",
            "--checkpoint", str(tmp_path / "ck")]
    first = main(args)
    assert len(re.findall(r"^epoch +\d+ ", capsys.readouterr().out, flags=re.M)) == 2
    assert (tmp_path / "ck").is_file() and first["record"]["command"]
    again = main(args)  # finished: loads the checkpoint, trains nothing, same history
    assert re.findall(r"^epoch +\d+ ", capsys.readouterr().out, flags=re.M) == []
    assert again["history"] == first["history"]


def test_readme_main_job_needs_no_data_directory(tmp_path):
    """The README's first command ends in `qnn demo digits`, which runs with QNN_DATA_DIR pointing
    at an empty folder and no cache: it uses only data that ships with the install."""
    import os
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    assert "bash .ci/setup && .venv/bin/qnn demo digits" in readme
    env = dict(os.environ, QNN_DATA_DIR=str(tmp_path / "empty"), HOME=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-m", "qnn.cli", "demo", "digits", "--epochs", "2", "--no-progress",
                          "--n-qubits", "4"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(re.findall(r"^epoch +\d+ .* test acc", res.stdout, flags=re.M)) == 2
