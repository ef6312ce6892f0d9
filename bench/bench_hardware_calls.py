"""Primitive calls (jobs) per training step: qnn's planner against Qiskit ML's TorchConnector.

Workload (issue 12, "Packing"): a KACQ-like model of ``k`` parallel 2-qubit circuits (angle
embedding + ``layers`` strongly entangling layers, <Z> on every wire) on the same input; one
training step = forward on a batch of ``B`` plus the backward of ``sum(out)**2`` w.r.t. the
weights and the inputs.  Counted, not assumed:

* **qnn**: every layer on the ``ibm`` engine, the step run through :meth:`qnn.planner.Planner.step`
  on :class:`qnn.testing.FakeRuntimeService` (which counts jobs, PUBs and circuits as received);
  the planner's own estimate is printed beside it.
* **Qiskit ML** (``EstimatorQNN`` + ``TorchConnector``, one per circuit, ``input_gradients=True``):
  its estimator is a :class:`qiskit.primitives.StatevectorEstimator` wrapped to count ``run``
  calls (each call is one primitive job on hardware) and the PUBs / parameter sets they carry.
* **PennyLane's Qiskit-remote device** (``pennylane-qiskit``): pennylane-qiskit 0.45 requires
  qiskit <= 2.3 while qnn's pins have qiskit 2.6, so it is counted by
  ``bench/count_pennylane_remote.py`` in a separate environment (reported here as not measured
  when the package is not importable).

    python bench/bench_hardware_calls.py            # prints a table, writes bench/results/hardware_calls.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from torch import nn

import qnn
from qnn.engines import get_engine
from qnn.planner import Planner, estimate
from qnn.testing import FakeRuntimeService

HERE = os.path.dirname(os.path.abspath(__file__))


def _circuit(n: int, layers: int) -> qnn.Circuit:
    c = qnn.Circuit(n)
    qnn.angle_embedding(c, rotation="Y")
    qnn.strongly_entangling_layers(c, layers)
    c.measure_z()
    return c


class Parallel(nn.Module):
    def __init__(self, layers_, n_inputs: int):
        super().__init__()
        self.layers = nn.ModuleList(layers_)

    def forward(self, x):
        return torch.cat([layer(x) for layer in self.layers], dim=1)


def qnn_counts(k: int, B: int, layers: int, n: int = 2) -> dict:
    svc = FakeRuntimeService()
    planner = Planner("fake_manila", service=svc, shots=256, seed=1, backoff=0.0, sleep=lambda s: None)
    eng = get_engine("ibm", backend="fake_manila", shots=256, seed=1)
    model = Parallel([qnn.QuantumLayer(_circuit(n, layers), engine=eng, seed=i) for i in range(k)], n)
    x = torch.rand(B, n, generator=torch.Generator().manual_seed(0), requires_grad=True)
    est = estimate(model, "step", example=x, planner=planner)
    planner.step(lambda: model(x).sum().pow(2)).backward()
    P = sum(p.numel() for p in model.parameters())
    return {"system": "qnn planner (ibm engine)", "k": k, "B": B, "P": P, "primitive_calls": svc.jobs,
            "pubs": svc.pubs, "circuits": svc.circuits, "estimate_jobs": est.jobs, "estimate_circuits": est.circuits}


def _counting_estimator():
    """A StatevectorEstimator (a V2 primitive) that counts its ``run`` calls, PUBs and bound
    circuits (parameter sets x observables)."""
    from qiskit.primitives import StatevectorEstimator
    from qiskit.primitives.containers.estimator_pub import EstimatorPub

    class Counting(StatevectorEstimator):
        calls = pubs = rows = 0

        def run(self, pubs, *, precision=None):
            coerced = [EstimatorPub.coerce(p) for p in pubs]
            self.calls += 1
            self.pubs += len(coerced)
            self.rows += sum(int(p.shape and np.prod(p.shape) or 1) for p in coerced)
            return super().run(coerced, precision=precision)

    return Counting(seed=0)


def qiskit_ml_counts(k: int, B: int, layers: int, n: int = 2) -> dict:
    from qiskit_machine_learning.connectors import TorchConnector
    from qiskit_machine_learning.gradients import ParamShiftEstimatorGradient
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    from qnn.interop import to_qiskit
    from qnn.engines._convert import pauli_observable  # noqa: the Pauli-word observable of a qnn measurement

    counter = _counting_estimator()
    connectors = []
    P = 0
    for i in range(k):
        c = _circuit(n, layers)
        qc, xp, wp = to_qiskit(c)
        obs = [pauli_observable(m, n) for m in c.measurements]
        est_qnn = EstimatorQNN(circuit=qc, observables=obs, input_params=list(xp), weight_params=list(wp),
                               estimator=counter, gradient=ParamShiftEstimatorGradient(counter), default_precision=0,
                               input_gradients=True)
        g = torch.Generator().manual_seed(i)
        connectors.append(TorchConnector(est_qnn, initial_weights=torch.rand(len(wp), generator=g)))
        P += len(wp)
    x = torch.rand(B, n, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = torch.cat([con(x) for con in connectors], dim=1)
    out.sum().pow(2).backward()
    return {"system": "Qiskit ML EstimatorQNN + TorchConnector", "k": k, "B": B, "P": P,
            "primitive_calls": counter.calls, "pubs": counter.pubs, "circuits": counter.rows}


def pennylane_remote_counts(k: int, B: int, layers: int, n: int = 2) -> dict:
    try:
        import pennylane_qiskit  # noqa: F401
    except ImportError as exc:
        return {"system": "PennyLane qiskit.remote device", "k": k, "B": B,
                "not_measured": f"pennylane-qiskit not importable ({exc.__class__.__name__}); its 0.45 release "
                                "requires qiskit<=2.3, qnn's environment pins qiskit 2.6"}
    raise NotImplementedError("pennylane-qiskit is importable: add its count here")  # pragma: no cover


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="1x2x1,3x2x1,3x8x1,3x8x2",
                    help="comma-separated k x B x layers (circuits x batch x entangling layers)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "hardware_calls.json"))
    args = ap.parse_args(argv)
    rows = []
    for cfg in args.configs.split(","):
        k, B, layers = (int(v) for v in cfg.split("x"))
        for fn in (qnn_counts, qiskit_ml_counts, pennylane_remote_counts):
            r = fn(k, B, layers)
            rows.append(r)
            if "not_measured" in r:
                print(f"k={k} B={B} layers={layers}  {r['system']:42s} not measured: {r['not_measured']}")
            else:
                print(f"k={k} B={B} layers={layers} P={r['P']:3d}  {r['system']:42s} primitive calls "
                      f"{r['primitive_calls']:4d}  PUBs {r['pubs']:4d}  circuits {r['circuits']:6d}", flush=True)
    from qnn.training import run_record

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"rows": rows, "command": " ".join(["python"] + sys.argv),
                   "run": run_record(["python", *sys.argv])}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
