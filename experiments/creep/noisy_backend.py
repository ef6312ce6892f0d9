"""One swapped model, trained on the exact simulator, evaluated on a noisy fake IBM backend.

A classical MLP on scikit-learn's digits (shipped with the install) has its middle
``nn.Linear(4, 4)`` swapped for a 4-qubit :class:`qnn.QuantumLinear` with :func:`qnn.swap`; the
hybrid is trained with :func:`qnn.training.fit` on the torch engine, then the *same weights* are
evaluated with the quantum layer moved to other engines: Qiskit's exact statevector, and
``FakeManilaV2`` (5 qubits, its calibrated noise model, local mode) through qiskit-ibm-runtime at
several shot counts.  Beside each noisy configuration: the planner's cost estimate
(:func:`qnn.planner.estimate`, made before anything is sent) of that evaluation and of the same
30-epoch training run done on the backend instead of the simulator (circuits, jobs, shots,
estimated QPU seconds), and the jobs the evaluation actually sent.

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
from qnn.planner import estimate
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
        row = {"engine": label, "shots": shots}
        if shots is not None:
            # cost first: the evaluation itself and a training run of the same protocol on the backend
            row["estimate_evaluation"] = estimate(hybrid, "forward", example=X[te]).as_dict()
            row["estimate_training_run"] = estimate(hybrid, "train", example=X[tr][:32], n_samples=len(tr),
                                                    epochs=30).as_dict()
        before = engine.planner.sent.as_dict() if shots is not None else None
        t = time.perf_counter()
        with torch.no_grad():
            pred = hybrid(X[te]).argmax(1)
        row["seconds"] = time.perf_counter() - t
        row["test_accuracy"] = float((pred == y[te]).float().mean())
        if shots is not None:
            after = engine.planner.sent.as_dict()
            row["sent_evaluation"] = {k: after[k] - before[k] for k in ("circuits", "pubs", "jobs", "shots")}
            assert all(row["sent_evaluation"][k] == row["estimate_evaluation"][k] for k in row["sent_evaluation"]), row
        rows.append(row)
        print(f"{label:40s} shots={shots!s:>6}  test accuracy {row['test_accuracy']:.4f}", flush=True)

    exact = layer.engine
    evaluate("torch (exact, trained here)", exact, None)
    evaluate("qiskit Statevector (exact)", get_engine("qiskit"), None)
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    backend = FakeManilaV2()
    for shots in (32, 128, 1024, 8192):
        evaluate("ibm FakeManilaV2 (noisy, local mode)", get_engine("ibm", backend=backend, shots=shots, seed=1), shots)
    layer.engine = exact
    result = {"model": str(hybrid), "swap": report.to_dict(), "train_history": hist.to_paper_dict(),
              "n_train": len(tr), "n_test": len(te), "evaluations": rows, "record": run_record()}
    OUT.mkdir(exist_ok=True)
    (OUT / "noisy_backend.json").write_text(json.dumps(result, indent=1))
    md = ["| engine | shots | test accuracy | seconds (local simulation) | evaluation: circuits / jobs / shots / est. QPU s "
          "| 30-epoch training run on the backend: circuits / jobs / est. QPU s |", "|---|---|---|---|---|---|"]
    for r in rows:
        ev, tr_ = r.get("estimate_evaluation"), r.get("estimate_training_run")
        cost = (f"{ev['circuits']:,} / {ev['jobs']} / {ev['shots']:,} / {ev['qpu_seconds']:,.1f}" if ev else "-")
        train = (f"{tr_['circuits']:,} / {tr_['jobs']:,} / {tr_['qpu_seconds']:,.0f}" if tr_ else "-")
        md.append(f"| {r['engine']} | {r['shots'] or 'exact'} | {r['test_accuracy']:.4f} | {r['seconds']:.1f} "
                  f"| {cost} | {train} |")
    (OUT / "noisy_backend.md").write_text(
        f"Digits MLP with its middle Linear(4, 4) swapped for a 4-qubit QuantumLinear, trained 30 epochs on the "
        f"torch engine ({len(tr)} train / {len(te)} test images); the same weights evaluated on each engine.\n\n"
        + "\n".join(md) + "\n\nEstimated QPU seconds use qnn.planner's per-job model (overhead + shots x "
        "(circuit duration + rep_delay); the 2 s job overhead is an assumption, see qnn/planner/_cost.py); a training "
        f"step packs forward and parameter-shift rows into as few jobs as the backend limits allow (300 circuits per job on FakeManilaV2).\n\nCommand: `{' '.join(['python'] + sys.argv)}`\n")
    return result


if __name__ == "__main__":
    main()
