"""Summarise results/cv_results.jsonl into results/cv_table_<prep>.md (+ .csv).

Per model: folds done, mean ± sd of accuracy, ROC-AUC, macro F1, MCC; Nadeau–Bengio corrected
resampled t-test of accuracy against the reference model (default kacq_L1) on the folds both
have, Holm-adjusted over all comparisons; and the paper's numbers side by side (different
protocols: see the notes printed under the table).

Usage: python experiments/kacq/summarize_cv.py [--prep clean] [--ref kacq_L1]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# paper numbers: (test-split acc %, test AUC, "10f" acc mean±sd on the 184-row test split)
PAPER = {
    "CatBoost": ("90.76", ".9534", "86.43±6.62"), "MLP": ("86.96", ".9406", "85.94±7.72"),
    "LogReg": ("85.87", ".9267", "85.38±8.81"), "KNN": ("86.41", ".9171", "84.33±9.52"),
    "LDA": ("84.78", ".9243", "84.30±6.08"), "RandomForest": ("89.67", ".9525", "84.27±6.14"),
    "QDA": ("83.70", ".9209", "84.27±7.69"), "HistGB": ("87.50", ".9409", "83.80±7.54"),
    "LightGBM": ("89.13", ".9503", "83.77±8.36"), "XGBoost": ("86.96", ".9372", "83.22±7.39"),
    "GradBoost": ("91.30", ".9463", "82.19±10.86"), "AdaBoost": ("86.96", ".9339", "82.11±6.85"),
    "Bagging": ("87.50", ".9257", "81.55±7.67"), "BernoulliNB": ("80.98", ".8970", "80.58±9.81"),
    "DecisionTree": ("77.17", ".7702", "71.29±8.81"), "Dummy": ("55.43", ".5000", "55.44±1.67"),
    "kacq_L1": ("92.03", ".9477", "-"), "BiLSTMKANnet": ("88.04", ".9503", "-"),
    "QDenseKANnet": ("88.04", ".9353", "-"), "QCKANnet_L1": ("83.33", ".9057", "-"),
    "QCKANnet_L2": ("82.97", ".9101", "-"), "QCKANnet_L3": ("81.88", ".9070", "-"),
    "QCKANnet_L4": ("83.33", ".9076", "-"),
    "TTN_L1": ("59.42", "-", "-"), "TTN_L2": ("40.58", "-", "-"), "TTN_L3": ("59.42", "-", "-"),
    "TTN_L4": ("59.42", "-", "-"), "MPS_L1": ("40.58", "-", "-"), "MPS_L2": ("40.58", "-", "-"),
    "MPS_L3": ("40.58", "-", "-"), "MPS_L4": ("59.78", ".5045", "-"), "MERA_L1": ("58.70", ".5095", "-"),
    "MERA_L2": ("40.58", "-", "-"), "MERA_L3": ("59.42", "-", "-"), "MERA_L4": ("40.58", "-", "-"),
}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--prep", default="clean")
    ap.add_argument("--ref", default="kacq_L1")
    ap.add_argument("--repeats", type=int, default=None, help="use only repeats 0..N-1 (default: all cached)")
    a = ap.parse_args(argv)
    recs = [r for r in common.load_cache().values()
            if r["prep"] == a.prep and (a.repeats is None or r["repeat"] < a.repeats)]
    ok = [r for r in recs if "error" not in r]
    failed = [r for r in recs if "error" in r]
    by = {}
    for r in ok:
        by.setdefault(r["model"], {})[(r["repeat"], r["fold"])] = r
    ref = by.get(a.ref, {})
    rows = []
    for m, d in by.items():
        keys = sorted(d)
        acc = np.array([d[k]["accuracy"] for k in keys])
        row = {"model": m, "n": len(keys),
               "repeats": len({k[0] for k in keys})}
        for met in ("accuracy", "roc_auc", "f1_macro", "mcc"):
            v = np.array([d[k][met] for k in keys], float)
            row[met] = (np.nanmean(v), np.nanstd(v, ddof=1) if len(v) > 1 else float("nan"))
        row["fit_s"] = float(np.mean([d[k].get("fit_s", 0) for k in keys]))
        common_keys = [k for k in keys if k in ref]
        if m != a.ref and len(common_keys) >= 5:  # fewer pairs: no test reported
            r0 = d[common_keys[0]]
            t, p = common.nadeau_bengio([ref[k]["accuracy"] for k in common_keys],
                                        [d[k]["accuracy"] for k in common_keys], r0["n_train"], r0["n_test"])
            row["t"], row["p"], row["n_pairs"] = t, p, len(common_keys)
        else:
            row["t"] = row["p"] = float("nan")
            row["n_pairs"] = 0
        rows.append(row)
    adj = common.holm([r["p"] for r in rows])
    for r, q in zip(rows, adj):
        r["p_holm"] = q
    n_max = max((r["n"] for r in rows), default=0)
    rows.sort(key=lambda r: (r["n"] < n_max, -r["accuracy"][0]))  # complete rows first, then partial ones

    def ms(x, pct=True):
        m, s = x
        f, d = (100, 2) if pct else (1, 3)
        return f"{m * f:.{d}f} ± {s * f:.{d}f}" if not math.isnan(s) else f"{m * f:.{d}f}"

    lines = [f"# Clean protocol (prep={a.prep}, repeats={'all' if a.repeats is None else a.repeats}): repeated stratified 10-fold CV, identical folds "
             f"(RepeatedStratifiedKFold seed {common.FOLD_SEED})", "",
             "**Partial if folds < 10 × repeats; partial rows are listed after the complete ones and are not "
             "comparable with them (different folds).** t / p: Nadeau–Bengio corrected resampled t-test of accuracy, "
             f"`{a.ref}` minus model, on the folds both have (df = pairs − 1; only with >= 5 pairs); p_holm: Holm over all rows. "
             "Paper columns use different protocols (paper acc/AUC: single test split, KACQ selected on it; "
             "classical '10f' was computed on the 184-row test split) and are shown only for orientation.", "",
             "| model | folds | acc % | ROC-AUC | macro F1 | MCC | t vs ref | p | p_holm | fit s | paper acc % | paper AUC | paper 10f acc |",
             "|---" * 13 + "|"]
    for r in rows:
        pa = PAPER.get(r["model"], ("-", "-", "-"))
        lines.append(
            f"| {r['model']} | {r['n']} | {ms(r['accuracy'])} | {ms(r['roc_auc'], False)} | {ms(r['f1_macro'], False)} | "
            f"{ms(r['mcc'], False)} | {r['t']:.2f} | {r['p']:.3g} | {r['p_holm']:.3g} | {r['fit_s']:.1f} | "
            f"{pa[0]} | {pa[1]} | {pa[2]} |".replace("nan", "-"))
    total_s = sum(r.get("fit_s", 0) for r in ok)
    lines += ["", f"Compute: {len(ok)} fits, recorded fit times (`fit_s`, wall, one fit per process) sum to "
                  f"{total_s:.0f} s = {total_s / 3600:.2f} h on one core."]
    if failed:
        lines += ["", f"Failed fits ({len(failed)}): " + ", ".join(sorted({f['model'] for f in failed}))]
    missing = [m for m in PAPER if m not in by]
    if missing:
        lines += ["", "Not run yet under this prep: " + ", ".join(missing)]
    md = "\n".join(lines) + "\n"
    out = common.RESULTS / (f"cv_table_{a.prep}.md" if a.repeats is None else f"cv_table_{a.prep}_r{a.repeats}.md")
    out.write_text(md)
    print(md)


if __name__ == "__main__":
    main()
