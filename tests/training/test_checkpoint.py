"""Checkpoints of qnn.training.fit: exact resume after a real SIGKILL, weights-only loading,
refusal of changed configurations and of corrupted or foreign files."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import _resume_child as child
from qnn.training import History, fit, load_checkpoint

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _strip_seconds(epochs):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in epochs]


def _child(ckpt: Path, out: Path, kill_at: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(HERE / "_resume_child.py"), str(ckpt), str(out), str(kill_at)],
                          env=env, capture_output=True, text=True, timeout=120)


def _reference():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return child.run()
    finally:
        torch.set_num_threads(threads)


def test_killed_run_resumes_bit_identically(tmp_path):
    ckpt, out = tmp_path / "ck" / "run.pt", tmp_path / "out.pt"
    # SIGKILL at the 3rd batch of epoch 3: epochs 1-2 are checkpointed, epoch 3 is half done.
    killed = _child(ckpt, out, kill_at=2 * 6 + 3)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists()
    assert load_checkpoint(ckpt)["epoch"] == 2

    resumed = _child(ckpt, out, kill_at=-1)
    assert resumed.returncode == 0, resumed.stderr
    got = torch.load(out, weights_only=True)

    model, hist = _reference()
    ref = model.state_dict()
    assert list(got["state"]) == list(ref)
    for k in ref:
        assert torch.equal(got["state"][k], ref[k]), k
    assert _strip_seconds(got["history"]["epochs"]) == _strip_seconds(hist.epochs)
    assert len(got["history"]["epochs"]) == child.EPOCHS
    assert [r["start_epoch"] for r in got["history"]["runs"]] == [0, 2]
    assert load_checkpoint(ckpt)["epoch"] == child.EPOCHS


def test_finished_run_trains_no_more_and_returns_stored_history(tmp_path):
    ckpt = tmp_path / "run.pt"
    model, hist = child.run(ckpt)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []
    model2, hist2 = child.run(ckpt, on_epoch_end=calls.append)
    assert calls == [] and hist2 == hist
    for k, v in model2.state_dict().items():  # the checkpoint's final weights were loaded
        assert torch.equal(v, weights[k])


def test_checkpoint_loads_weights_only_and_holds_everything(tmp_path):
    X, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    fit(nn.Linear(3, 2), (X, y), epochs=2, batch_size=8, checkpoint=tmp_path, progress=False)
    path = tmp_path / "checkpoint.pt"  # a directory means <dir>/checkpoint.pt
    state = torch.load(path, weights_only=True)
    assert state["format"] == "qnn.training.checkpoint" and state["epoch"] == 2
    assert set(state["model"]) == {"weight", "bias"}
    assert state["optimizer"]["state"][0]["step"] == 6  # Adam, 3 batches x 2 epochs
    assert state["shuffle_rng"].dtype == torch.uint8 and state["torch_rng"].dtype == torch.uint8
    assert state["config"]["epochs"] == 2 and state["config"]["parameters"] == [["weight", [2, 3], "float32"],
                                                                                  ["bias", [2], "float32"]]
    h = History.from_dict(state["history"])
    assert len(h) == 2 and h.record["git_commit"] == h.runs[0]["git_commit"]
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temporary file


@pytest.mark.parametrize("change, match", [
    ({"epochs": 3}, r"epochs 2 \(checkpoint\) != 3 \(now\)"),
    ({"batch_size": 4}, r"batch_size 8 \(checkpoint\) != 4 \(now\)"),
    ({"lr": 0.5}, r"lr 0.001 \(checkpoint\) != 0.5 \(now\)"),
    ({"seed": 1}, r"seed 0 \(checkpoint\) != 1 \(now\)"),
    ({"model": lambda: nn.Linear(3, 4)}, r"parameters .* \(checkpoint\) != .* \(now\)"),
    ({"model": lambda: nn.Sequential(nn.Linear(3, 2))}, r"model 'torch.nn.modules.linear.Linear' \(checkpoint\)"),
])
def test_resume_with_a_changed_config_is_refused(tmp_path, change, match):
    X, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    kw = dict(epochs=2, batch_size=8, checkpoint=tmp_path / "c.pt", progress=False)
    fit(nn.Linear(3, 2), (X, y), **kw)
    make = change.pop("model", lambda: nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"fit: checkpoint .*c.pt was written by a run with a different "
                                         r"configuration: .*" + match):
        fit(make(), (X, y), **{**kw, **change})
    # resume=False starts over instead
    h = fit(make(), (X, y), **{**kw, **change, "resume": False})
    assert len(h) == change.get("epochs", 2) and h.runs[0]["start_epoch"] == 0


def test_corrupted_and_foreign_checkpoints_are_refused(tmp_path):
    X, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    kw = dict(epochs=2, batch_size=8, progress=False)

    good = tmp_path / "good.pt"
    fit(nn.Linear(3, 2), (X, y), checkpoint=good, **kw)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"fit: cannot read checkpoint .*truncated.pt: expected a torch file "
                                         r"that loads with weights_only=True; got"):
        fit(nn.Linear(3, 2), (X, y), checkpoint=truncated, **kw)

    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"fit: cannot read checkpoint .*garbage.pt"):
        fit(nn.Linear(3, 2), (X, y), checkpoint=garbage, **kw)

    foreign = tmp_path / "foreign.pt"
    torch.save({"model": nn.Linear(3, 2).state_dict(), "epoch": 1}, foreign)
    with pytest.raises(ValueError, match=r"fit: .*foreign.pt is not a qnn.training checkpoint: expected a dict "
                                         r"with 'format': 'qnn.training.checkpoint'; got a dict with keys \['epoch', 'model'\]"):
        fit(nn.Linear(3, 2), (X, y), checkpoint=foreign, **kw)

    unsafe = tmp_path / "unsafe.pt"  # a pickled module: weights_only refuses it, so do we
    with open(unsafe, "wb") as f:
        torch.save(nn.Linear(3, 2), f)
    with pytest.raises(ValueError, match=r"load_checkpoint: cannot read checkpoint .*unsafe.pt"):
        load_checkpoint(unsafe)
    with pytest.raises(FileNotFoundError, match=r"load_checkpoint: no checkpoint file at .*missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_history_in_checkpoint_pickles_and_loads_weights_only(tmp_path):
    X, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    h = fit(nn.Linear(3, 2), (X, y), epochs=1, batch_size=8, progress=False)
    assert pickle.loads(pickle.dumps(h)) == h
    torch.save(h, tmp_path / "h.pt")
    assert torch.load(tmp_path / "h.pt", weights_only=True) == h
