"""Smoke tests of the KACQ conformal and explanation studies (``--quick``: seconds)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("QNN_DATA_DIR", "/work/shared/datasets"))
needs_heart = pytest.mark.skipif(
    not (DATA / "heart/heart_failure_prediction/heart.csv").exists(),
    reason=f"heart.csv not found under QNN_DATA_DIR={DATA} (set QNN_DATA_DIR to the datasets folder)",
)


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / "kacq" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@needs_heart
def test_conformal_study_quick(tmp_path, monkeypatch):
    monkeypatch.setenv("QNN_DATA_DIR", str(DATA))
    mod = _load("conformal_study")
    summary = mod.main(["--quick", "--out", str(tmp_path), "--models", "kacq,logreg"])
    assert (tmp_path / "coverage.png").stat().st_size > 1000
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert set(on_disk["models"]) == {"kacq", "logreg"}
    for m, S in summary["models"].items():
        for name in ("LAC", "APS", "RAPS", "Mondrian-LAC", "LAC-on-train (paper)"):
            M = S["methods"][name]
            cov = np.array(M["coverage_pooled"])
            assert cov.shape == (3,) and ((0 <= cov) & (cov <= 1)).all()
            assert np.array(M["per_class_coverage_pooled"]).shape == (2, 3)
            assert ((0 <= np.array(M["mean_set_size"])) & (np.array(M["mean_set_size"]) <= 2)).all()
            assert np.array(M["set_size_counts_total"]).sum(0).tolist() == [M["n_test_total"]] * 3
    rows = (tmp_path / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("model,method,alpha") and len(rows) > 10
    # resumable: a second run reads the per-split store instead of refitting
    store = tmp_path / "per_split_quick.jsonl"
    assert len(store.read_text().splitlines()) == 2
    mtime = store.stat().st_mtime_ns
    again = mod.main(["--quick", "--out", str(tmp_path), "--models", "kacq,logreg"])
    assert store.stat().st_mtime_ns == mtime
    assert again["models"]["kacq"]["methods"]["LAC"] == on_disk["models"]["kacq"]["methods"]["LAC"]


@needs_heart
def test_explain_study_quick(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QNN_DATA_DIR", str(DATA))
    mod = _load("explain_study")
    summary = mod.main(["--quick", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert "evaluation budget: Kernel SHAP" in out
    assert summary["kernel_shap"]["additivity_error"] < 1e-5
    assert sorted(summary["kernel_shap"]["ranking"]) == sorted(mod.PAPER_RANKING)
    assert -1 <= summary["ranking_comparison"]["kernel_shap"]["vs_paper"]["spearman"] <= 1
    assert 0 <= summary["lime_stability"]["score_top_k_jaccard"] <= 1
    for png in ("shap_bar.png", "shap_beeswarm.png", "shap_waterfall_hf.png", "lime_hf.png",
                "lime_normal.png", "lime_global.png", "ranking_vs_paper.png"):
        assert (tmp_path / "out" / png).read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "out" / "importance.csv").read_text().splitlines()) == 12


@needs_heart
def test_check_index_feature_quick(monkeypatch, capsys):
    monkeypatch.setenv("QNN_DATA_DIR", str(DATA))
    monkeypatch.syspath_prepend(str(ROOT / "experiments" / "kacq"))
    mod = _load("check_index_feature")
    seen = []
    import qnn.models

    class OneEpoch(qnn.models.KACQClassifier):
        def __init__(self, **kw):
            super().__init__(epochs=1, **kw)

        def fit(self, X, y, X_val=None, y_val=None):
            seen.append((X.shape, X_val.shape, float(X[:, -1].min()), float(X[:, -1].max())))
            return super().fit(X, y, X_val=X_val, y_val=y_val)

    monkeypatch.setattr(qnn.models, "KACQClassifier", OneEpoch)
    mod.main([0])
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["seed"] == 0 and rec["epochs_run"] == 1 and 0 <= rec["accuracy"] <= 1
    # 12 columns (the row index appended, MinMax-scaled on the training split); validation = test split
    assert seen == [((642, 12), (276, 12), 0.0, 1.0)]


def test_hypotheses_smote_balances_on_minority_segments():
    mod = _load("hypotheses")
    rng = np.random.default_rng(0)
    X = rng.random((30, 3))
    y = np.array([0] * 10 + [1] * 20)
    Xb, yb = mod.smote(X, y, np.random.default_rng(1), k=3)
    assert np.bincount(yb).tolist() == [20, 20]
    np.testing.assert_array_equal(Xb[:30], X)
    Xm = X[:10]
    for p in Xb[30:]:  # every synthetic row lies on a segment between two distinct minority rows
        ok = False
        for i in range(10):
            for j in range(10):
                if i != j:
                    d = Xm[j] - Xm[i]
                    t = float(d @ (p - Xm[i]) / (d @ d))
                    if -1e-12 <= t <= 1 + 1e-12 and np.allclose(Xm[i] + t * d, p):
                        ok = True
        assert ok


@needs_heart
def test_hypotheses_data_and_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QNN_DATA_DIR", str(DATA))
    monkeypatch.syspath_prepend(str(ROOT / "experiments" / "kacq"))
    mod = _load("hypotheses")
    hyps = mod.all_hypotheses()
    assert len(hyps) == 9 + 55 and len(set(hyps)) == len(hyps)
    Xtr, Xte, ytr, yte, kw = mod.make_data("baseline", 0)
    from qnn.datasets.heart import load_heart_failure, paper_preprocess

    ref = paper_preprocess(load_heart_failure(DATA), random_state=0)
    np.testing.assert_allclose(Xtr, ref[0])
    np.testing.assert_allclose(Xte, ref[1])
    assert kw == {} and Xtr.shape == (642, 11)
    Xtr, Xte, *_ = mod.make_data("inter:Age*MaxHR", 0)
    assert Xtr.shape == (642, 12) and Xtr[:, -1].min() == 0 and Xtr[:, -1].max() == 1
    Xtr, _, ytr, _, _ = mod.make_data("iqr", 0)
    assert 400 < len(ytr) < 642  # rows with outliers (e.g. Cholesterol = 0) dropped from training only
    Xtr, _, ytr, yte, _ = mod.make_data("iqr+smote", 0)
    assert np.bincount(ytr)[0] == np.bincount(ytr)[1] and len(yte) == 276
    Xtr, Xte, *_ = mod.make_data("scale:none", 0)
    assert Xtr.max() > 100  # raw Cholesterol
    assert mod.make_data("batch10", 0)[4] == {"batch_size": 10}
    Xtr, _, ytr, _, _ = mod.make_data("control:noisy_label", 0)
    assert 0.8 < (Xtr[:, -1] == ytr).mean() < 0.9
    with pytest.raises(SystemExit):
        mod.main(["--only", "no-such-hypothesis"])
    assert "unknown hypotheses" in capsys.readouterr().err
    # one short run, appended to a temporary cache and summarised
    import qnn.models

    class OneEpoch(qnn.models.KACQClassifier):
        def __init__(self, **kw):
            super().__init__(epochs=1, **kw)

    monkeypatch.setattr(qnn.models, "KACQClassifier", OneEpoch)
    monkeypatch.setattr(mod, "OUT", tmp_path / "h.jsonl")
    monkeypatch.setattr(mod.common, "RESULTS", tmp_path)
    mod.main(["--only", "baseline", "--seeds", "0"])
    rec = json.loads((tmp_path / "h.jsonl").read_text())
    assert rec["hypothesis"] == "baseline" and rec["epochs_run"] == 1 and rec["loss_epoch16"] is None
    md = (tmp_path / "hypotheses.md").read_text()
    assert "| baseline | 0 |" in md and ("0 of 1." in md or "1 of 1." in md)
    mod.main(["--only", "baseline", "--seeds", "0"])  # cached: nothing appended
    assert len((tmp_path / "h.jsonl").read_text().splitlines()) == 1


@needs_heart
def test_keras_reference_split_and_summary(tmp_path, monkeypatch):
    """The Keras cross-check's own preprocessing (sklearn LabelEncoder) equals qnn's paper_preprocess;
    its summary (no TensorFlow needed) sets Keras runs beside qnn's runs of the same seed."""
    monkeypatch.setenv("QNN_DATA_DIR", str(DATA))
    mod = _load("keras_reference")
    from qnn.datasets.heart import load_heart_failure, paper_preprocess

    for seed in (0, 3):
        got, ref = mod.load_split(seed), paper_preprocess(load_heart_failure(DATA), random_state=seed)
        for a, b in zip(got, ref[:4]):
            np.testing.assert_allclose(a, b)
    keras = tmp_path / "k.jsonl"
    hist = {"accuracy": [0.5 + 0.02 * i for i in range(20)], "loss": [0.5] * 20}
    keras.write_text(
        json.dumps({"seed": 0, "n_layers": 1, "classical_only": False, "accuracy": 0.88, "roc_auc": 0.93,
                    "best_epoch": 7, "epochs_run": 20, "history": hist}) + "\n"
        + json.dumps({"seed": 0, "n_layers": 1, "classical_only": True, "accuracy": 0.87, "roc_auc": 0.94,
                      "best_epoch": 5, "epochs_run": 12, "history": {"accuracy": [0.6] * 12}}) + "\n")
    ours = tmp_path / "t.jsonl"
    ours.write_text(json.dumps({"seed": 0, "n_layers": 1, "interaction": None, "accuracy": 0.8804,
                                "roc_auc": 0.9271, "best_epoch": 13, "epochs_run": 39}) + "\n")
    md = mod.summarize(keras, ours)
    rows = [l for l in md.splitlines() if l.startswith("| 0 |")]
    assert rows[0] == "| 0 | full, L=1 | 0.8800 | 0.9300 | 0.8 | 0.8800 | 7 / 20 | 0.8804 | 0.9271 | 13 / 39 |"
    assert rows[1] == "| 0 | classical channel only | 0.8700 | 0.9400 | - | 0.6000 | 5 / 12 | - | - | - |"
    assert "| mean (n=1) | full, L=1 | 0.8800 | 0.9300 | 0.8000 | 0.8800 | | 0.8804 | 0.9271 | |" in md
