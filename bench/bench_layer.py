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

QNN_SYSTEMS = ["qnn_auto", "qnn_blocked", "qnn_adjoint", "qnn_unitary", "qnn_gates", "qnn_small", "qnn_mps"]
PEER_SYSTEMS = ["tc_jax", "tc_jax_probs", "tc_jax_mps", "tc_torch", "pyqtorch", "qulacs", "pl_default", "pl_lightning",
                "qiskit_ml", "torchquantum"]
# peers run by ``--systems fast``: the ones within ~30x of qnn (qiskit_ml / lightning take minutes)
FAST_PEERS = ["tc_jax", "tc_jax_probs", "tc_torch", "pyqtorch", "qulacs", "pl_default"]
LABELS = {
    "qnn_auto": "qnn torch engine, mode=auto",
    "qnn_blocked": "qnn torch, blocked (autograd)",
    "qnn_adjoint": "qnn torch, adjoint",
    "qnn_unitary": "qnn torch, fused unitary",
    "qnn_small": "qnn torch, small (fused closed form)",
    "qnn_mps": "qnn torch, exact MPS (no truncation)",
    "qnn_gates": "qnn torch, one op per gate",
    "pl_default": "PL default.qubit, backprop, TorchLayer, broadcast",
    "pl_lightning": "PL lightning.qubit, adjoint, device_vjp=True",
    "qiskit_ml": "Qiskit-ML EstimatorQNN+TorchConnector (est.)",
    "torchquantum": "TorchQuantum",
    "tc_jax": "tensorcircuit-ng JAX, jit+vmap+value_and_grad, expectation_ps",
    "tc_jax_mps": "tensorcircuit-ng JAX MPSCircuit (exact, no truncation), jit+vmap+value_and_grad",
    "tc_jax_probs": "tensorcircuit-ng JAX, jit+vmap+value_and_grad, <Z> from probs",
    "tc_torch": "tensorcircuit-ng pytorch backend, vmap + autograd",
    "pyqtorch": "pyqtorch, batched, autograd, <Z> from probs",
    "qulacs": "qulacs, per sample, backprop (C++)",
}
# Qiskit ML loops over samples, observables and parameter shifts: time a small batch and
# scale by B / B_small (linear in B), labelled "est.".
QISKIT_B = {4: 4, 8: 1, 12: 1}


# ----------------------------------------------------------------------------- data
# Two workloads.  ``layer`` (issue 2): one circuit, RY angle embedding of n inputs, 2 layers,
# B=256.  ``mixed`` (issue 14, as in KACQ-DCNN): three 4-qubit circuits per step, each an
# amplitude embedding of 16 values + 1 StronglyEntanglingLayer + <Z> on every wire, batch 32;
# a step is the three forwards and one backward of sum_c sum(out_c * g_c).
WORKLOADS = {
    "layer": {"C": 1, "L": N_LAYERS, "embed": "angle", "B": B_DEFAULT},
    "mixed": {"C": 3, "L": 1, "embed": "amplitude", "B": 32},
}


def spec_of(workload: str, n: int) -> dict:
    sp = dict(WORKLOADS[workload], n=n)
    sp["d"] = 2**n if sp["embed"] == "amplitude" else n
    return sp


def make_data(n: int, B: int, dtype, workload: str = "layer"):
    """``x (C, B, d)``, ``w (C, L, n, 3)``, ``cot (C, B, n)``."""
    import torch

    sp = spec_of(workload, n)
    C, L, d = sp["C"], sp["L"], sp["d"]
    g = torch.Generator().manual_seed(1234 + n + (0 if workload == "layer" else 7))
    if sp["embed"] == "angle":
        x = torch.rand(C, B, d, generator=g, dtype=torch.float64) * math.pi
    else:
        x = torch.rand(C, B, d, generator=g, dtype=torch.float64) + 0.05
    w = torch.rand(C, L, n, 3, generator=g, dtype=torch.float64) * 2 * math.pi
    cot = torch.randn(C, B, n, generator=g, dtype=torch.float64)
    return x.to(dtype), w.to(dtype), cot.to(dtype)


def qnn_circuit(n: int, workload: str = "layer"):
    import qnn

    sp = spec_of(workload, n)
    c = qnn.Circuit(n)
    if sp["embed"] == "angle":
        qnn.angle_embedding(c, rotation="Y")
    else:
        qnn.amplitude_embedding(c, sp["d"])
    qnn.strongly_entangling_layers(c, sp["L"], ranges=[1] * sp["L"])
    c.measure_z()
    return c


# ----------------------------------------------------------------------------- systems
# A *torch* system's factory returns ``run(x (B, d), w (L, n, 3)) -> out (B, n)`` for one
# circuit (the worker makes one per circuit of the workload and differentiates with torch
# autograd).  A *full-pass* system's factory returns ``full(x, w, cot) -> (out, dx, dw)`` for
# the whole workload (all circuits, arrays of shapes (C, B, n), (C, B, d), (C, L, n, 3)),
# which is how JAX (jit of value_and_grad) and qulacs (C++ backprop) are used.
def make_qnn(sp, B, mode):
    import torch

    from qnn.engines.torch_engine import TorchEngine

    c = qnn_circuit(sp["n"], sp["workload"])
    eng = TorchEngine(mode=mode)
    if mode != "auto":
        need = eng.estimate_bytes(c, B, mode)
        limit = eng._limit(torch.device("cpu"))
        if need > 0.8 * limit:
            raise SkipSystem(f"estimated {need / 2**30:.1f} GiB > 80% of available {limit / 2**30:.1f} GiB")

    def run(x, w):
        return eng.run(c, x, w.reshape(-1))

    # the mixed workload's circuits share one structure: one call for all of them, as
    # qnn.layers.forward_many (and so KACQ-DCNN) makes it
    run.many = lambda x, w: eng.run_many(c, x, w.reshape(w.shape[0], -1))
    run.info = lambda: {"path": eng.last_mode}
    return run


def make_pl(sp, B, device_name):
    import pennylane as qml
    import torch

    n, L = sp["n"], sp["L"]
    dev = qml.device(device_name, wires=n)
    kw = {"diff_method": "backprop"} if device_name == "default.qubit" else {"diff_method": "adjoint", "device_vjp": True}
    if device_name == "default.qubit":
        est = 150 * B * 2**n * 8  # perf.md: 2.5 GB peak at n=12, B=256 (about 300 states)
        avail = _available()
        if est > 0.8 * avail:
            raise SkipSystem(f"estimated {est / 2**30:.0f} GiB > 80% of available {avail / 2**30:.0f} GiB")

    @qml.qnode(dev, interface="torch", **kw)
    def circ(inputs, weights):
        if sp["embed"] == "angle":
            qml.AngleEmbedding(inputs, wires=range(n), rotation="Y")
        else:
            qml.AmplitudeEmbedding(inputs, wires=range(n), normalize=True)
        qml.StronglyEntanglingLayers(weights, wires=range(n), ranges=[1] * L)
        return [qml.expval(qml.PauliZ(i)) for i in range(n)]

    layer = qml.qnn.TorchLayer(circ, {"weights": (L, n, 3)})

    def run(x, w):
        with torch.no_grad():
            layer.weights.copy_(w)
        layer.weights.grad = None
        return layer(x)

    run.weight_param = lambda: layer.weights
    return run


def make_qiskit(sp, B):
    import numpy as np
    import torch
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_machine_learning.connectors import TorchConnector
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    n, L = sp["n"], sp["L"]
    if sp["embed"] != "angle":
        raise SkipSystem("runner written for the angle-embedding workload only")
    xp = ParameterVector("x", n)
    wp = ParameterVector("w", L * n * 3)
    qc = QuantumCircuit(n)
    for i in range(n):
        qc.ry(xp[i], i)
    for layer in range(L):
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


def make_tc_jax(sp, B, readout):
    """tensorcircuit-ng on JAX in its idiomatic fast form: one circuit function per sample,
    ``jax.vmap`` over the batch (and the circuits), ``jax.value_and_grad`` of the loss, all under
    ``jax.jit``; complex64."""
    import tensorcircuit as tc

    tc.set_backend("jax")
    tc.set_dtype("complex64")
    import jax
    import jax.numpy as jnp
    import numpy as np

    n, L = sp["n"], sp["L"]
    if readout == "mps" and sp["embed"] != "angle":
        raise SkipSystem("MPSCircuit runner written for the angle embedding only")

    def circuit(x, w):  # x (d,), w (L, n, 3) -> (n,)
        if readout == "mps":  # its matrix-product-state simulator, no truncation (exact)
            c = tc.MPSCircuit(n)
            for i in range(n):
                c.ry(i, theta=x[i])
        elif sp["embed"] == "angle":
            c = tc.Circuit(n)
            for i in range(n):
                c.ry(i, theta=x[i])
        else:
            c = tc.Circuit(n, inputs=(x / jnp.linalg.norm(x)).astype(jnp.complex64))
        for layer in range(L):
            for i in range(n):  # Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)
                c.rz(i, theta=w[layer, i, 0])
                c.ry(i, theta=w[layer, i, 1])
                c.rz(i, theta=w[layer, i, 2])
            for i in range(n):
                c.cnot(i, (i + 1) % n)
        if readout == "ps":
            return jnp.stack([c.expectation_ps(z=[i]) for i in range(n)]).real
        if readout == "mps":
            return jnp.stack([c.expectation((tc.gates.z(), [i])) for i in range(n)]).real
        p = (jnp.abs(c.state()) ** 2).reshape((2,) * n)
        return jnp.stack([p.take(0, axis=i).sum() - p.take(1, axis=i).sum() for i in range(n)])

    batched = jax.vmap(jax.vmap(circuit, (0, None)), (0, 0))  # (C, B, d), (C, L, n, 3)

    def loss(x, w, g):
        out = batched(x, w)
        return jnp.sum(out * g), out

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))

    def full(x, w, cot):
        (_, out), (dx, dw) = step(x, w, cot)
        jax.block_until_ready((out, dx, dw))
        return out, dx, dw

    full.prepare = lambda a: jnp.asarray(np.asarray(a, dtype=np.float32))
    return full


def make_tc_torch(sp, B):
    """tensorcircuit-ng on its pytorch backend: ``K.vmap`` (torch.func) over the batch and
    torch autograd; complex64."""
    import tensorcircuit as tc

    K = tc.set_backend("pytorch")
    tc.set_dtype("complex64")
    import torch

    n, L = sp["n"], sp["L"]

    def circuit(x, w):
        if sp["embed"] == "angle":
            c = tc.Circuit(n)
            for i in range(n):
                c.ry(i, theta=x[i])
        else:
            c = tc.Circuit(n, inputs=(x / torch.linalg.norm(x)).to(torch.complex64))
        for layer in range(L):
            for i in range(n):
                c.rz(i, theta=w[layer, i, 0])
                c.ry(i, theta=w[layer, i, 1])
                c.rz(i, theta=w[layer, i, 2])
            for i in range(n):
                c.cnot(i, (i + 1) % n)
        p = (c.state().abs() ** 2).reshape((2,) * n)
        return torch.stack([p.select(i, 0).sum() - p.select(i, 1).sum() for i in range(n)])

    fv = K.vmap(circuit, vectorized_argnums=0)
    return lambda x, w: fv(x, w)


def make_pyqtorch(sp, B):
    """pyqtorch: a batched (2, ..., 2, B) state, torch autograd; <Z_i> from the probabilities of
    one run (faster than one ``expectation`` per observable); complex64."""
    import pyqtorch as pyq
    import torch

    n, L = sp["n"], sp["L"]
    ops = [pyq.RY(i, f"x{i}") for i in range(n)] if sp["embed"] == "angle" else []
    for layer in range(L):
        for i in range(n):
            ops += [pyq.RZ(i, f"w{layer}_{i}_0"), pyq.RY(i, f"w{layer}_{i}_1"), pyq.RZ(i, f"w{layer}_{i}_2")]
        ops += [pyq.CNOT(i, (i + 1) % n) for i in range(n)]
    circ = pyq.QuantumCircuit(n, ops).to(dtype=torch.complex64)
    names = [(f"w{layer}_{i}_{k}", layer, i, k) for layer in range(L) for i in range(n) for k in range(3)]

    def run(x, w):
        vals = {nm: w[layer, i, k] for nm, layer, i, k in names}
        Bx = x.shape[0]
        if sp["embed"] == "angle":
            vals.update({f"x{i}": x[:, i] for i in range(n)})
            st = pyq.zero_state(n, batch_size=Bx, dtype=torch.complex64)
        else:
            a = x / x.norm(dim=1, keepdim=True)
            st = a.to(torch.complex64).transpose(0, 1).reshape(*([2] * n), Bx)
        p = circ.run(st, vals).abs() ** 2  # (2,)*n + (B,)
        return torch.stack([p.select(i, 0).reshape(-1, Bx).sum(0) - p.select(i, 1).reshape(-1, Bx).sum(0)
                            for i in range(n)], 1)

    return run


def make_qulacs(sp, B):
    """qulacs: its C++ simulator per sample (no batching), one ``backprop`` per sample with the
    observable sum_i g_bi Z_i (a VJP); complex128."""
    import numpy as np
    from qulacs import GeneralQuantumOperator, Observable, ParametricQuantumCircuit, QuantumState
    from qulacs.gate import CNOT

    n, L = sp["n"], sp["L"]
    if sp["embed"] != "angle":
        raise SkipSystem("backprop gives no gradient w.r.t. a loaded (amplitude-embedded) state")
    q = lambda i: n - 1 - i  # noqa: E731  (qulacs: qubit 0 is the least significant bit)
    c = ParametricQuantumCircuit(n)
    for i in range(n):
        c.add_parametric_RY_gate(q(i), 0.0)
    for _ in range(L):
        for i in range(n):
            c.add_parametric_RZ_gate(q(i), 0.0)
            c.add_parametric_RY_gate(q(i), 0.0)
            c.add_parametric_RZ_gate(q(i), 0.0)
        for i in range(n):
            c.add_gate(CNOT(q(i), q((i + 1) % n)))
    zs = []
    for i in range(n):
        o = Observable(n)
        o.add_operator(1.0, f"Z {q(i)}")
        zs.append(o)
    st = QuantumState(n)

    def full(x, w, cot):
        C, Bx = x.shape[0], x.shape[1]
        out, dx, dw = np.empty((C, Bx, n)), np.empty((C, Bx, n)), np.zeros(w.shape)
        for ci in range(C):
            wf = w[ci].reshape(-1)
            for b in range(Bx):
                # qulacs' rotations are exp(+i t P / 2): pass -t and negate the gradients
                for k, v in enumerate(np.concatenate([x[ci, b], wf])):
                    c.set_parameter(k, -float(v))
                st.set_zero_state()
                c.update_quantum_state(st)
                for i in range(n):
                    out[ci, b, i] = zs[i].get_expectation_value(st)
                obs = GeneralQuantumOperator(n)
                for i in range(n):
                    obs.add_operator(float(cot[ci, b, i]), f"Z {q(i)}")
                gr = -np.asarray(c.backprop(obs))
                dx[ci, b] = gr[:n]
                dw[ci] += gr[n:].reshape(w.shape[1:])
        return out, dx, dw

    full.prepare = lambda a: np.asarray(a, dtype=np.float64)
    return full


class SkipSystem(Exception):
    pass


def _available() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:
        return 1 << 40


def make_system(system, sp, B):
    """``(kind, factory)``: kind 'torch' (factory() -> one circuit's run) or 'full'."""
    n = sp["n"]
    if system.startswith("qnn_"):
        return "torch", lambda: make_qnn(sp, B, system[4:])
    if system == "pl_default":
        return "torch", lambda: make_pl(sp, B, "default.qubit")
    if system == "pl_lightning":
        return "torch", lambda: make_pl(sp, B, "lightning.qubit")
    if system == "qiskit_ml":
        if sp["workload"] != "layer":
            raise SkipSystem("runner written for the layer workload only")
        if n not in QISKIT_B:
            raise SkipSystem(f"n={n}: ~{256 * 15 * 4 ** ((n - 12) / 2):.0f} s per pass estimated; not run")
        return "torch", lambda: make_qiskit(sp, B)
    if system == "torchquantum":
        try:
            import torchquantum  # noqa: F401
        except Exception as e:  # noqa: BLE001
            raise SkipSystem(f"not importable ({type(e).__name__}: {e})")
        raise SkipSystem("importable, but no TorchQuantum runner is written for this version")
    if system in ("tc_jax", "tc_jax_probs", "tc_jax_mps"):
        f = make_tc_jax(sp, B, {"tc_jax": "ps", "tc_jax_probs": "probs", "tc_jax_mps": "mps"}[system])
        return "full", lambda: f
    if system == "tc_torch":
        return "torch", lambda: make_tc_torch(sp, B)
    if system == "pyqtorch":
        return "torch", lambda: make_pyqtorch(sp, B)
    if system == "qulacs":
        f = make_qulacs(sp, B)
        return "full", lambda: f
    raise SystemExit(f"unknown system {system!r}")


# ----------------------------------------------------------------------------- worker
def run_oracle(sp, x, w, cot):
    """qnn in complex128 (float64 in): ``out``, ``dx``, ``dw`` for every circuit."""
    import torch

    from qnn.engines.torch_engine import TorchEngine

    x = x.double().clone().requires_grad_()
    w = w.double().clone().requires_grad_()
    eng = TorchEngine(mode="adjoint" if sp["n"] >= 14 else "blocked")
    out = torch.stack([eng.run(qnn_circuit(sp["n"], sp["workload"]), x[c], w[c].reshape(-1))
                       for c in range(x.shape[0])])
    (out * cot.double()).sum().backward()
    return out.detach(), x.grad, w.grad


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    n, B = args.n[0], args.batch
    system = args.system
    sp = spec_of(args.workload, n)
    sp["workload"] = args.workload
    res = {"system": system, "n": n, "B": B, "threads": args.threads, "workload": args.workload}
    if system == "oracle":
        x, w, cot = make_data(n, B, torch.float64, args.workload)
        out, dx, dw = run_oracle(sp, x, w, cot)
        torch.save({"out": out, "dx": dx, "dw": dw}, args.oracle)
        return res
    if system == "bandwidth":
        return bandwidth(n, B)
    if system == "qiskit_ml" and n in QISKIT_B:
        B = QISKIT_B[n]
        res["B_timed"] = B
    try:
        kind, factory = make_system(system, sp, B)
        runs = [factory() for _ in range(sp["C"])] if kind == "torch" else factory()
    except SkipSystem as e:
        res["skipped"] = str(e)
        return res
    except ImportError as e:
        res["skipped"] = f"not importable ({e})"
        return res

    dtype = torch.float64 if system == "qiskit_ml" else torch.float32
    x0, w0, cot = make_data(n, args.batch, dtype, args.workload)
    x0, cot = x0[:, :B].contiguous(), cot[:, :B].contiguous()

    if kind == "torch" and len(runs) == 1:
        # one circuit (the layer workload): the user's step, out = layer(x), loss.backward(),
        # with no copies axis to index or stack in the graph
        run, x1, w1, cot1 = runs[0], x0[0].contiguous(), w0[0].contiguous(), cot[0].contiguous()

        def one_pass():
            x = x1.clone().requires_grad_()
            w = w1.clone().requires_grad_()
            t0 = time.perf_counter()
            c0 = time.process_time()
            out = run(x, w)
            (out.to(cot1.dtype) * cot1).sum().backward()
            wgrad = w.grad if w.grad is not None else run.weight_param().grad.reshape(w1.shape)
            return time.perf_counter() - t0, time.process_time() - c0, out.detach()[None], x.grad[None], wgrad[None]
    elif kind == "torch":
        def one_pass():
            x = x0.clone().requires_grad_()
            w = w0.clone().requires_grad_()
            t0 = time.perf_counter()
            c0 = time.process_time()
            if hasattr(runs[0], "many"):  # all circuits in one call
                out = runs[0].many(x, w)
            else:
                out = torch.stack([r(x[c], w[c]) for c, r in enumerate(runs)])
            (out.to(cot.dtype) * cot).sum().backward()
            wgrad = w.grad
            if wgrad is None:
                wgrad = torch.stack([r.weight_param().grad.reshape(w0.shape[1:]) for r in runs])
            return time.perf_counter() - t0, time.process_time() - c0, out.detach(), x.grad, wgrad
    else:
        fx, fw, fg = runs.prepare(x0), runs.prepare(w0), runs.prepare(cot)

        def one_pass():
            t0 = time.perf_counter()
            c0 = time.process_time()
            out, dx, dw = runs(fx, fw, fg)
            t, c = time.perf_counter() - t0, time.process_time() - c0
            import numpy as np

            return t, c, *(torch.as_tensor(np.asarray(a)) for a in (out, dx, dw))

    # correctness (first pass, which also pays any compilation) against the complex128 oracle
    t, c, out, dx, dw = one_pass()
    res["first_s"] = t
    ora = torch.load(args.oracle)
    res["err_out"] = float((out.double() - ora["out"][:, :B]).abs().max())
    res["err_dx"] = float((dx.double() - ora["dx"][:, :B]).abs().max()) if dx is not None else None
    if dw is not None:
        ref_dw = ora["dw"] if B == args.batch else run_oracle(sp, x0, w0, cot)[2]
        res["err_dw"] = float((dw.double().reshape(-1) - ref_dw.reshape(-1)).abs().max())
    tol = 1e-3
    res["agrees"] = bool(res["err_out"] < tol and (res["err_dx"] or 0) < tol and (res.get("err_dw") or 0) < tol)
    times, cpu = [], []
    if t < args.max_seconds or kind == "full":  # a compiled peer's first call is its compilation
        budget = max(args.max_seconds - t, 0.0)
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
    res["cpu_s"] = [s * scale for s in cpu]
    res["median_s"] = statistics.median(times) * scale
    res["cpu_median_s"] = statistics.median(cpu) * scale
    res["estimated"] = B != args.batch
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if kind == "torch" and hasattr(runs[0], "info"):
        res.update(runs[0].info())
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
def run_worker(system, n, threads, args, oracle, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--system", system, "--n", str(n), "--threads",
           str(threads), "--repeats", str(args.repeats), "--max-seconds", str(args.max_seconds),
           "--batch", str(args.batch), "--oracle", oracle, "--workload", args.workload]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), JAX_PLATFORMS="cpu",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # XLA's CPU backend: one intra-op thread when asked for one (it uses every core otherwise)
    xla = env.get("XLA_FLAGS", "")
    if threads == 1:
        xla += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env["XLA_FLAGS"] = xla.strip()
    if args.thp:
        env["THP_MEM_ALLOC_ENABLE"] = "1"  # the same for every system (torch's huge-page allocation)
    else:
        env.pop("THP_MEM_ALLOC_ENABLE", None)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"system": system, "n": n, "threads": threads,
                "skipped": f"exceeded the {timeout:.0f} s wall limit (--max-seconds)"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return {"system": system, "n": n, "threads": threads, "skipped": "failed: " + " | ".join(tail)}
    return json.loads(lines[-1])


def fmt_time(s):
    return f"{s * 1e3:.2f} ms" if s < 0.01 else f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def merge_rounds(records):
    """One record per (system, n, threads): the rounds' timed passes pooled, median over all."""
    groups = {}
    for r in records:
        groups.setdefault((r["system"], r["n"], r.get("threads")), []).append(r)
    merged = []
    for rs in groups.values():
        ok = [r for r in rs if "median_s" in r]
        if not ok:
            merged.append(rs[0])
            continue
        m = dict(ok[0])
        m["times_s"] = [t for r in ok for t in r["times_s"]]
        m["cpu_s"] = [t for r in ok for t in r.get("cpu_s", [r["cpu_median_s"]])]
        m["median_s"] = statistics.median(m["times_s"])
        m["cpu_median_s"] = statistics.median(m["cpu_s"])
        m["round_medians_s"] = [r["median_s"] for r in ok]
        m["first_s"] = statistics.median([r["first_s"] for r in ok if "first_s" in r] or [float("nan")])
        m["agrees"] = all(r.get("agrees", True) for r in ok)
        for k in ("err_out", "err_dx", "err_dw"):
            vals = [r[k] for r in ok if r.get(k) is not None]
            m[k] = max(vals) if vals else None
        m["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
        m["rounds"] = len(ok)
        merged.append(m)
    return merged


def expand_systems(names):
    systems = []
    for s in names:
        systems += (QNN_SYSTEMS if s == "qnn" else PEER_SYSTEMS if s == "peers" else FAST_PEERS if s == "fast"
                    else [s])
    return list(dict.fromkeys(systems))


def driver(args):
    ns = args.n
    systems = expand_systems(args.systems)
    load0 = os.getloadavg()
    t_start = time.time()
    records, loads = [], []
    bws = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in ns:
            oracle = os.path.join(tmp, f"oracle_{n}.pt")
            r = run_worker("oracle", n, 1, args, oracle, timeout=3600)
            if "skipped" in r:
                print(f"n={n}: oracle failed: {r['skipped']}", flush=True)
                continue
            if args.workload == "layer":
                bws[n] = run_worker("bandwidth", n, max(args.threads), args, oracle, timeout=600)
            # rounds x threads x systems, so that every system sees the same load in turn
            for rnd in range(args.rounds):
                for th in args.threads:
                    for s in systems:
                        if s == "qnn_unitary" and n > 10:
                            skip = "4^n memory/flops; only for n <= 10"
                        elif s == "qnn_gates" and n > 12:
                            skip = "one-op-per-gate reference; only for n <= 12"
                        elif s in args.skip_at.get(n, ()):
                            skip = f"not run at n={n} (--skip-at)"
                        else:
                            skip = None
                        if skip:
                            if rnd == 0:
                                records.append({"system": s, "n": n, "threads": th, "skipped": skip})
                            continue
                        r = run_worker(s, n, th, args, oracle, timeout=args.max_seconds * 3 + 180)
                        r.setdefault("threads", th)
                        r["load1"] = os.getloadavg()[0]
                        loads.append(r["load1"])
                        records.append(r)
                        msg = r.get("skipped") or (
                            f"{fmt_time(r['median_s'])}{' est.' if r.get('estimated') else ''} "
                            f"(first call {fmt_time(r['first_s'])}), agrees={r['agrees']} "
                            f"(out {r['err_out']:.1e}, dx {r['err_dx'] if r['err_dx'] is None else format(r['err_dx'], '.1e')}, "
                            f"dw {r.get('err_dw', float('nan')):.1e}), rss {r['peak_rss_mb']:.0f} MB, load {r['load1']:.2f}")
                        print(f"  n={n:2d} t={th} round {rnd + 1} {s:14s} {msg}", flush=True)
    load1 = os.getloadavg()
    results = merge_rounds(records)
    tables = []
    for th in args.threads:
        sub = [r for r in results if r.get("threads") == th]
        tables.append(f"### {args.workload} workload, {th} thread{'s' if th > 1 else ''}, B={args.batch}\n\n"
                      + render(sub, bws if th == max(args.threads) else {}, ns, systems, args.workload))
    table = "\n\n".join(tables)
    print()
    print(table)
    lo = f"{min(loads):.2f}-{max(loads):.2f}" if loads else "-"
    print(f"\nload average (1, 5, 15 min): start {load0}, end {load1}; 1-min load seen by the workers {lo}; "
          f"threads={args.threads}; rounds={args.rounds}; B={args.batch}; "
          f"THP_MEM_ALLOC_ENABLE={'1' if args.thp else 'unset'}")
    from qnn.training import run_record

    host = socket.gethostname()
    out = {
        "host": host, "platform": platform.platform(), "python": sys.version.split()[0], "workload": args.workload,
        "threads": args.threads, "rounds": args.rounds, "batch": args.batch, "n": ns, "load_start": load0,
        "load_end": load1, "worker_load1": [min(loads), max(loads)] if loads else None, "thp_mem_alloc": args.thp,
        "seconds": time.time() - t_start, "results": results, "records": records, "bandwidth": list(bws.values()),
        "table": table, "versions": versions(),
        "run": run_record(["python", *sys.argv]),  # git commit, packages, command
    }
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    suffix = "" if args.workload == "layer" else f"_{args.workload}"
    path = args.out or os.path.join(HERE, "results", f"layer{suffix}_{host}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")


def versions():
    from importlib import metadata

    v = {}
    for dist in ("torch", "pennylane", "pennylane_lightning", "qiskit", "qiskit-machine-learning", "numpy",
                 "tensorcircuit-ng", "jax", "jaxlib", "pyqtorch", "qulacs"):
        try:
            v[dist] = metadata.version(dist)
        except Exception:  # noqa: BLE001
            v[dist] = None
    return v


def render(results, bws, ns, systems, workload="layer"):
    by = {(r["system"], r["n"]): r for r in results}
    fastest_peer = {}
    for n in ns:
        peers = [(by[(s, n)]["median_s"], s) for s in PEER_SYSTEMS
                 if (s, n) in by and "median_s" in by[(s, n)] and by[(s, n)].get("agrees")]
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
                    cell += f" ({r['median_s'] / fastest_peer[n][0]:.2f}×)"
                if s not in QNN_SYSTEMS and r.get("first_s") is not None:
                    cell += f"; first call {fmt_time(r['first_s'])}"
                if not r.get("agrees", True):
                    cell += " DISAGREES"
                if r.get("note"):
                    cell += " [1 pass]"
                cells.append(cell)
        lines.append(f"| {LABELS.get(s, s)} | " + " | ".join(cells) + " |")
    cells = []
    for n in ns:
        r = by.get(("qnn_auto", n))
        if r and "median_s" in r and n in fastest_peer:
            t, s = fastest_peer[n]
            cells.append(f"**{t / r['median_s']:.2f}×** faster than {s}")
        else:
            cells.append("–")
    lines.append("| qnn auto: speed-up over the fastest peer | " + " | ".join(cells) + " |")
    if bws:
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
    if bws:
        cells = []
        for n in ns:
            r, b = by.get(("qnn_auto", n)), bws.get(n)
            if r and "aten_ops_per_pass" in r and b and "dispatch_s_per_op" in b:
                floor = r["aten_ops_per_pass"] * b["dispatch_s_per_op"]
                cells.append(f"{r['aten_ops_per_pass']} ops x {b['dispatch_s_per_op'] * 1e6:.1f} us = {fmt_time(floor)}")
            else:
                cells.append("–")
        lines.append("| qnn auto: ATen ops per pass (dispatch floor) | " + " | ".join(cells) + " |")
    lines.append(f"\nratios (×) are against the fastest peer at that n (among those that agree with the oracle); "
                 f"'first call' is the first pass (JAX: tracing + XLA compilation); 'est.' = timed at a small batch "
                 f"and scaled (cost is linear in B).")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="n in {4, 8}, 3 repeats")
    p.add_argument("--n", type=int, nargs="+", default=None)
    p.add_argument("--systems", nargs="+", default=["qnn", "peers"],
                   help="'qnn', 'peers', 'fast' (the peers within ~30x) or system names: "
                        + ", ".join(QNN_SYSTEMS + PEER_SYSTEMS))
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="layer",
                   help="'layer' (one circuit, B=256) or 'mixed' (three 4-qubit amplitude-embedded circuits "
                        "per step, B=32, as in KACQ-DCNN)")
    p.add_argument("--threads", type=int, nargs="+", default=[2], help="one or more thread counts")
    p.add_argument("--rounds", type=int, default=1, help="run every (system, n, threads) this many times, "
                   "interleaved; the timed passes of all rounds are pooled")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--max-seconds", type=float, default=120.0, help="time budget per (system, n)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--skip-at", nargs="*", default=[], metavar="N:SYSTEM",
                   help="do not run SYSTEM at N qubits, e.g. 16:qulacs")
    p.add_argument("--out", default=None)
    p.add_argument("--no-thp", dest="thp", action="store_false",
                   help="do not set THP_MEM_ALLOC_ENABLE=1 in the workers (it is set by default, for every system)")
    p.add_argument("--system", default=None, help=argparse.SUPPRESS)
    p.add_argument("--oracle", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.n is None:
        args.n = [4] if args.workload == "mixed" else [4, 8] if args.quick else [4, 8, 12, 16]
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.batch is None:
        args.batch = WORKLOADS[args.workload]["B"]
    skip = {}
    for item in args.skip_at:
        k, _, v = item.partition(":")
        skip.setdefault(int(k), set()).add(v)
    args.skip_at = skip
    if args.system:
        args.threads = args.threads[0]
        print(json.dumps(worker(args)), flush=True)
    else:
        driver(args)


if __name__ == "__main__":
    main()
