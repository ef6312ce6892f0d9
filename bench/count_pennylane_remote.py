"""Count the primitive jobs PennyLane's ``qiskit.remote`` device sends for the training step of
``bench_hardware_calls.py`` (k parallel 2-qubit circuits, RY embedding + strongly entangling layers,
<Z> per wire, batch B, parameter-shift gradients w.r.t. the weights (PennyLane's parameter shift refuses trainable broadcast inputs), FakeManilaV2, 256 shots).

pennylane-qiskit 0.45 needs qiskit <= 2.3 while qnn's environment pins qiskit 2.6, so this script
runs in a separate environment (it does not import qnn):

    python -m venv /tmp/plq && /tmp/plq/bin/pip install "pennylane==0.45.1" "pennylane-qiskit==0.45.0" \
        "qiskit>=2.0,<=2.3" qiskit-aer qiskit-ibm-runtime
    /tmp/plq/bin/python bench/count_pennylane_remote.py      # prints one JSON line per configuration
"""

from __future__ import annotations

import json

import pennylane as qml
from pennylane import numpy as pnp
from qiskit_ibm_runtime import EstimatorV2, SamplerV2
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

COUNTS = {"calls": 0, "pubs": 0}


def _counting(cls):
    run = cls.run

    def wrapped(self, pubs, *a, **kw):
        pubs = list(pubs)
        COUNTS["calls"] += 1
        COUNTS["pubs"] += len(pubs)
        return run(self, pubs, *a, **kw)

    cls.run = wrapped


_counting(EstimatorV2)
_counting(SamplerV2)


def step(k: int, B: int, layers: int, n: int = 2) -> dict:
    dev = qml.device("qiskit.remote", wires=n, backend=FakeManilaV2(), shots=256, seed_transpiler=1,
                     seed_estimator=1)

    @qml.qnode(dev, diff_method="parameter-shift")
    def circuit(x, w):
        qml.AngleEmbedding(x, wires=range(n), rotation="Y")
        qml.StronglyEntanglingLayers(w, wires=range(n))
        return [qml.expval(qml.Z(i)) for i in range(n)]

    rng = pnp.random.default_rng(0)
    x = pnp.array(rng.random((B, n)), requires_grad=False)  # PennyLane's parameter shift refuses broadcast trainable inputs
    ws = [pnp.array(rng.random((layers, n, 3)), requires_grad=True) for _ in range(k)]

    def loss(x, *ws):
        out = pnp.concatenate([pnp.stack(circuit(x, w)).T for w in ws], axis=1)
        return pnp.sum(out) ** 2

    COUNTS.update(calls=0, pubs=0)
    qml.grad(loss, argnums=list(range(1, k + 1)))(x, *ws)
    return {"system": "PennyLane qiskit.remote (pennylane-qiskit 0.45)", "k": k, "B": B,
            "P": k * layers * n * 3, "primitive_calls": COUNTS["calls"], "pubs": COUNTS["pubs"]}


if __name__ == "__main__":
    for k, B, layers in ((1, 2, 1), (3, 2, 1), (3, 8, 1), (3, 8, 2)):
        print(json.dumps(step(k, B, layers)), flush=True)
