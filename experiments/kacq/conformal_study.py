"""KACQ-DCNN conformal study (issue 4, item 6c): honest split conformal vs the paper's calibration.

For each of ``--splits`` random stratified train/calibration/test splits (60/20/20) of the
918-row heart-failure data (alphabetical label codes, MinMax fitted on the training rows):

1. fit the headline KACQ-DCNN (4 qubits, 1 layer, ``qnn.models.KACQClassifier``: validation for
   checkpointing taken from the training rows, never from calibration or test) and classical
   baselines (logistic regression, random forest) on the training rows;
2. calibrate ``qnn.conformal.SplitConformalClassifier`` on the calibration rows with LAC, APS and
   RAPS (randomised, the default, and deterministic), standard and Mondrian (class-conditional), at
   confidence levels 0.95 / 0.9 / 0.8 (alpha 0.05 / 0.1 / 0.2);
3. measure on the test rows: marginal and per-class coverage, mean set size, counts of set sizes
   0 / 1 / 2, plus accuracy, ROC-AUC and the expected calibration error (ECE, 10 bins) of the model;
4. reproduce the paper's flaw: LAC calibrated on the *training* rows the model was fitted on,
   evaluated on the same test rows, over a sweep of levels 0.50..0.98.

Outputs (``--out``, default ``experiments/kacq/results/conformal``): one JSON per (model, split)
in ``per_split.jsonl`` (one line per model and split; the run resumes from it), ``summary.json`` / ``summary.csv`` (mean, sd and
pooled coverage over splits, with a binomial lower bound), ``coverage.png`` and ``sweep.png``.

Commands (the results committed were made with these three; each adds per-split files, and the
summary covers every model found in ``per_split.jsonl``):
    python experiments/kacq/conformal_study.py                                   # kacq, logreg, rf x 10 splits
    python experiments/kacq/conformal_study.py --models logreg,rf --splits 100   # baselines x 100 splits
    python experiments/kacq/conformal_study.py --models kacq_overfit --splits 3  # the paper's over-fitted case
    python experiments/kacq/conformal_study.py --quick --out /tmp/cq   # smoke test, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # repo root, so `import qnn` works from a checkout

LEVELS = [0.95, 0.9, 0.8]
SWEEP = [round(x, 2) for x in np.arange(0.50, 0.96, 0.05)] + [0.98]
METHODS = [  # (name, conformity_score, randomized, mondrian)
    ("LAC", "lac", True, False),
    ("APS", "aps", True, False),
    ("APS-det", "aps", False, False),
    ("RAPS", "raps", True, False),
    ("RAPS-det", "raps", False, False),
    ("Mondrian-LAC", "lac", True, True),
    ("Mondrian-APS", "aps", True, True),
    ("Mondrian-RAPS", "raps", True, True),
]
CLASS_NAMES = ["Normal", "Heart Failure"]


# ----------------------------------------------------------------------------- data
def load_heart(data_dir=None):
    """(X, y, feature_names) with alphabetical label codes (the paper's encoding)."""
    from qnn.datasets.heart import HEART_FEATURES, load_heart_failure, paper_encode

    X, y = paper_encode(load_heart_failure(data_dir))
    return X, y, list(HEART_FEATURES)


def split(y, seed: int, fractions=(0.6, 0.2, 0.2)):
    """Stratified train / calibration / test indices."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    tr, rest = train_test_split(idx, train_size=fractions[0], stratify=y, random_state=seed)
    cal_share = fractions[1] / (fractions[1] + fractions[2])
    cal, te = train_test_split(rest, train_size=cal_share, stratify=y[rest], random_state=seed)
    return tr, cal, te


# ----------------------------------------------------------------------------- models
def make_model(name: str, seed: int, quick: bool, epochs: int | None):
    if name == "kacq":
        try:
            from qnn.models import KACQClassifier
        except ImportError:  # pragma: no cover - stand-in until the model lands
            from sklearn.neural_network import MLPClassifier

            return MLPClassifier((64, 32), max_iter=300, random_state=seed), "MLP stand-in (KACQClassifier missing)"
        ep = epochs if epochs is not None else (1 if quick else 100)
        return (KACQClassifier(epochs=ep, seed=seed, verbose=False, threads=1, n_layers=1, n_qubits=4),
                f"KACQClassifier(n_qubits=4, n_layers=1, epochs<={ep}, validation from training rows)")
    if name == "kacq_overfit":
        # the paper's situation: a model that fits its training rows (no early stopping, last epoch)
        from qnn.models import KACQClassifier

        ep = epochs if epochs is not None else (1 if quick else 100)
        return (KACQClassifier(epochs=ep, seed=seed, verbose=False, threads=1, n_layers=1, n_qubits=4,
                               patience=10**6, lr_patience=10**6, restore="last"),
                f"KACQClassifier(n_qubits=4, n_layers=1, {ep} epochs, no early stopping, last weights)")
    if name == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=1000), "LogisticRegression()"
    if name == "rf":
        from sklearn.ensemble import RandomForestClassifier

        return (RandomForestClassifier(n_estimators=50 if quick else 300, random_state=seed, n_jobs=1),
                "RandomForestClassifier(300 trees)")
    raise ValueError(f"unknown model {name!r}; choose from kacq, kacq_overfit, logreg, rf")


def ece(y, p1, n_bins: int = 10) -> float:
    """Expected calibration error of the predicted class (equal-width confidence bins)."""
    conf = np.maximum(p1, 1 - p1)
    pred = (p1 > 0.5).astype(int)
    bins = np.minimum((conf - 0.5) / 0.5 * n_bins, n_bins - 1).astype(int)
    e = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            e += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return float(e)


# ----------------------------------------------------------------------------- one run
def evaluate_sets(y, sets):
    from qnn.conformal import coverage_score, mean_set_size, per_class_coverage, set_size_counts

    return {
        "coverage": coverage_score(y, sets).tolist(),
        "coverage_per_class": per_class_coverage(y, sets).tolist(),  # (n_classes, n_levels)
        "mean_set_size": mean_set_size(sets).tolist(),
        "set_size_counts": set_size_counts(sets).tolist(),  # (3, n_levels): sizes 0, 1, 2
    }


class Memo:
    """Prefit wrapper that evaluates the model once per data array (same object -> cached)."""

    def __init__(self, model):
        self.model = model
        self.classes_ = np.asarray(model.classes_)
        self._cache = {}

    def predict_proba(self, X):
        hit = self._cache.get(id(X))
        if hit is None or hit[0] is not X:
            hit = (X, np.asarray(self.model.predict_proba(X), dtype=float))
            self._cache[id(X)] = hit
        return hit[1]

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(1)]


def run_one(model_name, seed, X, y, quick, epochs):
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.preprocessing import MinMaxScaler

    from qnn.conformal import SplitConformalClassifier

    tr, cal, te = split(y, seed)
    sc = MinMaxScaler().fit(X[tr])
    Xtr, Xcal, Xte = sc.transform(X[tr]), sc.transform(X[cal]), sc.transform(X[te])
    model, desc = make_model(model_name, seed, quick, epochs)
    t0 = time.perf_counter()
    model.fit(Xtr, y[tr])
    fit_s = time.perf_counter() - t0
    est = Memo(model)
    keys = {"train": Xtr, "cal": Xcal, "test": Xte}
    P = {k: est.predict_proba(v) for k, v in keys.items()}
    rec = {
        "model": model_name, "description": desc, "split_seed": seed,
        "n_train": len(tr), "n_cal": len(cal), "n_test": len(te),
        "n_test_per_class": np.bincount(y[te], minlength=2).tolist(),
        "n_cal_per_class": np.bincount(y[cal], minlength=2).tolist(),
        "fit_seconds": fit_s,
        "train_accuracy": float(accuracy_score(y[tr], P["train"].argmax(1))),
        "test_accuracy": float(accuracy_score(y[te], P["test"].argmax(1))),
        "test_roc_auc": float(roc_auc_score(y[te], P["test"][:, 1])),
        "test_ece": ece(y[te], P["test"][:, 1]),
        "levels": LEVELS, "methods": {},
    }
    if hasattr(model, "best_epoch_"):
        rec["best_epoch"] = int(model.best_epoch_)
        rec["epochs_run"] = len(model.history_)
    for name, score, randomized, mondrian in METHODS:
        cp = SplitConformalClassifier(
            est, confidence_level=LEVELS, conformity_score=score, randomized=randomized,
            mondrian=mondrian, random_state=seed, k_reg=1, lambda_reg=0.1,
        ).conformalize(keys["cal"], y[cal])
        _, sets = cp.predict_set(keys["test"])
        r = evaluate_sets(y[te], sets)
        r["quantiles"] = np.asarray(cp.quantiles_).tolist()
        rec["methods"][name] = r
    # the paper's flaw: calibrate on the rows the model was trained on
    flawed = SplitConformalClassifier(est, confidence_level=LEVELS).conformalize(keys["train"], y[tr])
    r = evaluate_sets(y[te], flawed.predict_set(keys["test"])[1])
    r["quantiles"] = flawed.quantiles_.tolist()
    rec["methods"]["LAC-on-train (paper)"] = r
    # sweep of levels, proper vs flawed (LAC)
    sweep = {}
    for tag, k_cal in (("proper", "cal"), ("train (paper)", "train")):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cp = SplitConformalClassifier(est, confidence_level=SWEEP).conformalize(
                keys[k_cal], y[tr] if k_cal == "train" else y[cal])
        s = cp.predict_set(keys["test"])[1]
        ev = evaluate_sets(y[te], s)
        sweep[tag] = {"levels": SWEEP, "coverage": ev["coverage"], "mean_set_size": ev["mean_set_size"],
                      "quantiles": cp.quantiles_.tolist(), "set_size_counts": ev["set_size_counts"]}
    rec["sweep"] = sweep
    return rec


# ----------------------------------------------------------------------------- summary
def summarise(records, out: Path):
    from scipy import stats

    models = sorted({r["model"] for r in records})
    summary = {"levels": LEVELS, "alphas": [round(1 - c, 2) for c in LEVELS], "models": {}}
    rows = []
    for m in models:
        recs = sorted([r for r in records if r["model"] == m], key=lambda r: r["split_seed"])
        S = {
            "description": recs[0]["description"],
            "n_splits": len(recs),
            "split_seeds": [r["split_seed"] for r in recs],
            "test_accuracy_mean": float(np.mean([r["test_accuracy"] for r in recs])),
            "test_accuracy_sd": float(np.std([r["test_accuracy"] for r in recs], ddof=1)) if len(recs) > 1 else None,
            "test_roc_auc_mean": float(np.mean([r["test_roc_auc"] for r in recs])),
            "train_accuracy_mean": float(np.mean([r["train_accuracy"] for r in recs])),
            "test_ece_mean": float(np.mean([r["test_ece"] for r in recs])),
            "methods": {},
        }
        n_test = sum(r["n_test"] for r in recs)
        for meth in recs[0]["methods"]:
            cov = np.array([r["methods"][meth]["coverage"] for r in recs])  # (splits, levels)
            pcc = np.array([r["methods"][meth]["coverage_per_class"] for r in recs])  # (splits, 2, L)
            size = np.array([r["methods"][meth]["mean_set_size"] for r in recs])
            counts = np.array([r["methods"][meth]["set_size_counts"] for r in recs]).sum(0)  # (3, L)
            nt = np.array([r["n_test"] for r in recs])[:, None]
            pooled = (cov * nt).sum(0) / nt.sum()
            ntc = np.array([r["n_test_per_class"] for r in recs])  # (splits, 2)
            pooled_pc = (pcc * ntc[:, :, None]).sum(0) / ntc.sum(0)[:, None]
            M = {
                "coverage_mean": cov.mean(0).tolist(),
                "coverage_sd": cov.std(0, ddof=1).tolist() if len(recs) > 1 else None,
                # target check with the split-to-split spread: mean >= level - 2 sd / sqrt(splits)
                "within_2se_of_target": [
                    bool(cov[:, j].mean() >= LEVELS[j] - 2 * cov[:, j].std(ddof=1) / math.sqrt(len(recs)))
                    for j in range(len(LEVELS))] if len(recs) > 1 else None,
                "coverage_min": cov.min(0).tolist(),
                "coverage_pooled": pooled.tolist(),
                # one-sided 95% binomial (Clopper-Pearson) lower bound of the pooled coverage
                "coverage_pooled_lower95": [
                    float(stats.beta.ppf(0.05, round(p * n_test), n_test - round(p * n_test) + 1))
                    for p in pooled
                ],
                "per_class_coverage_pooled": pooled_pc.tolist(),
                "mean_set_size": size.mean(0).tolist(),
                "set_size_counts_total": counts.tolist(),
                "n_test_total": int(n_test),
                "meets_target_pooled": [bool(pooled[j] >= LEVELS[j]) for j in range(len(LEVELS))],
            }
            S["methods"][meth] = M
            for j, lev in enumerate(LEVELS):
                rows.append({
                    "model": m, "method": meth, "alpha": round(1 - lev, 2), "confidence_level": lev,
                    "coverage_mean": M["coverage_mean"][j],
                    "coverage_sd": M["coverage_sd"][j] if M["coverage_sd"] else float("nan"),
                    "coverage_pooled": M["coverage_pooled"][j],
                    "coverage_pooled_lower95": M["coverage_pooled_lower95"][j],
                    "coverage_Normal": M["per_class_coverage_pooled"][0][j],
                    "coverage_HeartFailure": M["per_class_coverage_pooled"][1][j],
                    "mean_set_size": M["mean_set_size"][j],
                    "n_empty": counts[0, j], "n_single": counts[1, j], "n_both": counts[2, j],
                    "n_test_total": n_test,
                })
        sw = {}
        for tag in recs[0]["sweep"]:
            c = np.array([r["sweep"][tag]["coverage"] for r in recs])
            sw[tag] = {"levels": SWEEP, "coverage_mean": c.mean(0).tolist(),
                       "mean_set_size": np.mean([r["sweep"][tag]["mean_set_size"] for r in recs], 0).tolist(),
                       "quantile_mean": np.mean([r["sweep"][tag]["quantiles"] for r in recs], 0).tolist()}
        S["sweep"] = sw
        summary["models"][m] = S
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    import csv

    with open(out / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    return summary


def plot(summary, out: Path):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    models = list(summary["models"])
    meths = ["LAC", "APS", "RAPS", "APS-det", "Mondrian-LAC", "Mondrian-APS", "LAC-on-train (paper)"]
    fig, axes = plt.subplots(len(models), 3, figsize=(14, 3.3 * len(models)), squeeze=False)
    for i, m in enumerate(models):
        S = summary["models"][m]
        for j, lev in enumerate(summary["levels"]):
            ax = axes[i, j]
            xs = np.arange(len(meths))
            marg = [S["methods"][k]["coverage_pooled"][j] for k in meths]
            c0 = [S["methods"][k]["per_class_coverage_pooled"][0][j] for k in meths]
            c1 = [S["methods"][k]["per_class_coverage_pooled"][1][j] for k in meths]
            ax.bar(xs - 0.25, marg, 0.25, label="marginal")
            ax.bar(xs, c0, 0.25, label=CLASS_NAMES[0])
            ax.bar(xs + 0.25, c1, 0.25, label=CLASS_NAMES[1])
            ax.axhline(lev, color="k", ls="--", lw=1, label="1 - alpha")
            lo = max(0.0, min(lev - 0.3, min(marg + c0 + c1) - 0.08))
            ax.set_ylim(lo, 1.0)
            ax.set_xticks(xs, meths, rotation=35, ha="right", fontsize=7)
            sizes = [S["methods"][k]["mean_set_size"][j] for k in meths]
            for x, s in zip(xs, sizes):
                ax.text(x, lo + 0.01, f"{s:.2f}", ha="center", fontsize=6)
            ax.set_title(f"{m}: alpha = {1 - lev:.2f} (pooled over {S['n_splits']} splits)", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=7, ncol=4)
    fig.suptitle("Test coverage (bars) and mean set size (numbers) on the heart data", fontsize=10, x=0.3)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(out / "coverage.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for m in models:
        for tag, ls in (("proper", "-"), ("train (paper)", ":")):
            sw = summary["models"][m]["sweep"][tag]
            axes[0].plot(sw["levels"], sw["coverage_mean"], ls, marker=".", label=f"{m}, cal = {tag}")
            axes[1].plot(sw["levels"], sw["quantile_mean"], ls, marker=".", label=f"{m}, cal = {tag}")
    axes[0].plot([0.5, 1], [0.5, 1], "k--", lw=1, label="1 - alpha")
    axes[0].set_xlabel("1 - alpha")
    axes[0].set_ylabel("test coverage (mean over splits)")
    axes[0].set_title("LAC: calibrated on held-out rows vs on training rows")
    axes[0].legend(fontsize=6)
    axes[1].set_xlabel("1 - alpha")
    axes[1].set_ylabel("q_hat (LAC)")
    axes[1].set_title("LAC quantile")
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=110)
    plt.close(fig)


def _round(obj, digits: int = 5):
    """Round floats (recursively) so the per-split store stays small."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: _round(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round(v, digits) for v in obj]
    return obj


# ----------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 split, 1 KACQ epoch, few trees")
    ap.add_argument("--splits", type=int, default=None, help="number of random splits (default 10; quick 1)")
    ap.add_argument("--models", default="kacq,logreg,rf", help="kacq, kacq_overfit, logreg, rf")
    ap.add_argument("--epochs", type=int, default=None, help="KACQ max epochs (default 100; quick 2)")
    ap.add_argument("--out", default=str(HERE / "results" / "conformal"))
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--rerun", action="store_true", help="ignore per-split results already on disk")
    args = ap.parse_args(argv)
    import torch
    from tqdm.auto import tqdm

    torch.set_num_threads(1)
    n_splits = args.splits if args.splits is not None else (1 if args.quick else 10)
    if n_splits < 1:
        ap.error(f"--splits must be >= 1; got {n_splits}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / ("per_split_quick.jsonl" if args.quick else "per_split.jsonl")
    done = {}
    if store.exists():
        for line in store.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["model"], r["split_seed"])] = r
    if args.rerun:
        done = {k: v for k, v in done.items() if k[0] not in models}
    X, y, _ = load_heart(args.data_dir)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        make_model(m, 0, True, 1)  # validate names early
    jobs = [(m, s) for s in range(n_splits) for m in models]
    if args.rerun:  # rewrite the store without the models being rerun
        store.write_text("".join(json.dumps(r) + "\n" for r in done.values()))
    for m, s in tqdm(jobs, desc="conformal study", unit="fit"):
        if (m, s) in done:
            continue
        rec = _round(run_one(m, s, X, y, args.quick, args.epochs))
        rec["quick"] = bool(args.quick)
        with open(store, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        done[(m, s)] = rec
    # summarise every per-split result in the store (earlier invocations may have run other
    # models or more splits)
    summary = summarise(list(done.values()), out)
    summary["command"] = "python experiments/kacq/conformal_study.py " + " ".join(argv if argv is not None else sys.argv[1:])
    summary["quick"] = bool(args.quick)
    summary["store"] = store.name
    summary["commands_for_the_committed_results"] = [
        "python experiments/kacq/conformal_study.py",
        "python experiments/kacq/conformal_study.py --models logreg,rf --splits 100",
        "python experiments/kacq/conformal_study.py --models kacq_overfit --splits 3",
    ]
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(summary, out)
    for m, S in summary["models"].items():
        print(f"\n{m}: {S['description']}  acc {S['test_accuracy_mean']:.3f}  AUC {S['test_roc_auc_mean']:.3f}"
              f"  ECE {S['test_ece_mean']:.3f}  (train acc {S['train_accuracy_mean']:.3f}, {S['n_splits']} splits)")
        for meth, M in S["methods"].items():
            cells = "  ".join(
                f"a={1 - lev:.2f}: cov {M['coverage_pooled'][j]:.3f} [{M['per_class_coverage_pooled'][0][j]:.2f}/"
                f"{M['per_class_coverage_pooled'][1][j]:.2f}] size {M['mean_set_size'][j]:.2f}"
                for j, lev in enumerate(LEVELS))
            print(f"  {meth:22s} {cells}")
    return summary


if __name__ == "__main__":
    main()
