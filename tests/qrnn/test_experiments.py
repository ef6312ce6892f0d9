"""Fast versions of the QRNN experiments (a few steps on tiny data); full runs are marked slow."""

import csv
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("QNN_DATA_DIR", "/work/shared/datasets"))
needs_mnist = pytest.mark.skipif(
    not (DATA / "mnist" / "train-images-idx3-ubyte.gz").exists(),
    reason=f"MNIST IDX files not found under {DATA}/mnist (set QNN_DATA_DIR)",
)


def _load(rel):
    spec = importlib.util.spec_from_file_location(rel.replace("/", "_").replace(".py", ""), ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def train():
    return _load("experiments/qrnn/train_qrnn.py")


def _log(run):
    return [json.loads(line) for line in open(run / "log.jsonl")]


@pytest.mark.parametrize(
    "task,extra",
    [
        ("elman-xor", ["--W", "2", "--S", "1", "--d", "2", "--batch", "4"]),
        ("elman-letter", ["--W", "2", "--S", "1", "--d", "2", "--batch", "2"]),
        ("dna", ["--W", "2", "--S", "1", "--d", "2", "--batch", "4", "--length", "8"]),
        ("simple-seq", ["--W", "2", "--S", "1", "--d", "1"]),
    ],
)
def test_train_fast_and_resume(tmp_path, train, task, extra):
    run = tmp_path / task
    common = ["--task", task, "--run-dir", str(run), "--eval-every", "2", "--ckpt-every", "1", "--val-n", "4", "--no-progress"]
    train.main(common + extra + ["--steps", "2"])
    assert len(_log(run)) == 2 and (run / "checkpoint.pt").exists()
    train.main(common + extra + ["--steps", "4", "--resume", "--test", "--test-batches", "2", "--test-batch-size", "4", "--test-n", "8"])
    log = _log(run)
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(r["loss"] == r["loss"] for r in log)  # no NaN
    res = json.loads((run / "test.json").read_text())
    assert 0.0 <= res["argmax_full_test_accuracy"] <= 1.0 and len(res["sampled_10_batches"]) == 2


def test_lr_schedule(tmp_path, train):
    assert train.parse_lr_schedule("4:0.001,2:0.01") == [(2, 0.01), (4, 0.001)]
    assert [train.lr_at(s, 0.1, [(2, 0.01), (4, 0.001)]) for s in range(6)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    with pytest.raises(ValueError, match="--lr-schedule: expected 'step:lr,step:lr,...'; got '3=0.1'"):
        train.parse_lr_schedule("3=0.1")
    run = tmp_path / "xor"
    common = ["--task", "elman-xor", "--W", "2", "--S", "1", "--d", "2", "--batch", "4", "--run-dir", str(run),
              "--eval-every", "2", "--ckpt-every", "1", "--val-n", "4", "--no-progress", "--lr", "0.05"]
    train.main(common + ["--steps", "2"])
    # resumed with a schedule: the new rates apply from the given steps on
    train.main(common + ["--steps", "4", "--resume", "--lr-schedule", "3:0.002"])
    assert [r["lr"] for r in _log(run)] == [0.05, 0.05, 0.05, 0.002]

def test_amsgrad_option(tmp_path, train):
    common = ["--task", "elman-xor", "--W", "2", "--S", "1", "--d", "2", "--batch", "4", "--steps", "2",
              "--eval-every", "2", "--ckpt-every", "1", "--val-n", "4", "--no-progress"]
    for flag, expect in (([], False), (["--amsgrad"], True)):
        run = tmp_path / f"xor{int(expect)}"
        train.main(common + ["--run-dir", str(run)] + flag)
        opt = torch.load(run / "checkpoint.pt", weights_only=False)["opt"]
        assert opt["param_groups"][0]["amsgrad"] is expect
        assert all(("max_exp_avg_sq" in st) is expect for st in opt["state"].values())


def test_loss_option(tmp_path, train, monkeypatch):
    """--loss nll changes the training loss only; validation keeps the authors' loss."""
    kinds = []
    real = train.qrnn_loss

    def spy(*a, kind="ce_probs", **k):
        kinds.append(kind)
        return real(*a, kind=kind, **k)

    monkeypatch.setattr(train, "qrnn_loss", spy)
    run = tmp_path / "xor"
    train.main(["--task", "elman-xor", "--W", "2", "--S", "1", "--d", "2", "--batch", "4", "--run-dir", str(run),
                "--eval-every", "2", "--val-n", "4", "--no-progress", "--steps", "2", "--loss", "nll"])
    assert kinds == ["nll", "nll", "ce_probs"], kinds  # two training steps, one validation
    assert "val_loss" in _log(run)[-1]


@needs_mnist
def test_mnist_fast(tmp_path, train, monkeypatch, capsys):
    monkeypatch.setenv("QNN_DATA_DIR", str(DATA))
    run = tmp_path / "mnist01"
    train.main(
        ["--task", "mnist01", "--W", "2", "--S", "1", "--d", "1", "--batch", "2", "--steps", "2", "--val-size", "4",
         "--val-sub", "4", "--eval-every", "1", "--run-dir", str(run), "--test", "--test-batches", "1",
         "--test-batch-size", "4", "--test-n", "8", "--no-progress"]
    )
    res = json.loads((run / "test.json").read_text())
    assert res["n_test"] == 8 and res["task"] == "mnist01"
    assert all("val_loss" in r for r in _log(run))
    # the failure analysis of a trained run reads the same run directory
    _load("experiments/qrnn/diagnose_mnist.py").main([str(run), "--train-n", "3"])
    out = capsys.readouterr().out
    assert "validation (n = 8): argmax accuracy" in out and "training images (n = 6)" in out and "class 1" in out


@needs_mnist
def test_mnist_task_names(train, monkeypatch):
    import argparse

    monkeypatch.setenv("QNN_DATA_DIR", str(DATA))
    names = {
        t: train.make_task(argparse.Namespace(task=t), "test", n=4).name
        for t in ("mnist01", "mnist36-ds", "mnist01-lz", "mnist36-ds-lz")
    }
    assert names == {t: t for t in names}
    for bad in ("mnist01-xx", "mnist01-lz-lz"):
        with pytest.raises(ValueError, match=f"unknown MNIST variant '{bad}'"):
            train.make_task(argparse.Namespace(task=bad), "test", n=4)


@needs_mnist
def test_ink_count_fast(tmp_path, train, monkeypatch, capsys):
    monkeypatch.setenv("QNN_DATA_DIR", str(DATA))
    run = tmp_path / "mnist01lz"
    train.main(["--task", "mnist01-lz", "--W", "2", "--S", "1", "--d", "1", "--batch", "2", "--steps", "1",
                "--val-size", "4", "--val-sub", "4", "--eval-every", "1", "--run-dir", str(run), "--no-progress"])
    capsys.readouterr()
    ic = _load("experiments/qrnn/ink_count.py")
    ic.main(["--runs", str(run), "--n-train", "300", "--n-test", "100"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("resize box:") and out[1].startswith("resize lanczos:")
    assert "test accuracy" in out[0] and "(n = 100)" in out[1]
    assert out[2].startswith("run mnist01lz (mnist01-lz): test argmax accuracy")
    # the threshold rule itself: 0 iff count > k
    assert ic.best_threshold(np.array([1, 2, 8, 9]), np.array([1, 1, 0, 0])) in range(2, 8)


def test_seed_table(tmp_path, capsys):
    st = _load("experiments/qrnn/seed_table.py")

    def run(name, accs, losses, sampled, argmax):
        lines = ["step,loss,min_postsel_prob,time_s,val_loss,val_acc,grad_norm"]
        for i, (a, vl) in enumerate(zip(accs, losses)):
            lines.append(f"{10 * (i + 1)},0.1,{0.01 / (i + 1)},0.5,{vl},{a},{i + 1}")
        (tmp_path / f"{name}_curve.csv").write_text("\n".join(lines) + "\n")
        (tmp_path / f"{name}_test.json").write_text(json.dumps({
            "sampled_10_batches_mean": sampled, "sampled_10_batches_se": 0.01,
            "argmax_full_test_accuracy": argmax, "sampled_full_test_accuracy": sampled}))

    run("a", [0.5, 0.9, 0.6, 0.95], [0.4, 0.05, 0.3, 0.02], 0.99, 0.995)  # one collapse, at step 30
    run("b", [0.5, 0.7, 0.5, 0.6], [0.4, 0.2, 0.3, 0.25], 0.80, 0.85)  # never >= 0.8: no collapse
    a, b = st.load("a", tmp_path), st.load("b", tmp_path)
    assert a["best_step"] == 40 and a["best_val_loss"] == 0.02 and b["collapses"] == []
    assert a["collapses"] == [{"step": 30, "max_grad_norm": 3.0, "min_postsel_prob": 0.01 / 3}]
    st.main(["a", "b", "--results", str(tmp_path)])
    out = capsys.readouterr().out
    assert "Lowest validation loss: a -> test 0.990 ± 0.010 sampled, 0.9950 argmax." in out
    assert "Mean over the 2 runs: 0.895 sampled, 0.922 argmax; 1 of 2 runs >= 0.98 sampled." in out


def test_dna_study_fast(tmp_path):
    mod = _load("experiments/qrnn/dna_study.py")
    out = tmp_path / "dna.csv"
    mod.main(["--lengths", "5", "--seeds", "0", "--max-steps", "2", "--batch", "4", "--val-n", "4", "--eval-every", "1",
              "--out", str(out)])
    rows = list(csv.DictReader(open(out)))
    assert {r["model"] for r in rows} == {"qrnn", "lstm", "rnn"}
    assert {r["params"] for r in rows} == {"837", "888"}
    assert out.with_suffix(".png").exists() and out.with_suffix(".md").exists()
    # resuming skips finished runs
    mod.main(["--lengths", "5", "--seeds", "0", "--max-steps", "2", "--batch", "4", "--val-n", "4", "--out", str(out)])
    assert len(list(csv.DictReader(open(out)))) == 3


def test_dna_study_all_outputs_baselines(tmp_path):
    mod = _load("experiments/qrnn/dna_study.py")
    out = tmp_path / "dna_all.csv"
    mod.main(["--lengths", "6", "--seeds", "0", "--models", "lstm-all", "rnn-all", "--max-steps", "2", "--batch", "4",
              "--val-n", "4", "--eval-every", "1", "--out", str(out)])
    rows = list(csv.DictReader(open(out)))
    assert {r["model"] for r in rows} == {"lstm-all", "rnn-all"} and {r["params"] for r in rows} == {"888"}
    # the all-outputs loss differs from the last-output loss on the same batch (it sees the carried targets)
    from qnn.datasets.sequences import dna

    task = dna(8, 6, seed=0)
    model, _ = mod.make_model("lstm-all", 0)
    l_all, _ = mod.loss_and_acc("lstm-all", model, task, True)
    l_last, _ = mod.loss_and_acc("lstm", model, task, True)
    l_eval, _ = mod.loss_and_acc("lstm-all", model, task, False)
    assert not torch.isclose(l_all, l_last) and torch.isclose(l_eval, l_last)


def test_bench_fast(tmp_path):
    mod = _load("bench/bench_qrnn.py")
    res = mod.main(["--threads", "1", "--repeats", "1", "--sequences", "4", "--ref-sequences", "2", "--length", "5",
                    "--dtype", "float64", "--out", str(tmp_path / "b.json")])
    assert res["outputs_equal"] and res["speedup_cpu"] > 0


@pytest.mark.slow
def test_elman_xor_converges(tmp_path, train):
    run = tmp_path / "xor"
    train.main(["--task", "elman-xor", "--W", "4", "--S", "1", "--ord", "2", "--d", "3", "--lr", "0.005", "--batch", "16",
                "--steps", "1000", "--stop-loss", "1e-3", "--run-dir", str(run), "--no-progress"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["converged_step"] is not None


@pytest.mark.slow
@needs_mnist
def test_mnist01_reaches_target(tmp_path, train, monkeypatch):
    """The committed seed-1 run of `mnist01-lz` (Lanczos resize), cut at 1000 steps (~12 min)."""
    monkeypatch.setenv("QNN_DATA_DIR", str(DATA))
    run = tmp_path / "mnist01lz"
    train.main(["--task", "mnist01-lz", "--W", "8", "--S", "2", "--ord", "2", "--d", "2", "--lr", "0.005",
                "--batch", "100", "--seed", "1", "--steps", "1000", "--eval-every", "20", "--val-sub", "200",
                "--run-dir", str(run), "--test", "--no-progress"])
    res = json.loads((run / "test.json").read_text())
    assert res["sampled_10_batches_mean"] >= 0.98 and res["argmax_full_test_accuracy"] >= 0.98


def test_dna_converges_with_the_authors_targets():
    """Regression test for the DNA failure: with the authors' targets (the base carried, and
    postselected, at every step after the mark) the authors' setting converges at L = 10 in well
    under their 1000-step budget (authors' median 180 steps); with all-zero unscored targets (our
    earlier generator) it stayed near chance for 1000 steps."""
    from qnn.qrnn import qrnn_loss

    # the study's own training loop: W5 S1 ord2 d3, Adam 0.01, batch 128, clip 0.5, teacher forcing
    study = _load("experiments/qrnn/dna_study.py")
    model, val, row = study.run_one("qrnn", 10, 0, 400, 128, 1e-3, 10, 128, qrnn_lr=0.01, carry=True)
    assert row["converged"], f"DNA L=10 did not reach val loss < 1e-3 within 400 steps: {row}"
    # The protocol postselects the unscored outputs onto the remembered base in evaluation too,
    # so the answer is carried by postselection, not by the workspace's memory of the input:
    # removing the mark from the inputs leaves the accuracy unchanged, while sampling the
    # intermediate outputs instead of postselecting them drops it towards chance (0.25).
    ar = torch.arange(len(val))
    mark = (val.inputs >= 4).float().argmax(1)
    x = val.inputs.clone()
    x[ar, mark] -= 4
    with torch.no_grad():
        o = model(x, val.targets, postselect=val.ignore, readout="argmax")
        acc_no_mark = float((o.probs[:, :, -1].argmax(1) == val.targets[:, -1]).float().mean())
        o = model(val.inputs, val.targets, postselect=torch.zeros(10, dtype=torch.bool), readout="argmax")
        acc_sampled = float((o.probs[:, :, -1].argmax(1) == val.targets[:, -1]).float().mean())
    assert acc_no_mark > 0.95 and acc_sampled < 0.6, (acc_no_mark, acc_sampled)
    assert float(qrnn_loss(o.probs, val.targets[:, 1:], val.score)) > 0.1
