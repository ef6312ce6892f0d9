"""Benchmark: a quantum layer's forward + backward on qnn's torch engine and on peer systems.

Workload (issue 2): x (B, n) -> RY(x_i) angle embedding -> 2 StronglyEntanglingLayers
(Rot on every wire, then a CNOT ring with range 1, i.e. ``ranges=[1, 1]``) -> <Z_i> on every
wire -> (B, n), B = 256, n in {4, 8, 12, 16}.  One *pass* = forward on the whole batch plus
the backward of ``sum(out * g)`` for a fixed random ``g``, giving d/dweights and d/dx.

Each (system, n) runs in its own subprocess.  Before timing, every system's outputs and
gradients are compared with qnn's complex128 oracle (computed in another subprocess, so the
oracle's memory is not counted in the system's peak RSS).  Times are medians of repeats
after one warm-up pass.  The table gives each median and its ratio to the fastest *peer*
(non-qnn system) at that n.  A memory-bandwidth lower bound is measured in the same run.

Usage::

    python bench/bench_layer.py --quick                 # n in {4, 8}, few repeats
    python bench/bench_layer.py --threads 2             # full run: n in {4, 8, 12, 16}
    python bench/bench_layer.py --n 12 16 --systems qnn  # only qnn's paths
    python bench/bench_layer.py --system qnn_auto --n 8  # one worker (prints JSON)

Results go to ``bench/results/layer_<host>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
B_DEFAULT = 256
N_LAYERS = 2

QNN_SYSTEMS = ["qnn_auto", "qnn_blocked", "qnn_adjoint", "qnn_unitary", "qnn_gates"]
PEER_SYSTEMS = ["pl_default", "pl_lightning", "qiskit_ml", "torchquantum"]
LABELS = {
    "qnn_auto": "qnn torch engine, mode=auto",
    "qnn_blocked": "qnn torch, blocked (autograd)",
    "qnn_adjoint": "qnn torch, adjoint",
    "qnn_unitary": "qnn torch, fused unitary",
    "qnn_gates": "qnn torch, one op per gate",
    "pl_default": "PL default.qubit, backprop, TorchLayer, broadcast",
    "pl_lightning": "PL lightning.qubit, adjoint, device_vjp=True",
    "qiskit_ml": "Qiskit-ML EstimatorQNN+TorchConnector (est.)",
    "torchquantum": "TorchQuantum",
}
# Qiskit ML loops over samples, observables and parameter shifts: time a small batch and
# scale by B / B_small (linear in B), labelled "est.".
QISKIT_B = {4: 4, 8: 1, 12: 1}


# ----------------------------------------------------------------------------- data
def make_data(n: int, B: int, dtype):
    import torch

    g = torch.Generator().manual_seed(1234 + n)
    x = torch.rand(B, n, generator=g, dtype=torch.float64) * math.pi
    w = torch.rand(N_LAYERS, n, 3, generator=g, dtype=torch.float64) * 2 * math.pi
    cot = torch.randn(B, n, generator=g, dtype=torch.float64)
    return x.to(dtype), w.to(dtype), cot.to(dtype)


def qnn_circuit(n: int):
    import qnn

    c = qnn.Circuit(n)
    qnn.angle_embedding(c, rotation="Y")
    qnn.strongly_entangling_layers(c, N_LAYERS, ranges=[1] * N_LAYERS)
    c.measure_z()
    return c


# ----------------------------------------------------------------------------- systems
def make_qnn(n, B, mode):
    import torch

    from qnn.engines.torch_engine import TorchEngine

    c = qnn_circuit(n)
    eng = TorchEngine(mode=mode)
    if mode != "auto":
        need = eng.estimate_bytes(c, B, mode)
        limit = eng._limit(torch.device("cpu"))
        if need > 0.8 * limit:
            raise SkipSystem(f"estimated {need / 2**30:.1f} GiB > 80% of available {limit / 2**30:.1f} GiB")

    def run(x, w):
        return eng.run(c, x, w.reshape(-1))

    run.info = lambda: {"path": eng.last_mode}
    return run


def make_pl(n, B, device_name):
    import pennylane as qml
    import torch

    dev = qml.device(device_name, wires=n)
    kw = {"diff_method": "backprop"} if device_name == "default.qubit" else {"diff_method": "adjoint", "device_vjp": True}
    if device_name == "default.qubit":
        est = 150 * B * 2**n * 8  # perf.md: 2.5 GB peak at n=12, B=256 (about 300 states)
        avail = _available()
        if est > 0.8 * avail:
            raise SkipSystem(f"estimated {est / 2**30:.0f} GiB > 80% of available {avail / 2**30:.0f} GiB")

    @qml.qnode(dev, interface="torch", **kw)
    def circ(inputs, weights):
        qml.AngleEmbedding(inputs, wires=range(n), rotation="Y")
        qml.StronglyEntanglingLayers(weights, wires=range(n), ranges=[1] * N_LAYERS)
        return [qml.expval(qml.PauliZ(i)) for i in range(n)]

    layer = qml.qnn.TorchLayer(circ, {"weights": (N_LAYERS, n, 3)})

    def run(x, w):
        with torch.no_grad():
            layer.weights.copy_(w)
        layer.weights.grad = None
        return layer(x)

    run.weight_param = lambda: layer.weights
    return run


def make_qiskit(n, B):
    import numpy as np
    import torch
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_machine_learning.connectors import TorchConnector
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    xp = ParameterVector("x", n)
    wp = ParameterVector("w", N_LAYERS * n * 3)
    qc = QuantumCircuit(n)
    for i in range(n):
        qc.ry(xp[i], i)
    for layer in range(N_LAYERS):
        for i in range(n):
            k = (layer * n + i) * 3
            qc.rz(wp[k], i)  # Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)
            qc.ry(wp[k + 1], i)
            qc.rz(wp[k + 2], i)
        if n > 1:
            for i in range(n):
                qc.cx(i, (i + 1) % n)
    obs = [SparsePauliOp("I" * (n - 1 - i) + "Z" + "I" * i) for i in range(n)]
    qnn_ = EstimatorQNN(circuit=qc, observables=obs, input_params=list(xp), weight_params=list(wp),
                        input_gradients=True, default_precision=0)
    model = TorchConnector(qnn_, initial_weights=np.zeros(len(wp)))

    def run(x, w):
        with torch.no_grad():
            model.weight.copy_(w.reshape(-1))
        model.weight.grad = None
        return model(x)

    run.weight_param = lambda: model.weight
    return run


class SkipSystem(Exception):
    pass


def _available() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:
        return 1 << 40


# ----------------------------------------------------------------------------- worker
def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    n, B = args.n[0], args.batch
    system = args.system
    res = {"system": system, "n": n, "B": B, "threads": args.threads}
    if system == "oracle":
        from qnn.engines.torch_engine import TorchEngine

        x, w, cot = make_data(n, B, torch.float64)
        x.requires_grad_()
        w.requires_grad_()
        out = TorchEngine(mode="adjoint" if n >= 14 else "blocked").run(qnn_circuit(n), x, w.reshape(-1))
        (out * cot).sum().backward()
        torch.save({"out": out.detach(), "dx": x.grad, "dw": w.grad}, args.oracle)
        return res
    if system == "bandwidth":
        return bandwidth(n, B)
    try:
        if system.startswith("qnn_"):
            run = make_qnn(n, B, system[4:])
        elif system == "pl_default":
            run = make_pl(n, B, "default.qubit")
        elif system == "pl_lightning":
            run = make_pl(n, B, "lightning.qubit")
        elif system == "qiskit_ml":
            if n not in QISKIT_B:
                raise SkipSystem(f"n={n}: ~{256 * 15 * 4 ** ((n - 12) / 2):.0f} s per pass estimated; not run")
            B = QISKIT_B[n]
            res["B_timed"] = B
            run = make_qiskit(n, B)
        elif system == "torchquantum":
            try:
                import torchquantum  # noqa: F401
            except Exception as e:  # noqa: BLE001
                raise SkipSystem(f"not importable ({type(e).__name__}: {e})")
            raise SkipSystem("importable, but no TorchQuantum runner is written for this version")
        else:
            raise SystemExit(f"unknown system {system!r}")
    except SkipSystem as e:
        res["skipped"] = str(e)
        return res
    except ImportError as e:
        res["skipped"] = f"not importable ({e})"
        return res

    dtype = torch.float64 if system == "qiskit_ml" else torch.float32
    x0, w0, cot = make_data(n, args.batch, dtype)
    x0, cot = x0[:B], cot[:B]

    def one_pass():
        x = x0.clone().requires_grad_()
        w = w0.clone().requires_grad_()
        t0 = time.perf_counter()
        c0 = time.process_time()
        out = run(x, w)
        (out.to(cot.dtype) * cot).sum().backward()
        wgrad = w.grad if w.grad is not None else getattr(run, "weight_param", lambda: None)().grad
        return time.perf_counter() - t0, time.process_time() - c0, out.detach(), x.grad, wgrad

    # correctness (first pass) against the complex128 oracle
    t, c, out, dx, dw = one_pass()
    ora = torch.load(args.oracle)
    res["err_out"] = float((out.double() - ora["out"][:B]).abs().max())
    res["err_dx"] = float((dx.double() - _oracle_dx(ora, B, x0, w0, cot, n)).abs().max()) if dx is not None else None
    if dw is not None:
        ref_dw = ora["dw"] if B == args.batch else _oracle_dw(n, x0, w0, cot)
        res["err_dw"] = float((dw.double().reshape(-1) - ref_dw.reshape(-1)).abs().max())
    tol = 1e-3
    res["agrees"] = bool(res["err_out"] < tol and (res["err_dx"] or 0) < tol and (res.get("err_dw") or 0) < tol)
    times, cpu = [], []
    if t < args.max_seconds:
        budget = args.max_seconds - t
        t_w, *_ = one_pass()  # warm-up (the first pass above also warmed up)
        budget -= t_w
        for _ in range(args.repeats):
            if budget < 0 and times:
                break
            tt, cc, *_ = one_pass()
            times.append(tt)
            cpu.append(cc)
            budget -= tt
    else:
        times, cpu = [t], [c]
        res["note"] = "1 pass (first pass exceeded --max-seconds)"
    scale = args.batch / B
    res["times_s"] = [s * scale for s in times]
    res["median_s"] = statistics.median(times) * scale
    res["cpu_median_s"] = statistics.median(cpu) * scale
    res["estimated"] = B != args.batch
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if hasattr(run, "info"):
        res.update(run.info())
    if system.startswith("qnn_"):
        res["aten_ops_per_pass"] = count_aten_ops(one_pass)
    return res


def count_aten_ops(fn) -> int:
    """ATen operator calls in one pass (forward + backward), counted with TorchDispatchMode."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.n


def _oracle_dx(ora, B, x0, w0, cot, n):
    return ora["dx"][:B]  # rows are independent, so the full-batch oracle's rows apply


def _oracle_dw(n, x0, w0, cot):
    """d/dw for a sub-batch: recompute with the qnn oracle in complex128."""
    import torch

    from qnn.engines.torch_engine import TorchEngine

    w = w0.double().clone().requires_grad_()
    out = TorchEngine(mode="blocked").run(qnn_circuit(n), x0.double(), w.reshape(-1))
    (out * cot.double()).sum().backward()
    return w.grad


def bandwidth(n, B) -> dict:
    """Copy bandwidth at the state size (complex64, B x 2^n) and the streaming bound of perf.md:
    every gate reads+writes the state forward, the backward reads+writes the gradient and reads
    the saved input of each parametrised gate: (4 G + Gp) * B * 2^n * 8 bytes."""
    import torch

    state = torch.randn(B, 2**n, dtype=torch.complex64)
    dst = torch.empty_like(state)
    for _ in range(2):
        dst.copy_(state)
    ts = []
    reps = max(3, min(200, int(2e9 / state.nbytes)))
    for _ in range(reps):
        t0 = time.perf_counter()
        dst.copy_(state)
        ts.append(time.perf_counter() - t0)
    t = statistics.median(ts)
    bw = 2 * state.nbytes / t
    G = n + 2 * N_LAYERS * n
    Gp = n + N_LAYERS * n
    streamed = (4 * G + Gp) * state.nbytes
    # per-op dispatch cost: a tiny complex multiply, the floor for small registers
    a = torch.ones(1, dtype=torch.complex64)
    for _ in range(100):
        a * a
    t0 = time.perf_counter()
    for _ in range(2000):
        a * a
    per_op = (time.perf_counter() - t0) / 2000
    return {"system": "bandwidth", "n": n, "state_bytes": state.nbytes, "copy_GBps": bw / 1e9,
            "streamed_bytes": streamed, "bound_s": streamed / bw, "dispatch_s_per_op": per_op}


# ----------------------------------------------------------------------------- driver
def run_worker(system, n, args, oracle, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--system", system, "--n", str(n), "--threads",
           str(args.threads), "--repeats", str(args.repeats), "--max-seconds", str(args.max_seconds),
           "--batch", str(args.batch), "--oracle", oracle]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if args.thp:
        env["THP_MEM_ALLOC_ENABLE"] = "1"  # the same for every system (torch's huge-page allocation)
    else:
        env.pop("THP_MEM_ALLOC_ENABLE", None)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"system": system, "n": n, "skipped": f"exceeded the {timeout:.0f} s wall limit (--max-seconds)"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return {"system": system, "n": n, "skipped": "failed: " + " | ".join(tail)}
    return json.loads(lines[-1])


def fmt_time(s):
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def driver(args):
    ns = args.n
    systems = []
    for s in args.systems:
        systems += QNN_SYSTEMS if s == "qnn" else PEER_SYSTEMS if s == "peers" else [s]
    load0 = os.getloadavg()
    t_start = time.time()
    results = []
    bws = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in ns:
            oracle = os.path.join(tmp, f"oracle_{n}.pt")
            r = run_worker("oracle", n, args, oracle, timeout=3600)
            if "skipped" in r:
                print(f"n={n}: oracle failed: {r['skipped']}", flush=True)
                continue
            bws[n] = run_worker("bandwidth", n, args, oracle, timeout=600)
            for s in systems:
                if s == "qnn_unitary" and n > 10:
                    results.append({"system": s, "n": n, "skipped": "4^n memory/flops; only for n <= 10"})
                    continue
                if s == "qnn_gates" and n > 12:
                    results.append({"system": s, "n": n, "skipped": "one-op-per-gate reference; only for n <= 12"})
                    continue
                r = run_worker(s, n, args, oracle, timeout=args.max_seconds * 3 + 120)
                results.append(r)
                msg = r.get("skipped") or (f"{fmt_time(r['median_s'])}{' est.' if r.get('estimated') else ''}, "
                                           f"agrees={r['agrees']} (out {r['err_out']:.1e}, dx {r['err_dx']:.1e}, "
                                           f"dw {r.get('err_dw', float('nan')):.1e}), rss {r['peak_rss_mb']:.0f} MB")
                print(f"  n={n:2d} {s:14s} {msg}", flush=True)
    load1 = os.getloadavg()
    table = render(results, bws, ns, systems)
    print()
    print(table)
    print(f"\nload average (1, 5, 15 min): start {load0}, end {load1}; threads={args.threads}; B={args.batch}; "
          f"THP_MEM_ALLOC_ENABLE={'1' if args.thp else 'unset'}")
    host = socket.gethostname()
    out = {
        "host": host, "platform": platform.platform(), "python": sys.version.split()[0],
        "threads": args.threads, "batch": args.batch, "n": ns, "load_start": load0, "load_end": load1,
        "thp_mem_alloc": args.thp,
        "seconds": time.time() - t_start, "results": results, "bandwidth": list(bws.values()), "table": table,
        "versions": versions(),
    }
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = args.out or os.path.join(HERE, "results", f"layer_{host}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")


def versions():
    v = {}
    for mod in ("torch", "pennylane", "pennylane_lightning", "qiskit", "qiskit_machine_learning", "numpy"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            v[mod] = None
    return v


def render(results, bws, ns, systems):
    by = {(r["system"], r["n"]): r for r in results}
    fastest_peer = {}
    for n in ns:
        peers = [by[(s, n)]["median_s"] for s in PEER_SYSTEMS if (s, n) in by and "median_s" in by[(s, n)]]
        if peers:
            fastest_peer[n] = min(peers)
    head = "| system | " + " | ".join(f"n={n}" for n in ns) + " |"
    lines = [head, "|" + "---|" * (len(ns) + 1)]
    for s in systems:
        cells = []
        for n in ns:
            r = by.get((s, n))
            if r is None:
                cells.append("–")
            elif "skipped" in r:
                cells.append("skipped: " + r["skipped"][:48])
            else:
                cell = fmt_time(r["median_s"]) + (" est." if r.get("estimated") else "")
                if n in fastest_peer:
                    cell += f" ({r['median_s'] / fastest_peer[n]:.2f}×)"
                if not r.get("agrees", True):
                    cell += " DISAGREES"
                if r.get("note"):
                    cell += " [1 pass]"
                cells.append(cell)
        lines.append(f"| {LABELS.get(s, s)} | " + " | ".join(cells) + " |")
    cells = []
    for n in ns:
        b = bws.get(n)
        cells.append(f"{fmt_time(b['bound_s'])} @ {b['copy_GBps']:.0f} GB/s" if b and "bound_s" in b else "–")
    lines.append("| bandwidth bound (perf.md streaming model) | " + " | ".join(cells) + " |")
    cells = []
    for n in ns:
        r = by.get(("qnn_auto", n))
        cells.append(f"{fmt_time(r['cpu_median_s'])} (path {r.get('path')})" if r and "cpu_median_s" in r else "–")
    lines.append("| qnn auto: CPU time per pass (process_time; robust to load) | " + " | ".join(cells) + " |")
    cells = []
    for n in ns:
        r = by.get(("qnn_auto", n))
        cells.append(f"{r['peak_rss_mb']:.0f} MB" if r and "peak_rss_mb" in r else "–")
    lines.append("| qnn auto: peak RSS | " + " | ".join(cells) + " |")
    cells = []
    for n in ns:
        r, b = by.get(("qnn_auto", n)), bws.get(n)
        cells.append(f"{r['median_s'] / b['bound_s']:.2f}×" if r and "median_s" in r and b and "bound_s" in b else "–")
    lines.append("| qnn auto / bandwidth bound | " + " | ".join(cells) + " |")
    cells = []
    for n in ns:
        r, b = by.get(("qnn_auto", n)), bws.get(n)
        if r and "aten_ops_per_pass" in r and b and "dispatch_s_per_op" in b:
            floor = r["aten_ops_per_pass"] * b["dispatch_s_per_op"]
            bound = max(floor, b["bound_s"])
            cells.append(f"{r['aten_ops_per_pass']} ops x {b['dispatch_s_per_op'] * 1e6:.1f} us = {fmt_time(floor)}; "
                         f"auto / max(bw, dispatch) = {r['median_s'] / bound:.2f}×")
        else:
            cells.append("–")
    lines.append("| qnn auto: dispatch floor | " + " | ".join(cells) + " |")
    lines.append("\nratios (×) are against the fastest peer at that n; 'est.' = timed at a small batch and scaled "
                 "by 256/B (cost is linear in B).")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="n in {4, 8}, 3 repeats")
    p.add_argument("--n", type=int, nargs="+", default=None)
    p.add_argument("--systems", nargs="+", default=["qnn", "peers"],
                   help="'qnn', 'peers' or system names: " + ", ".join(QNN_SYSTEMS + PEER_SYSTEMS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--max-seconds", type=float, default=120.0, help="time budget per (system, n)")
    p.add_argument("--batch", type=int, default=B_DEFAULT)
    p.add_argument("--out", default=None)
    p.add_argument("--no-thp", dest="thp", action="store_false",
                   help="do not set THP_MEM_ALLOC_ENABLE=1 in the workers (it is set by default, for every system)")
    p.add_argument("--system", default=None, help=argparse.SUPPRESS)
    p.add_argument("--oracle", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.n is None:
        args.n = [4, 8] if args.quick else [4, 8, 12, 16]
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.system:
        print(json.dumps(worker(args)), flush=True)
    else:
        driver(args)


if __name__ == "__main__":
    main()
