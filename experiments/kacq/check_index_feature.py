"""Hypothesis check for the paper-protocol gap: was the paper's undocumented 12th input the row
index of heart.csv (an index column saved with the frame)?  The index is informative in principle
(the file concatenates the source hospitals, whose disease rates differ).

Paper protocol as in ``paper_protocol.py`` (stratified 70/30 split with random_state = seed,
MinMax on the training split, checkpoint chosen on the test split) with the row index appended as
a 12th column.  Compare with ``results/paper_protocol.md`` (11 columns, same seeds).

    OMP_NUM_THREADS=1 python experiments/kacq/check_index_feature.py 0 1 2 \
        > experiments/kacq/results/check_index_feature.txt
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from qnn.datasets.heart import paper_encode  # noqa: E402
from qnn.models import KACQClassifier  # noqa: E402


def main(seeds):
    X, y = paper_encode(common.load_df())
    X = np.column_stack([X, np.arange(len(X), dtype=float)])
    for seed in seeds:
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
        sc = MinMaxScaler().fit(Xtr)
        Xtr, Xte = sc.transform(Xtr), sc.transform(Xte)
        clf = KACQClassifier(seed=seed, verbose=False, restore="val_accuracy", threads=1)
        clf.fit(Xtr, ytr, X_val=Xte, y_val=yte)  # the authors' protocol: validation = test split
        te = common.metrics(yte, clf.predict_proba(Xte)[:, 1])
        tr = common.metrics(ytr, clf.predict_proba(Xtr)[:, 1])
        print(json.dumps({"seed": seed, "accuracy": round(te["accuracy"], 4), "roc_auc": round(te["roc_auc"], 4),
                          "train_accuracy": round(tr["accuracy"], 4), "best_epoch": clf.best_epoch_,
                          "epochs_run": len(clf.history_)}), flush=True)


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [0, 1, 2])
