"""One swapped model, trained on the exact simulator, evaluated on a noisy fake IBM backend.

A classical MLP on scikit-learn's digits (shipped with the install) has its middle
``nn.Linear(4, 4)`` swapped for a 4-qubit :class:`qnn.QuantumLinear` with :func:`qnn.swap`; the
hybrid is trained with :func:`qnn.training.fit` on the torch engine, then the *same weights* are
evaluated with the quantum layer moved to other engines: Qiskit's exact statevector, and
``FakeManilaV2`` (5 qubits, its calibrated noise model, local mode) through qiskit-ibm-runtime at
several shot counts.

    python experiments/creep/noisy_backend.py            # writes results/noisy_backend.{json,md}
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import qnn
from qnn.engines import get_engine
from qnn.training import fit, run_record

OUT = Path(__file__).resolve().parent / "results"


def main(argv=None) -> dict:
    torch.set_num_threads(2)
    d = load_digits()
    X = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.long)
    tr, te = train_test_split(np.arange(len(y)), test_size=0.25, random_state=0, stratify=d.target)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(64, 4), nn.Tanh(), nn.Linear(4, 4), nn.Linear(4, 10))
    hybrid, report = qnn.swap(net, "2", seed=0)
    print(report)
    hist = fit(hybrid, (X[tr], y[tr]), test=(X[te], y[te]), epochs=30, lr=0.02, batch_size=32, seed=0,
               progress=False)
    layer = hybrid[2]
    rows = []

    def evaluate(label, engine, shots):
        layer.engine = engine
        t = time.perf_counter()
        with torch.no_grad():
            pred = hybrid(X[te]).argmax(1)
        acc = float((pred == y[te]).float().mean())
        rows.append({"engine": label, "shots": shots, "test_accuracy": acc, "seconds": time.perf_counter() - t})
        print(f"{label:40s} shots={shots!s:>6}  test accuracy {acc:.4f}", flush=True)

    exact = layer.engine
    evaluate("torch (exact, trained here)", exact, None)
    evaluate("qiskit Statevector (exact)", get_engine("qiskit"), None)
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    backend = FakeManilaV2()
    for shots in (128, 1024, 8192):
        evaluate("ibm FakeManilaV2 (noisy, local mode)", get_engine("ibm", backend=backend, shots=shots, seed=1), shots)
    layer.engine = exact
    result = {"model": str(hybrid), "swap": report.to_dict(), "train_history": hist.to_paper_dict(),
              "n_train": len(tr), "n_test": len(te), "evaluations": rows, "record": run_record()}
    OUT.mkdir(exist_ok=True)
    (OUT / "noisy_backend.json").write_text(json.dumps(result, indent=1))
    md = ["| engine | shots | test accuracy | seconds |", "|---|---|---|---|"]
    md += [f"| {r['engine']} | {r['shots'] or 'exact'} | {r['test_accuracy']:.4f} | {r['seconds']:.1f} |" for r in rows]
    (OUT / "noisy_backend.md").write_text(
        f"Digits MLP with its middle Linear(4, 4) swapped for a 4-qubit QuantumLinear, trained 30 epochs on the "
        f"torch engine ({len(tr)} train / {len(te)} test images); the same weights evaluated on each engine.\n\n"
        + "\n".join(md) + f"\n\nCommand: `{' '.join(['python'] + sys.argv)}`\n")
    return result


if __name__ == "__main__":
    main()
