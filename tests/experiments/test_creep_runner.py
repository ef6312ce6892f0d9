"""The layer-swap experiment runner: config, grid, skip, exact resume after a kill, Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CREEP = ROOT / "experiments" / "creep"
sys.path.insert(0, str(CREEP))

import grid  # noqa: E402
import run  # noqa: E402

TINY = CREEP / "configs" / "ci_tiny.toml"


def _cfg(*over):
    return grid.load_config(TINY, list(over))


def test_config_and_grid():
    cfg = _cfg("seeds=[0, 1]")
    keys = [t.key for t in grid.tasks(cfg)]
    # classical configurations run once per seed, quantum ones per mode and seed
    assert keys[:2] == ["mnist-sample/level0/classical/seed0", "mnist-sample/level0/classical/seed1"]
    assert "mnist-sample/level2/paper/seed1" in keys and "mnist-sample/level2/physical/seed0" in keys
    assert len(keys) == 2 + 4 + 2
    with pytest.raises(ValueError, match=r"--set must be key=value with key one of"):
        grid.load_config(TINY, ["speed=3"])
    with pytest.raises(ValueError, match=r"config configurations must be a non-empty list from"):
        grid.load_config(TINY, ["configurations=['level9']"])
    with pytest.raises(ValueError, match=r"config epochs must be an int >= 1; got 0"):
        grid.load_config(TINY, ["epochs=0"])
    with pytest.raises(FileNotFoundError, match="config file .*nope.toml not found"):
        grid.load_config(CREEP / "nope.toml")


def test_cli_bad_argument_is_one_line(tmp_path):
    p = subprocess.run([sys.executable, str(CREEP / "run.py"), "--config", str(TINY), "--set", "epochs=-1"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "config epochs must be an int >= 1; got -1" in p.stderr
    assert "Traceback" not in p.stderr


def test_local_grid_skips_finished_and_summarizes(tmp_path):
    cfg = _cfg("configurations=['level0', 'level2']", "modes=['physical']", "epochs=1")
    res = run.run_grid(cfg, tmp_path, progress=False, command="test")
    assert len(res) == 2
    r = json.loads((tmp_path / "mnist-sample/level2/physical/seed0/result.json").read_text())
    assert set(r) >= {"train_losses", "test_losses", "train_accs", "test_accs", "epoch_seconds", "record", "swap"}
    assert r["record"]["command"] == "test" and "torch" in r["record"]["packages"]
    assert r["n_train"] == 40 and r["n_test"] == 20 and len(r["test_accs"]) == 1
    assert [row["new"] for row in r["swap"]["rows"]] == ["FlippedQuanv3x3", "FlippedQuanv3x3", "DataReUploadingLinear"]
    assert run.run_grid(cfg, tmp_path, progress=False) == []  # finished tasks are skipped
    md = run.summarize(tmp_path)
    assert "| mnist-sample | level2 | physical | 1 |" in md
    assert (tmp_path / "summary.md").exists() and (tmp_path / "curves.png").stat().st_size > 1000


def test_killed_run_resumes_with_identical_results(tmp_path):
    over = ["configurations=['level2']", "modes=['paper']", "epochs=3", "train_per_class=6"]
    straight = run.run_grid(_cfg(*over), tmp_path / "straight", progress=False)[0]
    cmd = [sys.executable, str(CREEP / "run.py"), "--config", str(TINY), "--no-progress", "--out", str(tmp_path / "k")]
    for o in over:
        cmd += ["--set", o]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "k" / "mnist-sample/level2/paper/seed0/checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert ckpt.exists(), "the first epoch's checkpoint never appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (ckpt.parent / "result.json").exists(), "the run finished before it could be killed"
    resumed = run.run_grid(_cfg(*over), tmp_path / "k", progress=False)[0]
    for key in ("train_losses", "test_losses", "train_accs", "test_accs"):
        assert resumed[key] == straight[key], key


def test_ray_local_cluster_gives_the_local_results(tmp_path):
    cfg = _cfg("configurations=['level0', 'level2']", "modes=['physical']", "epochs=1")
    local = {r["task"]["configuration"]: r for r in run.run_grid(cfg, tmp_path / "local", progress=False)}
    remote = run.run_grid(cfg, tmp_path / "ray", ray_address="local", progress=False)
    assert len(remote) == 2
    for r in remote:
        same = local[r["task"]["configuration"]]
        assert r["test_accs"] == same["test_accs"] and r["train_losses"] == same["train_losses"]
    assert (tmp_path / "ray" / "mnist-sample/level2/physical/seed0/result.json").exists()
