"""The paper's protocol for the headline KACQ-DCNN (4 qubits, L=1), reproduced as the authors ran it.

* 918-row heart.csv, alphabetical label codes, stratified 70/30 split (test n=276: 123/153),
  MinMax fitted on the 642 training rows;
* the test split is passed as validation data, so checkpointing (best val accuracy), early
  stopping and the LR schedule all look at the test set -- the reported numbers are therefore
  *selected on the test set* (an optimistic protocol, kept only to compare with the paper);
* 11 input features (the paper's Keras model had an undocumented 12th column).

Every seed is run and recorded (split seed = model seed = s); results/paper_protocol.jsonl holds
one line per seed and is resumed on rerun; results/paper_protocol.md is the summary table.

Usage (from the repo root):
    OMP_NUM_THREADS=1 python experiments/kacq/paper_protocol.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

OUT = common.RESULTS / "paper_protocol.jsonl"
PAPER = {"accuracy": 0.9203, "roc_auc": 0.9477, "precision_macro": 0.9200, "recall_macro": 0.9185,
         "f1_macro": 0.9192, "mcc": 0.8385, "kappa": 0.8384}


def run_seed(seed: int, n_layers: int, threads: int | None, interaction=None, extra=None,
             verbose: bool = True) -> dict:
    """One paper-protocol fit; ``interaction`` / ``extra`` add columns (see ``paper_preprocess``)."""
    from qnn.datasets.heart import paper_preprocess
    from qnn.models import KACQClassifier

    df = common.load_df()
    Xtr, Xte, ytr, yte, _ = paper_preprocess(df, test_size=0.3, random_state=seed, stratify=True,
                                             interaction=interaction, extra=extra)
    assert len(yte) == 276 and int((yte == 0).sum()) == 123
    clf = KACQClassifier(seed=seed, n_layers=n_layers, verbose=verbose, restore="val_accuracy", threads=threads)
    t0 = time.perf_counter()
    clf.fit(Xtr, ytr, X_val=Xte, y_val=yte)  # the authors' protocol: validation = test split
    fit_s = time.perf_counter() - t0
    proba_te = clf.predict_proba(Xte)[:, 1]
    proba_tr = clf.predict_proba(Xtr)[:, 1]
    rec = {"seed": seed, "n_layers": n_layers, "n_features": Xtr.shape[1],
           "interaction": "*".join(interaction) if interaction else None, **common.metrics(yte, proba_te),
           "train_accuracy": common.metrics(ytr, proba_tr)["accuracy"],
           "train_roc_auc": common.metrics(ytr, proba_tr)["roc_auc"],
           "best_epoch": clf.best_epoch_, "epochs_run": len(clf.history_), "fit_s": round(fit_s, 1),
           "history": clf.history_}
    return rec


def summarize() -> str:
    recs = [json.loads(l) for l in OUT.read_text().splitlines() if l.strip()] if OUT.exists() else []
    if not recs:
        return "no results yet"
    keys = ["accuracy", "roc_auc", "precision_macro", "recall_macro", "f1_macro", "mcc", "kappa"]
    lines = ["# KACQ-DCNN 4q/L, paper protocol (checkpoint selected on the test split, as the authors did)", "",
             "Split: stratified 70/30 with random_state = seed (test n=276, 123/153); model seed = seed; "
             "11 features; MinMax on train. **Every seed run is listed.**", "",
             "| seed | L | acc | AUC | macro P | macro R | macro F1 | MCC | kappa | TN FP FN TP | best epoch / run | "
             "train acc | fit s |", "|---" * 13 + "|"]
    for r in sorted(recs, key=lambda r: (r["n_layers"], r.get("interaction") or "", r["seed"])):
        c = r["confusion"]
        lines.append(f"| {r['seed']} | {r['n_layers']}{' +' + r['interaction'] if r.get('interaction') else ''} | " + " | ".join(f"{r[k]:.4f}" for k in keys)
                     + f" | {c['tn']} {c['fp']} {c['fn']} {c['tp']} | {r['best_epoch']} / {r['epochs_run']} | "
                     f"{r['train_accuracy']:.4f} | {r['fit_s']} |")
    for L in sorted({r["n_layers"] for r in recs}):
        rs = [r for r in recs if r["n_layers"] == L]
        lines.append(f"| mean ± sd (L={L}, n={len(rs)}) | | " + " | ".join(
            f"{np.mean([r[k] for r in rs]):.4f} ± {np.std([r[k] for r in rs], ddof=1) if len(rs) > 1 else 0:.4f}"
            for k in keys) + " | | | | |")
    lines.append("| paper (Jahin et al.) | 1 | " + " | ".join(f"{PAPER[k]:.4f}" for k in keys)
                 + " | 111 12 10 143 | 6 or 11 / 16 | ≈0.98 | |")
    n_hit = sum(1 for r in recs if r["n_layers"] == 1 and r["accuracy"] >= 0.92 and r["roc_auc"] >= 0.947)
    n1 = sum(1 for r in recs if r["n_layers"] == 1)
    lines += ["", f"Seeds meeting the target (acc >= 0.920 and AUC >= 0.947), L=1: {n_hit} of {n1}.",
              "Caveat: the selection on the test split inflates accuracy; see cv_table.md for the clean protocol."]
    return "\n".join(lines) + "\n"


def classical_reference(seeds) -> str:
    """Test accuracy of default CatBoost / LogReg / RandomForest on the same paper-protocol splits."""
    from catboost import CatBoostClassifier
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from qnn.datasets.heart import paper_preprocess

    df = common.load_df()
    out = ["# Test accuracy of default classical models on the paper-protocol splits (stratified 70/30, "
           "random_state=seed, label codes + MinMax on train)",
           "# command: python experiments/kacq/paper_protocol.py --classical-reference --seeds ...",
           "seed  CatBoost  LogReg  RandomForest"]
    for s in seeds:
        Xtr, Xte, ytr, yte, _ = paper_preprocess(df, test_size=0.3, random_state=s)
        accs = [float(m.fit(Xtr, ytr).score(Xte, yte)) for m in (
            CatBoostClassifier(verbose=0, random_seed=0, thread_count=1), LogisticRegression(),
            RandomForestClassifier(random_state=0))]
        out.append(f"{s:>4}  {accs[0]:8.4f}  {accs[1]:6.4f}  {accs[2]:12.4f}")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n-layers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--interaction", default=None, help="12th column, e.g. Age*MaxHR (default: 11 features)")
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--classical-reference", action="store_true",
                    help="only score default CatBoost/LogReg/RF on the same splits")
    a = ap.parse_args(argv)
    if a.classical_reference:
        txt = classical_reference(a.seeds)
        (common.RESULTS / "paper_split_classical_reference.txt").write_text(txt)
        print(txt)
        return
    if not a.summary_only:
        done = set()
        if OUT.exists():
            done = {(r["seed"], r["n_layers"], r.get("interaction")) for r in
                    (json.loads(l) for l in OUT.read_text().splitlines() if l.strip())}
        inter = tuple(a.interaction.split("*")) if a.interaction else None
        for s in a.seeds:
            if (s, a.n_layers, a.interaction) in done:
                print(f"seed {s}: cached")
                continue
            rec = run_seed(s, a.n_layers, a.threads, inter)
            print(f"seed {s}: acc {rec['accuracy']:.4f} AUC {rec['roc_auc']:.4f} best epoch {rec['best_epoch']}",
                  flush=True)
            common.append_cache(rec, OUT)
            (common.RESULTS / "paper_protocol.md").write_text(summarize())
    md = summarize()
    (common.RESULTS / "paper_protocol.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
