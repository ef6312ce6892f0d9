"""How much of pixel-by-pixel MNIST 0/1 is a count of ink pixels?  For each resize of the
preprocessing (``box``: block average, ``lanczos``: Mathematica's ``ImageResize`` default), the
test accuracy of the best ink-count threshold chosen on the training images, a logistic regression
on the 100 bits for reference, and, for trained QRNN runs given with ``--runs``, the test accuracy
of their best checkpoint and the correlation of their p(label 1) with the ink count.

    python experiments/qrnn/ink_count.py --runs experiments/qrnn/runs/mnist01-b100-s2 \\
        experiments/qrnn/runs/mnist01lz-b100-s1 > experiments/qrnn/results/ink_count.txt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from qnn.datasets.sequences import mnist_pixels  # noqa: E402
from qnn.qrnn import QRNN  # noqa: E402


def ink(task) -> np.ndarray:
    """Ink pixels per image (the row-scan bit is 0 on ink: the background bit is 1)."""
    return (1 - ((task.inputs >> 1) & 1)).sum(1).numpy()


def best_threshold(counts: np.ndarray, labels: np.ndarray, first: int = 0) -> int:
    """The ``k`` maximising the accuracy of 'class ``first`` iff count > k' on these data."""
    return max(range(int(counts.max()) + 1), key=lambda k: ((counts > k) == (labels == first)).mean())


@torch.no_grad()
def model_probs(run: Path, task) -> np.ndarray:
    args = json.loads((run / "args.json").read_text())
    model = QRNN(2, args["W"], stages=args["S"], order=args["ord"], degree=args["d"])
    blob = torch.load(run / "best.pt", weights_only=False)
    model.load_state_dict(blob["model"] if "model" in blob else blob)
    return torch.cat([
        model(task.inputs[i:i + 500], task.targets[i:i + 500], postselect=task.ignore, readout="argmax").probs[:, :, -1]
        for i in range(0, len(task), 500)
    ]).numpy()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="*", default=[], help="train_qrnn.py run directories (mnist01 tasks)")
    ap.add_argument("--n-train", type=int, default=None, help="limit the training images (default: all)")
    ap.add_argument("--n-test", type=int, default=None, help="limit the test images (default: all)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from sklearn.linear_model import LogisticRegression

    tests = {}
    for resize in ("box", "lanczos"):
        tr = mnist_pixels((0, 1), "train", resize=resize, n=a.n_train, seed=0)
        te = mnist_pixels((0, 1), "test", resize=resize, n=a.n_test, seed=0)
        tests[resize] = te
        ytr, yte = tr.labels.numpy(), te.labels.numpy()
        k = best_threshold(ink(tr), ytr)
        acc = float(((ink(te) > k) == (yte == 0)).mean())
        bits = lambda t: ((t.inputs >> 1) & 1).numpy()  # noqa: E731
        lr = LogisticRegression(max_iter=3000).fit(bits(tr), ytr)
        print(f"resize {resize}: ink pixels (test) 0s {ink(te)[yte == 0].mean():.1f}, 1s {ink(te)[yte == 1].mean():.1f}; "
              f"'0 iff ink > {k}' (threshold from {len(ytr)} training images): test accuracy {acc:.4f} (n = {len(yte)}); "
              f"logistic regression on the 100 bits: {lr.score(bits(te), yte):.4f}")
    for r in a.runs:
        run = Path(r)
        task = json.loads((run / "args.json").read_text())["task"]
        te = tests["lanczos" if task.endswith("-lz") else "box"]
        p = model_probs(run, te)
        y = te.labels.numpy()
        pred = p.argmax(1)
        wrong = pred != y
        print(f"run {run.name} ({task}): test argmax accuracy {float((~wrong).mean()):.4f}; "
              f"corr(p(label 1), ink) {np.corrcoef(p[:, 1], ink(te))[0, 1]:+.3f}; "
              f"median ink of misread 0s {np.median(ink(te)[wrong & (y == 0)]) if (wrong & (y == 0)).any() else float('nan')}, "
              f"of misread 1s {np.median(ink(te)[wrong & (y == 1)]) if (wrong & (y == 1)).any() else float('nan')}")


if __name__ == "__main__":
    main()
