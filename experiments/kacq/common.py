"""Shared pieces of the KACQ-DCNN experiments: data, folds, metrics, result cache, statistics.

Results of the clean protocol are cached one JSON line per (prep, model, repeat, fold) in
``experiments/kacq/results/cv_results.jsonl`` so that every run resumes where the last stopped.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CV_CACHE = RESULTS / "cv_results.jsonl"
sys.path.insert(0, str(HERE.parents[1]))  # repo root, so `import qnn` works from a checkout

FOLD_SEED = 2024  # RepeatedStratifiedKFold random_state: identical folds for every model


def load_df(data_dir=None):
    from qnn.datasets.heart import load_heart_failure

    return load_heart_failure(data_dir)


def folds(y, n_repeats: int):
    """[(repeat, fold, train_idx, test_idx)] from RepeatedStratifiedKFold(10, n_repeats, seed 2024)."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    rskf = RepeatedStratifiedKFold(n_splits=10, n_repeats=n_repeats, random_state=FOLD_SEED)
    out = []
    for k, (tr, te) in enumerate(rskf.split(np.zeros(len(y)), y)):
        out.append((k // 10, k % 10, tr, te))
    return out


def prepare(df, train_idx, test_idx, prep: str):
    """Fit preprocessing on the training rows only; returns (Xtr, Xte, ytr, yte)."""
    from sklearn.preprocessing import MinMaxScaler

    from qnn.datasets.heart import CleanHeartPreprocessor, paper_encode

    y = df["HeartDisease"].to_numpy()
    if prep == "clean":
        pre = CleanHeartPreprocessor().fit(df.iloc[train_idx])
        Xtr, Xte = pre.transform(df.iloc[train_idx]), pre.transform(df.iloc[test_idx])
    elif prep == "paper":
        X, _ = paper_encode(df)
        sc = MinMaxScaler().fit(X[train_idx])
        Xtr, Xte = sc.transform(X[train_idx]), sc.transform(X[test_idx])
    else:
        raise ValueError(f"prep must be 'clean' or 'paper'; got {prep!r}")
    return Xtr, Xte, y[train_idx], y[test_idx]


def metrics(y_true, proba) -> dict:
    """Accuracy, ROC-AUC (probabilities), macro P/R/F1, MCC, kappa, confusion matrix (thr 0.5)."""
    from sklearn.metrics import (accuracy_score, cohen_kappa_score, confusion_matrix, matthews_corrcoef,
                                 precision_recall_fscore_support, roc_auc_score)

    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=float)
    pred = (proba > 0.5).astype(int)
    p, r, f, _ = precision_recall_fscore_support(y_true, pred, average="macro", zero_division=0)
    try:
        auc = roc_auc_score(y_true, proba)
    except ValueError:
        auc = float("nan")
    tn, fp, fn, tp = confusion_matrix(y_true, pred, labels=[0, 1]).ravel()
    return {
        "accuracy": float(accuracy_score(y_true, pred)),
        "roc_auc": float(auc),
        "precision_macro": float(p),
        "recall_macro": float(r),
        "f1_macro": float(f),
        "mcc": float(matthews_corrcoef(y_true, pred)),
        "kappa": float(cohen_kappa_score(y_true, pred)),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }


# ----------------------------------------------------------------------------- cache
def load_cache(path: Path | None = None) -> dict:
    path = CV_CACHE if path is None else path
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[(rec["prep"], rec["model"], rec["repeat"], rec["fold"])] = rec
    return done


def append_cache(rec: dict, path: Path | None = None) -> None:
    path = CV_CACHE if path is None else path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------- statistics
def mean_sd(values, digits: int = 4) -> str:
    """``"mean ± sd"`` (sample sd) of the values that are not None; one value alone, ``"-"`` for none."""
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{np.mean(v):.{digits}f} ± {np.std(v, ddof=1):.{digits}f}"


def nadeau_bengio(a, b, n_train: int, n_test: int) -> tuple[float, float]:
    """Corrected resampled t-test (Nadeau & Bengio 2003) on paired per-fold scores.

    t = mean(d) / sqrt((1/k + n_test/n_train) * var(d)), df = k - 1; two-sided p.
    """
    from scipy import stats

    d = np.asarray(a, float) - np.asarray(b, float)
    k = len(d)
    if k < 2:
        return float("nan"), float("nan")
    var = d.var(ddof=1)
    if var <= 1e-12:  # identical differences (up to rounding): no spread to test against
        return (0.0, 1.0) if d.mean() == 0 else (math.copysign(math.inf, d.mean()), 0.0)
    t = d.mean() / math.sqrt((1.0 / k + n_test / n_train) * var)
    p = 2 * stats.t.sf(abs(t), df=k - 1)
    return float(t), float(p)


def holm(pvals: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (NaN stays NaN)."""
    idx = [i for i, p in enumerate(pvals) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: pvals[i])
    m = len(order)
    adj = [float("nan")] * len(pvals)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvals[i]))
        adj[i] = running
    return adj


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0
