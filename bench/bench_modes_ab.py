"""Interleaved A/B of the torch engine's paths on bench_layer.py's layer workload.

One process; every named ``mode=`` runs one pass (forward + backward of ``sum(out * g)``) in
turn, so slow phases of a shared machine hit every path alike; prints the median pass time per
path in ms and the path ``auto`` took.  The A/B figures of bench/README.md ("issue 14 round 2")
come from this script.

    OMP_NUM_THREADS=1 THP_MEM_ALLOC_ENABLE=1 python bench/bench_modes_ab.py --n 16 --modes blocked adjoint
    OMP_NUM_THREADS=1 python bench/bench_modes_ab.py --n 8 --modes auto small blocked --repeats 60
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_layer as bl  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--modes", nargs="+", default=["auto", "blocked", "adjoint"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=None, help="default: 60 (n <= 8), 15 (n <= 12), else 3")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n, B = args.n, args.batch
    sp = bl.spec_of("layer", n)
    sp["workload"] = "layer"
    x0, w0, cot = bl.make_data(n, B, torch.float32)
    x0, w0, cot = x0[0], w0[0], cot[0]
    runs = {m: bl.make_qnn(sp, B, m) for m in args.modes}

    def one(run):
        x = x0.clone().requires_grad_()
        w = w0.clone().requires_grad_()
        out = run(x, w)
        (out * cot).sum().backward()

    reps = args.repeats or (60 if n <= 8 else 15 if n <= 12 else 3)
    for run in runs.values():  # warm-up: plans, buffers
        one(run)
        one(run)
    times: dict = {m: [] for m in runs}
    for _ in range(reps):
        for m, run in runs.items():
            t = time.perf_counter()
            one(run)
            times[m].append(time.perf_counter() - t)
    res = {m: {"median_ms": round(statistics.median(v) * 1e3, 2), "path": runs[m].info()["path"]}
           for m, v in times.items()}
    print(f"n={n} B={B} threads={args.threads} repeats={reps}: {res}")
    return res


if __name__ == "__main__":
    main()
