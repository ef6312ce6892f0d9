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
