"""Clean protocol: repeated stratified 10-fold CV, identical folds for every model, resumable.

Every (prep, model, repeat, fold) result is appended to results/cv_results.jsonl as soon as it is
computed; a rerun skips what is there.  Deep models take their validation data (early stopping,
checkpointing, LR schedule) from a stratified 10 % of the *training* folds; the test fold is used
only for the reported scores.  Preprocessing is fitted on the training folds only.

Usage (from the repo root):
    OMP_NUM_THREADS=2 python experiments/kacq/run_cv.py --group classical --repeats 1
    OMP_NUM_THREADS=1 python experiments/kacq/run_cv.py --models kacq_L1 kacq_L2 --repeats 1
    # two cores: two workers on disjoint halves of the pending fits
    python experiments/kacq/run_cv.py --group kacq --shard 0/2 & python experiments/kacq/run_cv.py --group kacq --shard 1/2
    python experiments/kacq/run_cv.py --list
Groups: classical (16), kacq (L=1..4), ablations, qnn (12 TTN/MPS/MERA), hybrids, all.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


# ----------------------------------------------------------------------------- registry
def classical_models(seed: int) -> dict:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis, QuadraticDiscriminantAnalysis
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import (AdaBoostClassifier, BaggingClassifier, GradientBoostingClassifier,
                                  HistGradientBoostingClassifier, RandomForestClassifier)
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import BernoulliNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.tree import DecisionTreeClassifier

    m = {
        "MLP": lambda: MLPClassifier(random_state=seed),
        "LogReg": lambda: LogisticRegression(),
        "KNN": lambda: KNeighborsClassifier(),
        "LDA": lambda: LinearDiscriminantAnalysis(),
        "RandomForest": lambda: RandomForestClassifier(random_state=seed),
        # default reg_param=0 fails on the rank-deficient one-hot (clean) features: small ridge
        "QDA": lambda: QuadraticDiscriminantAnalysis(reg_param=0.01),
        "HistGB": lambda: HistGradientBoostingClassifier(random_state=seed),
        "GradBoost": lambda: GradientBoostingClassifier(random_state=seed),
        "AdaBoost": lambda: AdaBoostClassifier(random_state=seed),
        "Bagging": lambda: BaggingClassifier(random_state=seed),
        "BernoulliNB": lambda: BernoulliNB(),
        "DecisionTree": lambda: DecisionTreeClassifier(random_state=seed),
        "Dummy": lambda: DummyClassifier(),
    }
    try:
        from xgboost import XGBClassifier

        m["XGBoost"] = lambda: XGBClassifier(random_state=seed, n_jobs=1, verbosity=0)
    except ImportError:
        pass
    try:
        from lightgbm import LGBMClassifier

        m["LightGBM"] = lambda: LGBMClassifier(random_state=seed, force_col_wise=True, verbose=-1, n_jobs=1)
    except ImportError:
        pass
    try:
        from catboost import CatBoostClassifier

        m["CatBoost"] = lambda: CatBoostClassifier(random_seed=seed, verbose=0, thread_count=1)
    except ImportError:
        pass
    return m


KACQ_VARIANTS = {
    "kacq_L1": {"n_layers": 1},
    "kacq_L2": {"n_layers": 2},
    "kacq_L3": {"n_layers": 3},
    "kacq_L4": {"n_layers": 4},
}
ABLATIONS = {
    "abl_mlp": {"kan": "mlp"},
    "abl_angle": {"embedding": "angle"},
    # "no quantum channel" is the BiLSTMKANnet hybrid (same configuration): see HYBRIDS
    "abl_no_bilstm": {"bilstm": 0},
    "abl_one_bilstm": {"bilstm": 1},
    "abl_lstm": {"lstm_bidirectional": False},
    "abl_no_dropout": {"dropout": 0.0},
    "abl_no_kan_classical": {"classical_kan": False},
    "abl_no_kan_quantum": {"quantum_kan": False},
    "abl_pqc_classical_standin": {"pqc": "classical"},
}
HYBRIDS = {
    "BiLSTMKANnet": {"quantum_channel": False},
    "QDenseKANnet": {"classical_channel": False},
    "QCKANnet_L1": {"arch": "qckan", "n_layers": 1},
    "QCKANnet_L2": {"arch": "qckan", "n_layers": 2},
    "QCKANnet_L3": {"arch": "qckan", "n_layers": 3},
    "QCKANnet_L4": {"arch": "qckan", "n_layers": 4},
}
QNNS = {f"{net}_L{L}": {"network": net, "n_layers": L} for net in ("TTN", "MPS", "MERA") for L in (1, 2, 3, 4)}


def make_model(name: str, seed: int):
    cm = classical_models(seed)
    if name in cm:
        return cm[name]()
    from qnn.models import KACQClassifier

    if name in KACQ_VARIANTS or name in ABLATIONS or name in HYBRIDS:
        kw = {**KACQ_VARIANTS.get(name, {}), **ABLATIONS.get(name, {}), **HYBRIDS.get(name, {})}
        if kw.pop("arch", None) == "qckan":
            from qnn.models._baselines import QCKANClassifier

            return QCKANClassifier(seed=seed, verbose=False, **kw)
        return KACQClassifier(seed=seed, verbose=False, restore="val_accuracy", **kw)
    if name in QNNS:
        from qnn.models._baselines import TensorNetworkQNNClassifier

        return TensorNetworkQNNClassifier(seed=seed, **QNNS[name])
    raise KeyError(f"unknown model {name!r}")


GROUPS = {
    "kacq": list(KACQ_VARIANTS),
    "ablations": list(ABLATIONS),
    "hybrids": list(HYBRIDS),
    "qnn": list(QNNS),
}


def all_names():
    return list(classical_models(0)) + GROUPS["kacq"] + GROUPS["ablations"] + GROUPS["hybrids"] + GROUPS["qnn"]


def is_deep(name: str) -> bool:
    return name in KACQ_VARIANTS or name in ABLATIONS or name in HYBRIDS


# ----------------------------------------------------------------------------- runner
def run(models, repeats: int, prep: str, fold_filter=None, seed: int = 0, data_dir=None,
        shard: tuple[int, int] = (0, 1)) -> None:
    from sklearn.model_selection import train_test_split
    from tqdm.auto import tqdm

    df = common.load_df(data_dir)
    y = df["HeartDisease"].to_numpy()
    fl = common.folds(y, repeats)
    done = common.load_cache()
    todo = [(m, r, f, tr, te) for (r, f, tr, te) in fl for m in models
            if (prep, m, r, f) not in done and (fold_filter is None or f in fold_filter)]
    todo = todo[shard[0]::shard[1]]  # worker i of n takes every n-th fit (same JSONL, append-only)
    print(f"[run_cv] shard {shard[0]}/{shard[1]} prep={prep} models={len(models)} repeats={repeats}: {len(todo)} fits to do "
          f"({sum(1 for m in models for (r, f, _, _) in fl if (prep, m, r, f) in done)} cached)", flush=True)
    for m, r, f, tr, te in tqdm(todo, desc="cv", unit="fit"):
        Xtr, Xte, ytr, yte = common.prepare(df, tr, te, prep)
        fit_seed = seed + 1000 * r + f
        t0 = time.perf_counter()
        try:
            est = make_model(m, fit_seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if is_deep(m):
                    Xa, Xv, ya, yv = train_test_split(Xtr, ytr, test_size=0.1, stratify=ytr, random_state=fit_seed)
                    est.fit(Xa, ya, X_val=Xv, y_val=yv)
                else:
                    est.fit(Xtr, ytr)
                proba = est.predict_proba(Xte)[:, 1]
            rec = {"prep": prep, "model": m, "repeat": r, "fold": f, "seed": fit_seed,
                   "n_train": int(len(tr)), "n_test": int(len(te)), **common.metrics(yte, proba),
                   "fit_s": round(time.perf_counter() - t0, 2)}
            if hasattr(est, "best_epoch_"):
                rec["best_epoch"] = int(est.best_epoch_)
                rec["epochs_run"] = len(est.history_)
        except Exception as e:  # record the failure, keep going
            rec = {"prep": prep, "model": m, "repeat": r, "fold": f, "seed": fit_seed, "error": repr(e),
                   "traceback": traceback.format_exc()[-2000:]}
            print(f"[run_cv] {m} r{r} f{f} FAILED: {e!r}", flush=True)
        common.append_cache(rec)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--group", nargs="*", default=[], help="classical kacq ablations hybrids qnn all")
    ap.add_argument("--models", nargs="*", default=[])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--folds", type=int, nargs="*", default=None, help="only these fold indices (0-9)")
    ap.add_argument("--prep", default="clean", choices=["clean", "paper"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--shard", default="0/1", help="i/n: run every n-th pending fit starting at i "
                    "(start n processes with i = 0..n-1 to use n cores)")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args(argv)
    if a.list:
        print("\n".join(all_names()))
        return
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    names = list(a.models)
    for g in a.group:
        if g == "all":
            names += all_names()
        elif g == "classical":
            names += list(classical_models(0))
        else:
            names += GROUPS[g]
    names = list(dict.fromkeys(names))
    if not names:
        ap.error("give --group or --models")
    i, n = (int(v) for v in a.shard.split("/"))
    run(names, a.repeats, a.prep, a.folds, a.seed, shard=(i, n))


if __name__ == "__main__":
    main()
