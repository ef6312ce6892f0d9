"""KACQ-DCNN explanations (issue 4, item 6d): SHAP and LIME for the headline model, whole test set.

* Data: the 918-row heart-failure set, alphabetical label codes, stratified 70/30 split
  (``--split-seed``, 276 test rows), MinMax fitted on the training rows.
* Model: the headline KACQ-DCNN (4 qubits, 1 layer, 11 features; ``qnn.models.KACQClassifier``,
  checkpoint chosen on validation rows taken from the training split -- not on the test split).
  The model explained is the one that is evaluated, not a separate side model.
* Kernel SHAP (``qnn.explain.kernel_shap``): ``shap.kmeans`` background of ``--n-background``
  centres from the training rows, ``--nsamples`` coalitions per test row, every test row.
* Gradient SHAP (expected gradients through torch autograd on the torch engine), every test row.
* LIME (``qnn.explain.lime_explain``), ``random_state=0``, every test row, in two variants:
  ``quartile`` (the paper's: every column discretised into training quartiles) and ``categorical``
  (the label-coded nominal/binary columns perturbed as categories with training frequencies; with
  quartiles a binary column such as Sex, 79 % one value, gets identical quartiles and weight 0);
  stability across seeds (``qnn.explain.lime_stability``) on the first ``--stability-rows``.
* Global rankings (mean |SHAP| / mean |LIME weight| for P(Heart Failure)) compared with the
  paper's order ST_Slope > ChestPainType > FastingBS > ExerciseAngina > Sex > Age > Oldpeak >
  MaxHR > RestingECG > Cholesterol > RestingBP (Spearman, Kendall, top-3 overlap).

Resumable: the trained model and every chunk of explanations are cached under ``--cache-dir``
(default ``~/.cache/qnn/kacq_explain``; nothing large is written into the repository).
Outputs (``--out``, default ``experiments/kacq/results/explain``): ``summary.json``,
``importance.csv`` and PNG plots.

Commands:
    python experiments/kacq/explain_study.py            # full run, ~10-15 min on 2 cores
    python experiments/kacq/explain_study.py --quick --out /tmp/xq --cache-dir /tmp/xq_cache
"""

from __future__ import annotations

import argparse
import csv
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # repo root, so `import qnn` works from a checkout

PAPER_RANKING = [
    "ST_Slope", "ChestPainType", "FastingBS", "ExerciseAngina", "Sex", "Age", "Oldpeak", "MaxHR",
    "RestingECG", "Cholesterol", "RestingBP",
]
CLASS_NAMES = ["Normal", "Heart Failure"]
# label-coded nominal / binary columns: LIME's categorical mode samples them from the training
# frequencies instead of discretising them into quartiles
NOMINAL = ["Sex", "ChestPainType", "FastingBS", "RestingECG", "ExerciseAngina", "ST_Slope"]


def load_heart(data_dir=None):
    """(X, y, feature_names) with alphabetical label codes (the paper's encoding)."""
    from qnn.datasets.heart import HEART_FEATURES, load_heart_failure, paper_encode

    X, y = paper_encode(load_heart_failure(data_dir))
    return X, y, list(HEART_FEATURES)


def train_model(Xtr, ytr, args, cache: Path):
    """The headline model, cached by its settings (pickle of the fitted estimator)."""
    from qnn.models import KACQClassifier

    tag = f"kacq_seed{args.model_seed}_split{args.split_seed}_ep{args.epochs}_n{len(Xtr)}.pkl"
    f = cache / tag
    if f.exists():
        with open(f, "rb") as fh:
            clf = pickle.load(fh)
        print(f"loaded the trained model from {f}")
        return clf, _timings(cache).get(tag)
    clf = KACQClassifier(epochs=args.epochs, seed=args.model_seed, verbose=not args.quick, n_qubits=4, n_layers=1)
    t0 = time.perf_counter()
    clf.fit(Xtr, ytr)
    dt = time.perf_counter() - t0
    _add_timing(cache, tag, dt)
    try:
        with open(f, "wb") as fh:
            pickle.dump(clf, fh)
    except Exception as e:  # noqa: BLE001 - caching is an optimisation only
        print(f"(could not cache the model: {e})")
        if f.exists():
            f.unlink()
    return clf, dt


def _timings(cache: Path) -> dict:
    f = cache / "timings.json"
    return json.loads(f.read_text()) if f.exists() else {}


def _add_timing(cache: Path, key: str, seconds: float) -> None:
    t = _timings(cache)
    t[key] = t.get(key, 0.0) + seconds
    (cache / "timings.json").write_text(json.dumps(t, indent=1))


def chunked(name, fn, n_rows, chunk, cache: Path, desc):
    """Run ``fn(lo, hi) -> dict of arrays`` over row chunks, caching each chunk as .npz.

    Returns the concatenated arrays and the compute seconds spent on them, summed over the
    invocations that computed the chunks (kept in ``cache/timings.json``).
    """
    from tqdm.auto import tqdm

    parts = []
    for lo in tqdm(range(0, n_rows, chunk), desc=desc, unit="chunk"):
        hi = min(lo + chunk, n_rows)
        f = cache / f"{name}_{lo}_{hi}.npz"
        if f.exists():
            parts.append(dict(np.load(f, allow_pickle=False)))
            continue
        t0 = time.perf_counter()
        out = fn(lo, hi)
        np.savez(f, **out)
        _add_timing(cache, name, time.perf_counter() - t0)
        parts.append(out)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, _timings(cache).get(name)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, 6 rows, tiny budgets")
    ap.add_argument("--out", default=str(HERE / "results" / "explain"))
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "qnn" / "kacq_explain"))
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--model-seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="KACQ max epochs (default 100; quick 2)")
    ap.add_argument("--n-background", type=int, default=None, help="k-means centres (default 8)")
    ap.add_argument("--nsamples", type=int, default=None, help="Kernel SHAP coalitions per row (default 200)")
    ap.add_argument("--lime-samples", type=int, default=None, help="LIME perturbations per row (default 1000)")
    ap.add_argument("--grad-samples", type=int, default=None,
                    help="Gradient SHAP samples per row (default 50; 0 skips Gradient SHAP)")
    ap.add_argument("--stability-rows", type=int, default=None, help="rows for the LIME seed study (default 20)")
    ap.add_argument("--stability-seeds", default="0,1,2")
    ap.add_argument("--lime-variants", default="quartile,categorical",
                    help="quartile (the paper's LIME: every feature discretised into quartiles) and/or "
                         "categorical (label-coded nominal features sampled as categories)")
    ap.add_argument("--rows", type=int, default=None, help="explain only the first N test rows (default: all)")
    ap.add_argument("--chunk", type=int, default=23, help="rows per cached chunk")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-rows", type=int, default=None,
                    help="train on the first N training rows only (quick default 120)")
    args = ap.parse_args(argv)
    q = args.quick
    args.epochs = args.epochs if args.epochs is not None else (1 if q else 100)
    nbg = args.n_background if args.n_background is not None else (2 if q else 8)
    nsamples = args.nsamples if args.nsamples is not None else (8 if q else 200)
    lime_n = args.lime_samples if args.lime_samples is not None else (40 if q else 1000)
    grad_n = args.grad_samples if args.grad_samples is not None else (4 if q else 50)
    stab_rows = args.stability_rows if args.stability_rows is not None else (2 if q else 20)
    seeds = [int(s) for s in args.stability_seeds.split(",")]
    lime_variants = {v.strip() for v in args.lime_variants.split(",") if v.strip()}
    if not lime_variants <= {"quartile", "categorical"} or "quartile" not in lime_variants:
        ap.error(f"--lime-variants must include 'quartile' and may add 'categorical'; got {args.lime_variants!r}")
    if q and args.stability_seeds == "0,1,2":
        seeds = [0, 1]
    for name, v in (("--n-background", nbg), ("--nsamples", nsamples), ("--lime-samples", lime_n),
                    ("--grad-samples", grad_n), ("--stability-rows", stab_rows), ("--chunk", args.chunk)):
        if v < (0 if name == "--grad-samples" else 1):
            ap.error(f"{name} must be >= 1; got {v}")

    import torch
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler

    from qnn.explain import (as_predict_proba, gradient_shap, kernel_shap, kernel_shap_evaluations,
                             lime_explain, lime_stability, ranking_overlap, ShapResult)

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)

    X, y, names = load_heart(args.data_dir)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=args.split_seed)
    sc = MinMaxScaler().fit(Xtr)
    Xtr, Xte = sc.transform(Xtr), sc.transform(Xte)
    n_tr = args.train_rows if args.train_rows is not None else (120 if q else None)
    if n_tr is not None:
        Xtr, ytr = Xtr[:n_tr], ytr[:n_tr]
    if args.rows is not None or q:
        n = args.rows if args.rows is not None else 4
        Xte, yte = Xte[:n], yte[:n]
    n = len(Xte)
    model, fit_s = train_model(Xtr, ytr, args, cache)
    p_test = model.predict_proba(Xte)
    perf = {"test_accuracy": float(accuracy_score(yte, p_test.argmax(1))),
            "test_roc_auc": float(roc_auc_score(yte, p_test[:, 1])) if len(set(yte)) == 2 else None,
            "fit_seconds": fit_s, "n_train": int(len(Xtr)), "n_test": int(n)}
    print(f"model: {model!r}\n  test accuracy {perf['test_accuracy']:.4f}  ROC-AUC {perf['test_roc_auc']}")

    # evaluation budget, printed before anything is spent
    f = as_predict_proba(model)
    t0 = time.perf_counter()
    f(np.repeat(Xte[:1], 2048, axis=0))
    rate = 2048 / (time.perf_counter() - t0)
    b_kernel = kernel_shap_evaluations(n, Xte.shape[1], nsamples, nbg)
    b_lime = n * lime_n
    b_stab = len(seeds) * min(stab_rows, n) * lime_n
    b_grad = n * grad_n
    b_lime *= len(lime_variants)
    b_stab *= len(lime_variants)
    total = b_kernel + b_lime + b_stab
    print(f"evaluation budget: Kernel SHAP {b_kernel:,} + LIME {b_lime:,} + LIME stability {b_stab:,} = "
          f"{total:,} model rows (+ Gradient SHAP {b_grad:,} forward/backward rows); measured "
          f"{rate:,.0f} rows/s -> about {total / rate / 60:.1f} min", flush=True)

    # ------------------------------------------------------------------ Kernel SHAP
    def ks_chunk(lo, hi):
        r = kernel_shap(model, Xtr, Xte[lo:hi], n_background=nbg, nsamples=nsamples, feature_names=names,
                        seed=lo, verbose=False)
        return {"values": r.values, "base": r.base_values, "pred": r.predictions,
                "n_eval": np.array([r.n_evaluations])}

    t0 = time.perf_counter()
    tag = f"ks_tr{len(Xtr)}_s{args.split_seed}_m{args.model_seed}_e{args.epochs}_bg{nbg}_ns{nsamples}"
    ks, ks_s = chunked(tag, ks_chunk, n, args.chunk, cache, "Kernel SHAP")
    kres = ShapResult(values=ks["values"], base_values=ks["base"], data=Xte, predictions=ks["pred"],
                      feature_names=names, method="kernel", n_evaluations=int(ks["n_eval"].sum()),
                      info={"nsamples": nsamples, "n_background": nbg, "background": "shap.kmeans(train)"})

    # ------------------------------------------------------------------ Gradient SHAP
    t0 = time.perf_counter()
    gtag = f"gs_tr{len(Xtr)}_s{args.split_seed}_m{args.model_seed}_e{args.epochs}_ns{grad_n}"

    def gs_chunk(lo, hi):
        r = gradient_shap(model, Xtr, Xte[lo:hi], n_background=50, nsamples=grad_n, feature_names=names,
                          seed=lo, verbose=False)
        return {"values": r.values, "base": r.base_values, "pred": r.predictions}

    gres, gs_s = None, None
    if grad_n > 0:
        gs, gs_s = chunked(gtag, gs_chunk, n, args.chunk, cache, "Gradient SHAP")
        gres = ShapResult(values=gs["values"], base_values=gs["base"], data=Xte, predictions=gs["pred"],
                          feature_names=names, method="gradient", n_evaluations=b_grad,
                          info={"nsamples": grad_n, "n_background": 50})

    # ------------------------------------------------------------------ LIME
    from qnn.explain import LimeResult

    cat_idx = [names.index(c) for c in NOMINAL if c in names]

    def run_lime(variant):
        cats = cat_idx if variant == "categorical" else None
        suffix = "" if variant == "quartile" else "_cat"
        t0 = time.perf_counter()
        ltag = f"lime_tr{len(Xtr)}_s{args.split_seed}_m{args.model_seed}_e{args.epochs}_n{lime_n}_rs0{suffix}"

        def lime_chunk(lo, hi):
            r = lime_explain(model, Xtr, Xte[lo:hi], num_samples=lime_n, class_names=CLASS_NAMES,
                             feature_names=names, categorical_features=cats, random_state=0, verbose=False)
            return {"weights": r.weights, "intercepts": r.intercepts, "scores": r.scores,
                    "local": r.local_predictions,
                    "conds": np.array([json.dumps(c) for c in r.conditions])}

        lm, secs = chunked(ltag, lime_chunk, n, args.chunk, cache, f"LIME ({variant})")
        res = LimeResult(weights=lm["weights"], conditions=[json.loads(c) for c in lm["conds"]],
                         intercepts=lm["intercepts"], local_predictions=lm["local"], scores=lm["scores"],
                         predictions=p_test, data=Xte, class_index=1, class_names=CLASS_NAMES,
                         feature_names=names, random_state=0, n_evaluations=b_lime)
        t0 = time.perf_counter()
        stf = cache / (f"stab_tr{len(Xtr)}_s{args.split_seed}_m{args.model_seed}_e{args.epochs}_n{lime_n}"
                       f"_r{stab_rows}_{'-'.join(map(str, seeds))}{suffix}.json")
        if stf.exists():
            stab = json.loads(stf.read_text())
        else:
            st = lime_stability(model, Xtr, Xte[:stab_rows], seeds=seeds, top_k=3, num_samples=lime_n,
                                class_names=CLASS_NAMES, feature_names=names, categorical_features=cats)
            stab = st.to_dict() | {"n_rows": int(min(stab_rows, n)),
                                   "per_seed_ranking": [r.ranking() for r in st.results],
                                   "seconds": time.perf_counter() - t0}
            stf.write_text(json.dumps(stab))
        info = {"discretizer": "quartile", "categorical_features": [names[i] for i in cats] if cats else []}
        return res, secs, stab, info

    lres, lime_s, stab, linfo = run_lime("quartile")
    lres_c, lime_c_s, stab_c, linfo_c = (run_lime("categorical") if "categorical" in lime_variants
                                        else (None, 0.0, None, None))

    # ------------------------------------------------------------------ outputs
    comp = {}
    for tag_, res in (("kernel_shap", kres), ("gradient_shap", gres), ("lime", lres),
                      ("lime_categorical", lres_c)):
        if res is None:
            continue
        rk = res.ranking() if tag_.startswith("lime") else res.ranking(1)
        comp[tag_] = {"ranking": rk, "vs_paper": ranking_overlap(rk, PAPER_RANKING, k=3)}
    comp["kernel_vs_lime"] = ranking_overlap(kres.ranking(1), lres.ranking(), k=3)
    if gres is not None:
        comp["kernel_vs_gradient"] = ranking_overlap(kres.ranking(1), gres.ranking(1), k=3)
    summary = {
        "command": "python experiments/kacq/explain_study.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": bool(q),
        "data": {"split": "stratified 70/30", "split_seed": args.split_seed, "features": names,
                 "preprocessing": "alphabetical label codes, MinMax fitted on training rows"},
        "model": {"repr": repr(model), **perf},
        "paper_ranking": PAPER_RANKING,
        "kernel_shap": kres.to_dict(1) | {"seconds": ks_s},
        "gradient_shap": (gres.to_dict(1) | {"seconds": gs_s, "additivity_error": gres.additivity_error(1)})
        if gres is not None else None,
        "lime": lres.to_dict() | {"seconds": lime_s} | linfo,
        "lime_stability": stab,
        "lime_categorical": (lres_c.to_dict() | {"seconds": lime_c_s} | linfo_c) if lres_c is not None else None,
        "lime_categorical_stability": stab_c,
        "ranking_comparison": comp,
        "measured_rows_per_second": rate,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    with open(out / "importance.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["feature", "paper_rank", "kernel_shap_mean_abs", "kernel_rank", "gradient_shap_mean_abs",
                    "gradient_rank", "lime_mean_abs", "lime_rank", "lime_categorical_mean_abs",
                    "lime_categorical_rank"])
        gk, gl = kres.global_importance(1), lres.global_importance()
        gg = gres.global_importance(1) if gres is not None else {}
        gc = lres_c.global_importance() if lres_c is not None else {}
        for feat in PAPER_RANKING:
            w.writerow([feat, PAPER_RANKING.index(feat) + 1, f"{gk[feat]:.5f}", list(gk).index(feat) + 1,
                        f"{gg[feat]:.5f}" if gg else "", list(gg).index(feat) + 1 if gg else "",
                        f"{gl[feat]:.5f}", list(gl).index(feat) + 1,
                        f"{gc[feat]:.5f}" if gc else "", list(gc).index(feat) + 1 if gc else ""])

    kres.plot_bar(out / "shap_bar.png", class_index=1)
    kres.plot_beeswarm(out / "shap_beeswarm.png", class_index=1)
    if gres is not None:
        gres.plot_bar(out / "gradient_shap_bar.png", class_index=1)
    i_hf = int(np.argmax(p_test[:, 1]))
    i_no = int(np.argmin(p_test[:, 1]))
    kres.plot_waterfall(out / "shap_waterfall_hf.png", index=i_hf, class_index=1)
    kres.plot_waterfall(out / "shap_waterfall_normal.png", index=i_no, class_index=1)
    lres.plot(out / "lime_hf.png", index=i_hf)
    lres.plot(out / "lime_normal.png", index=i_no)
    lres.plot_global(out / "lime_global.png")
    if lres_c is not None:
        lres_c.plot(out / "lime_categorical_hf.png", index=i_hf)
        lres_c.plot(out / "lime_categorical_normal.png", index=i_no)
        lres_c.plot_global(out / "lime_categorical_global.png")
    _plot_rank_comparison(comp, out / "ranking_vs_paper.png")

    print(f"\nKernel SHAP ({kres.n_evaluations:,} evaluations, {_sec(ks_s)}): additivity error "
          f"{kres.additivity_error(1):.2e}\n  ranking: {' > '.join(kres.ranking(1))}")
    if gres is not None:
        print(f"Gradient SHAP ({_sec(gs_s)}): {' > '.join(gres.ranking(1))}")
    print(f"LIME ({_sec(lime_s)}): {' > '.join(lres.ranking())}")
    if lres_c is not None:
        print(f"LIME, categorical ({_sec(lime_c_s)}): {' > '.join(lres_c.ranking())}")
    print(f"paper:        {' > '.join(PAPER_RANKING)}")
    for k in [k for k in ("kernel_shap", "gradient_shap", "lime", "lime_categorical") if k in comp]:
        v = comp[k]["vs_paper"]
        print(f"  {k:14s} vs paper: Spearman {v['spearman']:+.3f}  Kendall {v['kendall']:+.3f}  "
              f"top-3 Jaccard {v['top_k_jaccard']:.2f}")
    print(f"LIME stability over seeds {seeds} on {stab['n_rows']} rows: top-3 Jaccard {stab['score_top_k_jaccard']:.3f},"
          f" Spearman {stab['spearman']:.3f}")
    if stab_c is not None:
        print(f"LIME (categorical) stability: top-3 Jaccard {stab_c['score_top_k_jaccard']:.3f},"
              f" Spearman {stab_c['spearman']:.3f}")
    return summary


def _sec(x) -> str:
    return "time unknown" if x is None else f"{x:.0f} s compute"


def _plot_rank_comparison(comp, path):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    feats = PAPER_RANKING
    xs = np.arange(len(feats))
    ax.plot(xs, xs + 1, "k-o", label="paper (decision plot)")
    for k, mk in (("kernel_shap", "s"), ("gradient_shap", "^"), ("lime", "d"), ("lime_categorical", "v")):
        if k not in comp:
            continue
        rk = comp[k]["ranking"]
        ax.plot(xs, [rk.index(f) + 1 for f in feats], mk + "--",
                label=f"{k} (Spearman {comp[k]['vs_paper']['spearman']:+.2f})")
    ax.set_xticks(xs, feats, rotation=40, ha="right")
    ax.set_ylabel("rank (1 = most important)")
    ax.invert_yaxis()
    ax.legend(fontsize=7)
    ax.set_title("Global feature ranking: this model vs the paper")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
