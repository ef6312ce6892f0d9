"""Benchmark: the same ``qml.qnn.TorchLayer`` on ``qnn.torch`` and on ``default.qubit``.

Workload: ``bench/bench_layer.py``'s circuit -- RY angle embedding, 2 StronglyEntanglingLayers
with ``ranges=[1, 1]``, ``<Z_i>`` on every wire -- as a QNode in a TorchLayer (interface torch,
diff_method "best": backprop on both devices), B = 256 (parameter broadcasting).  One pass =
forward + backward of ``sum(out * g)``.  The two devices are interleaved pass by pass (the
machine is shared and noisy) and the medians compared; outputs and gradients are checked equal
(atol 1e-10) first.

Usage::

    PYTHONPATH=. python bench/bench_pl_device.py --n 8 12 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import pennylane as qml
import torch

from qnn.pennylane_device import QnnTorchDevice


def layer(dev, n):
    @qml.qnode(dev, interface="torch")
    def circuit(inputs, weights):
        qml.AngleEmbedding(inputs, wires=range(n), rotation="Y")
        qml.StronglyEntanglingLayers(weights, wires=range(n), ranges=[1, 1])
        return [qml.expval(qml.Z(i)) for i in range(n)]

    torch.manual_seed(0)
    return qml.qnn.TorchLayer(circuit, {"weights": (2, n, 3)}).double()


def one_pass(lay, x, g):
    lay.zero_grad()
    out = lay(x)
    (out * g).sum().backward()
    return out.detach(), lay.weights.grad.detach().clone()


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[8, 12])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args(argv)
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()}")
    for n in a.n:
        torch.manual_seed(1)
        x = torch.rand(a.batch, n, dtype=torch.float64)
        g = torch.randn(a.batch, n, dtype=torch.float64)
        lays = {"qnn.torch": layer(QnnTorchDevice(wires=n), n),
                "default.qubit": layer(qml.device("default.qubit", wires=n), n)}
        res = {k: one_pass(v, x, g) for k, v in lays.items()}  # warm-up and check
        ok = all(torch.allclose(p, q, atol=1e-10) for p, q in zip(res["qnn.torch"], res["default.qubit"]))
        times = {k: [] for k in lays}
        for _ in range(a.repeats):
            for k, v in lays.items():
                t0 = time.perf_counter()
                one_pass(v, x, g)
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"n={n:2d} B={a.batch}: qnn.torch {med['qnn.torch'] * 1e3:8.1f} ms, default.qubit "
              f"{med['default.qubit'] * 1e3:8.1f} ms, speed-up {med['default.qubit'] / med['qnn.torch']:.1f}x, "
              f"outputs and gradients equal: {ok}")


if __name__ == "__main__":
    main()
