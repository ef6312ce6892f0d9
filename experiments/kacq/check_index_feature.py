"""Hypothesis check for the paper-protocol gap: was the paper's undocumented 12th input the row
index of heart.csv (an index column saved with the frame)?  The index is informative in principle
(the file concatenates the source hospitals, whose disease rates differ).

The paper protocol of ``paper_protocol.py`` (``run_seed``: stratified 70/30 split with
random_state = seed, MinMax on the training split, checkpoint chosen on the test split) with the
row index appended as a 12th column.  Compare with ``results/paper_protocol.md`` (11 columns, same
seeds).

    OMP_NUM_THREADS=1 python experiments/kacq/check_index_feature.py 0 1 2 \
        > experiments/kacq/results/check_index_feature.txt
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from paper_protocol import run_seed  # noqa: E402


def main(seeds):
    n = len(common.load_df())
    for seed in seeds:
        rec = run_seed(seed, n_layers=1, threads=1, extra=np.arange(n), verbose=False)
        print(json.dumps({"seed": seed, "accuracy": round(rec["accuracy"], 4), "roc_auc": round(rec["roc_auc"], 4),
                          "train_accuracy": round(rec["train_accuracy"], 4), "best_epoch": rec["best_epoch"],
                          "epochs_run": rec["epochs_run"]}), flush=True)


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [0, 1, 2])
