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
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from diagnose_mnist import last_step_probs, load_run_model  # noqa: E402

from qnn.datasets.sequences import mnist_pixels  # noqa: E402


def bits(task) -> np.ndarray:
    """The 10x10 image bits of each sequence (the row scan: bit 1 of every word; background = 1)."""
    return ((task.inputs >> 1) & 1).numpy()


def ink(b: np.ndarray) -> np.ndarray:
    """Ink pixels per image (the bits that are 0) of ``bits(task)``."""
    return (1 - b).sum(1)


def best_threshold(counts: np.ndarray, labels: np.ndarray, first: int = 0) -> int:
    """The ``k`` maximising the accuracy of 'class ``first`` iff count > k' on these data."""
    return max(range(int(counts.max()) + 1), key=lambda k: ((counts > k) == (labels == first)).mean())


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
        ytr, yte = tr.labels.numpy(), te.labels.numpy()
        btr, bte = bits(tr), bits(te)
        itr, ite = ink(btr), ink(bte)
        tests[resize] = (te, ite)
        k = best_threshold(itr, ytr)
        acc = float(((ite > k) == (yte == 0)).mean())
        lr = LogisticRegression(max_iter=3000).fit(btr, ytr)
        print(f"resize {resize}: ink pixels (test) 0s {ite[yte == 0].mean():.1f}, 1s {ite[yte == 1].mean():.1f}; "
              f"'0 iff ink > {k}' (threshold from {len(ytr)} training images): test accuracy {acc:.4f} (n = {len(yte)}); "
              f"logistic regression on the 100 bits: {lr.score(bte, yte):.4f}")
    for r in a.runs:
        run = Path(r)
        model, args = load_run_model(run)
        te, counts = tests["lanczos" if args.task.endswith("-lz") else "box"]
        p = last_step_probs(model, te).numpy()
        y = te.labels.numpy()
        wrong = p.argmax(1) != y
        med = [float(np.median(counts[wrong & (y == c)])) if (wrong & (y == c)).any() else float("nan") for c in (0, 1)]
        print(f"run {run.name} ({args.task}): test argmax accuracy {float((~wrong).mean()):.4f}; "
              f"corr(p(label 1), ink) {np.corrcoef(p[:, 1], counts)[0, 1]:+.3f}; "
              f"median ink of misread 0s {med[0]}, of misread 1s {med[1]}")


if __name__ == "__main__":
    main()
