"""Benchmark: one QRNN optimiser step of the MNIST 0/1 configuration (W=8, I=2, S=2, ord=2, d=2,
1212 parameters; 100 sequences x 100 words = 99 steps, teacher forced, forward + backward),
fast batched simulator vs a straightforward per-sample implementation, in the same run.

    OMP_NUM_THREADS=2 python bench/bench_qrnn.py --threads 2 --repeats 5 --ref-sequences 10

The per-sample baseline (``qnn.qrnn._reference.per_sample_forward``: one state per sequence,
angles recomputed by a subset-matrix product at every neuron application, renormalised after
every neuron) is linear in the number of sequences; it is timed on ``--ref-sequences``
sequences and scaled to the workload (``--ref-sequences 100`` times the full workload).
Outputs (probabilities and gradients) are checked equal on those sequences.  Medians of
``--repeats`` runs for the fast path, of ``--ref-repeats`` for the baseline.  Wall-clock and
process CPU time are both reported, with the load average (the machine may be shared).
Results go to ``bench/results/bench_qrnn.json``.

Measured on the 2-core machine: on a quiet machine 1 and 2 threads take about the same time
(0.42 / 0.45 s per step); when other processes keep the cores busy, 2 threads are many times
slower (thousands of tiny ops, each paying an OpenMP fork/join on busy cores), so on a shared
machine use ``--threads 1`` (see experiments/qrnn/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qnn.qrnn import QRNN, qrnn_loss  # noqa: E402
from qnn.qrnn._reference import per_sample_forward  # noqa: E402


def workload(n_seq=100, length=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randint(0, 4, (n_seq, length), generator=g)
    Y = torch.zeros_like(X)
    Y[:, -1] = torch.randint(0, 2, (n_seq,), generator=g)
    return X, Y


def step_fast(model, X, Y):
    model.zero_grad()
    out = model(X, Y)
    loss = qrnn_loss(out.probs, Y[:, 1:], torch.arange(Y.shape[1] - 1) == Y.shape[1] - 2)
    loss.backward()
    return out, loss


def step_ref(model, X, Y):
    model.zero_grad()
    out = per_sample_forward(model, X, Y)
    loss = qrnn_loss(out["probs"], Y[:, 1:], torch.arange(Y.shape[1] - 1) == Y.shape[1] - 2)
    loss.backward()
    return out, loss


def timed(fn, repeats):
    walls, cpus, res = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), walls, cpus, res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ref-repeats", type=int, default=1)
    p.add_argument("--ref-sequences", type=int, default=10)
    p.add_argument("--sequences", type=int, default=100)
    p.add_argument("--length", type=int, default=100)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "bench_qrnn.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    model = QRNN(2, 8, stages=2, order=2, degree=2, dtype=dtype)
    n_params = sum(q.numel() for q in model.parameters())
    X, Y = workload(args.sequences, args.length)
    step_fast(model, X, Y)  # warm-up
    fw, fc, fws, fcs, _ = timed(lambda: step_fast(model, X, Y), args.repeats)

    # correctness on the reference subset: probabilities and gradients
    Xs, Ys = X[: args.ref_sequences], Y[: args.ref_sequences]
    out_f, _ = step_fast(model, Xs, Ys)
    g_fast = [q.grad.clone() for q in model.parameters()]
    rw, rc, rws, rcs, (out_r, _) = timed(lambda: step_ref(model, Xs, Ys), args.ref_repeats)
    g_ref = [q.grad.clone() for q in model.parameters()]
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    prob_err = float((out_f.probs - out_r["probs"]).detach().abs().max())
    grad_err = max(float((a - b).abs().max()) for a, b in zip(g_fast, g_ref))
    grad_scale = max(float(b.abs().max()) for b in g_ref)
    equal = prob_err < tol and grad_err < tol * max(1.0, grad_scale)
    scale = args.sequences / args.ref_sequences
    res = {
        "workload": f"MNIST 0/1 config W=8 I=2 S=2 ord=2 d=2 ({n_params} params), {args.sequences} sequences x "
        f"{args.length - 1} steps, teacher forced, forward+backward, {args.dtype}",
        "threads": args.threads,
        "fast_wall_s_median": fw,
        "fast_cpu_s_median": fc,
        "fast_wall_s_all": fws,
        "fast_cpu_s_all": fcs,
        "per_sample_sequences_timed": args.ref_sequences,
        "per_sample_wall_s_median_measured": rw,
        "per_sample_cpu_s_median_measured": rc,
        "per_sample_wall_s_scaled_to_workload": rw * scale,
        "per_sample_cpu_s_scaled_to_workload": rc * scale,
        "speedup_wall": rw * scale / fw,
        "speedup_cpu": rc * scale / fc,
        "outputs_equal": equal,
        "max_abs_prob_diff": prob_err,
        "max_abs_grad_diff": grad_err,
        "load_average_1_5_15": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    from qnn.training import run_record

    res["run"] = run_record(["python", *sys.argv])  # git commit, packages, command
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if not k.endswith("_all")}, indent=1))
    print(
        f"fast: {fw:.3f} s wall / {fc:.3f} s CPU per step; per-sample (scaled x{scale:g}): "
        f"{rw * scale:.1f} s wall / {rc * scale:.1f} s CPU; speed-up {rw * scale / fw:.1f}x wall, "
        f"{rc * scale / fc:.1f}x CPU; outputs equal: {equal}"
    )
    return res


if __name__ == "__main__":
    main()
