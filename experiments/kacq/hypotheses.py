"""Screen data-pipeline hypotheses for the gap between our paper-protocol runs and the paper.

The paper's headline KACQ-DCNN took **12** inputs (the 12th is undocumented; its methodology
figure lists "feature interaction terms", IQR outlier treatment and SMOTE, none of which is in the
available code) and its training accuracy reached ~0.98 by epoch 16, while every model we build
from the published description sits at 0.83-0.88 (``diagnose_fit.txt``) and 0.861 +- 0.016 test
accuracy (``paper_protocol.md``).  This script runs the paper protocol (stratified 70/30 split,
MinMax on train, the authors' callbacks with the test split as validation data, checkpoint = best
test accuracy) once per (hypothesis, seed) and records test accuracy / AUC, the training accuracy
of the kept weights and the training loss at epoch 16:

* ``baseline``: the 11 label-coded features (as ``paper_protocol.py``);
* ``inter:A*B``: a 12th column A*B (codes / raw values, scaled with the rest) -- all 55 pairs;
* ``scale:none`` / ``scale:standard`` / ``scale:minmax_all``: no scaling, z-scores, MinMax fitted
  on all 918 rows (the leak of the authors' classical-model file);
* ``batch10``: mini-batches of 10 (defined, but commented out, in the authors' ``fit``);
* ``iqr``: training rows with a numeric value outside [Q1 - 1.5 IQR, Q3 + 1.5 IQR] dropped;
* ``smote``: the training split balanced with SMOTE (k = 5, written here: for a random minority
  row, a random point on the segment to one of its 5 nearest minority neighbours);
* ``iqr+smote``: both;
* ``control:noisy_label``: a positive control -- the 12th column is the label with 15 % of rows
  flipped; it shows what a strongly informative 12th input does to training accuracy.

Every run is appended to ``results/hypotheses.jsonl`` (resumable); ``results/hypotheses.md`` is the
summary.  Usage (2 single-threaded workers):

    OMP_NUM_THREADS=1 python experiments/kacq/hypotheses.py --seeds 0 --workers 2
    OMP_NUM_THREADS=1 python experiments/kacq/hypotheses.py --seeds 0 1 2 3 4 --only baseline 'inter:Oldpeak*ST_Slope'
    python experiments/kacq/hypotheses.py --summary-only
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

OUT = common.RESULTS / "hypotheses.jsonl"
NUMERIC = ["Age", "RestingBP", "Cholesterol", "MaxHR", "Oldpeak"]


def all_hypotheses() -> list[str]:
    from qnn.datasets.heart import HEART_FEATURES

    pairs = [f"inter:{a}*{b}" for a, b in itertools.combinations(HEART_FEATURES, 2)]
    return (["baseline", "scale:none", "scale:standard", "scale:minmax_all", "batch10", "iqr", "smote",
             "iqr+smote", "control:noisy_label"] + pairs)


def smote(X: np.ndarray, y: np.ndarray, rng: np.random.Generator, k: int = 5):
    """Balance two classes by SMOTE interpolation between minority rows and their k nearest minority rows."""
    counts = np.bincount(y, minlength=2)
    minority = int(np.argmin(counts))
    need = int(counts.max() - counts.min())
    Xm = X[y == minority]
    d = ((Xm[:, None, :] - Xm[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :k]
    i = rng.integers(0, len(Xm), need)
    j = nn[i, rng.integers(0, k, need)]
    new = Xm[i] + rng.random((need, 1)) * (Xm[j] - Xm[i])
    return np.vstack([X, new]), np.concatenate([y, np.full(need, minority, dtype=y.dtype)])


def make_data(hyp: str, seed: int):
    """(Xtr, Xte, ytr, yte, fit_kwargs) for one hypothesis on the split of ``seed``."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    from qnn.datasets.heart import HEART_FEATURES, paper_encode

    df = common.load_df()
    inter = tuple(hyp.split(":", 1)[1].split("*")) if hyp.startswith("inter:") else None
    X, y = paper_encode(df, inter)
    if hyp == "control:noisy_label":
        flip = np.random.default_rng(12345).random(len(y)) < 0.15
        X = np.column_stack([X, np.where(flip, 1 - y, y)])
    idx = np.arange(len(y))
    itr, ite = train_test_split(idx, test_size=0.3, random_state=seed, stratify=y)
    Xtr, Xte, ytr, yte = X[itr], X[ite], y[itr], y[ite]
    assert len(yte) == 276 and int((yte == 0).sum()) == 123
    fit_kw = {}
    if hyp.startswith("iqr"):
        cols = [HEART_FEATURES.index(c) for c in NUMERIC]
        q1, q3 = np.percentile(Xtr[:, cols], [25, 75], axis=0)
        lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
        keep = ((Xtr[:, cols] >= lo) & (Xtr[:, cols] <= hi)).all(axis=1)
        Xtr, ytr = Xtr[keep], ytr[keep]
    if hyp == "scale:none":
        pass
    elif hyp == "scale:standard":
        sc = StandardScaler().fit(Xtr)
        Xtr, Xte = sc.transform(Xtr), sc.transform(Xte)
    elif hyp == "scale:minmax_all":
        sc = MinMaxScaler().fit(X)
        Xtr, Xte = sc.transform(Xtr), sc.transform(Xte)
    else:
        sc = MinMaxScaler().fit(Xtr)
        Xtr, Xte = sc.transform(Xtr), sc.transform(Xte)
    if hyp.endswith("smote"):
        Xtr, ytr = smote(Xtr, ytr, np.random.default_rng(seed))
    if hyp == "batch10":
        fit_kw["batch_size"] = 10
    return Xtr, Xte, ytr, yte, fit_kw


def run_one(args) -> dict:
    hyp, seed = args
    import torch

    from qnn.models import KACQClassifier

    torch.set_num_threads(1)
    Xtr, Xte, ytr, yte, fit_kw = make_data(hyp, seed)
    clf = KACQClassifier(seed=seed, verbose=False, restore="val_accuracy", threads=1, **fit_kw)
    t0 = time.perf_counter()
    clf.fit(Xtr, ytr, X_val=Xte, y_val=yte)  # the authors' protocol: validation = test split
    fit_s = time.perf_counter() - t0
    m = common.metrics(yte, clf.predict_proba(Xte)[:, 1])
    h = clf.history_
    return {"hypothesis": hyp, "seed": seed, "n_train": int(len(ytr)), "n_features": int(Xtr.shape[1]),
            "accuracy": m["accuracy"], "roc_auc": m["roc_auc"],
            "train_accuracy": float(clf.score(Xtr, ytr)),
            "loss_epoch16": h[15]["loss"] if len(h) >= 16 else None,
            "best_epoch": clf.best_epoch_, "epochs_run": len(h), "fit_s": round(fit_s, 1)}


def load() -> list[dict]:
    return [json.loads(l) for l in OUT.read_text().splitlines() if l.strip()] if OUT.exists() else []


def summarize() -> str:
    recs = load()
    by: dict[str, list[dict]] = {}
    for r in recs:
        by.setdefault(r["hypothesis"], []).append(r)
    base = {r["seed"]: r for r in by.get("baseline", [])}
    lines = ["# Paper-protocol screen of data-pipeline hypotheses (KACQ-DCNN 4q/L=1)", "",
             "Test split as validation data and checkpoint on test accuracy, as the authors did (optimistic by "
             "construction). Generated by `python experiments/kacq/hypotheses.py --summary-only` from "
             "`hypotheses.jsonl`; sorted by number of seeds, then mean test accuracy. 'vs baseline' = mean "
             "difference in test accuracy on the same seeds. The paper: 0.9203 accuracy, 0.9477 AUC, "
             "training accuracy ~0.98.", "",
             "| hypothesis | seeds | test acc | test AUC | train acc (kept weights) | train loss @ epoch 16 | "
             "vs baseline |", "|---|---|---|---|---|---|---|"]

    rows = sorted(by.items(), key=lambda kv: (-len(kv[1]), -np.mean([r["accuracy"] for r in kv[1]])))
    for hyp, rs in rows:
        rs = sorted(rs, key=lambda r: r["seed"])
        d = [r["accuracy"] - base[r["seed"]]["accuracy"] for r in rs if r["seed"] in base]
        lines.append(f"| {hyp} | {','.join(str(r['seed']) for r in rs)} | {common.mean_sd([r['accuracy'] for r in rs])} | "
                     f"{common.mean_sd([r['roc_auc'] for r in rs])} | {common.mean_sd([r['train_accuracy'] for r in rs])} | "
                     f"{common.mean_sd([r['loss_epoch16'] for r in rs])} | "
                     f"{(f'{np.mean(d):+.4f}' if d and hyp != 'baseline' else '-')} |")
    n_hit = sum(1 for r in recs if r["accuracy"] >= 0.92 and r["roc_auc"] >= 0.947
                and not r["hypothesis"].startswith("control"))
    lines += ["", f"Runs (excluding the control) meeting acc >= 0.920 and AUC >= 0.947: {n_hit} of "
              f"{sum(1 for r in recs if not r['hypothesis'].startswith('control'))}."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--only", nargs="+", default=None, help="hypotheses to run (default: all)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--summary-only", action="store_true")
    a = ap.parse_args(argv)
    if not a.summary_only:
        known = all_hypotheses()
        hyps = a.only or known
        unknown = [h for h in hyps if h not in known]
        if unknown:
            ap.error(f"unknown hypotheses {unknown}; choose from {known}")
        done = {(r["hypothesis"], r["seed"]) for r in load()}
        todo = [(h, s) for s in a.seeds for h in hyps if (h, s) not in done]
        print(f"{len(todo)} runs to do ({len(done)} cached)", flush=True)

        def record(recs):
            for rec in recs:
                common.append_cache(rec, OUT)
                print(f"{rec['hypothesis']} seed {rec['seed']}: acc {rec['accuracy']:.4f} "
                      f"AUC {rec['roc_auc']:.4f} train {rec['train_accuracy']:.4f}", flush=True)

        if a.workers > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(a.workers) as pool:
                record(pool.imap_unordered(run_one, todo))
        else:
            record(map(run_one, todo))
    md = summarize()
    (common.RESULTS / "hypotheses.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
