"""A/B timing of one level-2 Creep training step (creep.md §2-3) between two qnn source trees,
interleaved in fresh processes so that both see the same machine load.

    python bench/bench_creep_ab.py /path/to/old/checkout . --threads 1 --rounds 3 --repeats 7

Each round runs every tree once (in the order given) in a subprocess with ``PYTHONPATH`` set
to it: ``hybrid_net("level2", mode="physical", seed=0)``, CrossEntropy + Adam(lr 5e-4), batch
200 of real MNIST (Pad(2), Normalize(0.5, 0.5); ``$QNN_DATA_DIR/mnist``) or uniform noise,
one warm-up step, then ``--repeats`` timed steps.  Reported per tree: the median over rounds
of the per-round medians of process CPU time and of wall time per step, and the load average.
CPU time at 1 thread is the figure least sensitive to other processes on a shared machine.
``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` in the children, as in ``bench_creep.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import json, os, statistics, sys, time
import torch
from torch import nn
from qnn.models.creep import hybrid_net
torch.set_num_threads(int(sys.argv[1]))
repeats = int(sys.argv[2])
root = os.environ.get("QNN_DATA_DIR")
if root and os.path.isdir(os.path.join(root, "mnist")):
    from qnn.datasets.mnist import load_mnist
    imgs, labels = load_mnist("train", data_dir=root)
    x = torch.from_numpy(imgs[:200]).float().div(255.0)
    x = nn.functional.pad(x, (2, 2, 2, 2)).sub(0.5).div(0.5).unsqueeze(1)
    y = torch.from_numpy(labels[:200]).long()
else:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(200, 1, 32, 32, generator=g) * 2 - 1, torch.randint(0, 10, (200,), generator=g)
model, _ = hybrid_net("level2", mode="physical", seed=0)
opt = torch.optim.Adam(model.parameters(), lr=5e-4)
def step():
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
step()
ws, cs = [], []
for _ in range(repeats):
    w, c = time.perf_counter(), time.process_time()
    step()
    ws.append(time.perf_counter() - w)
    cs.append(time.process_time() - c)
import qnn
print(json.dumps({"qnn": qnn.__file__, "cpu_s": statistics.median(cs), "wall_s": statistics.median(ws),
                  "load": os.getloadavg()[0]}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trees", nargs="+", help="qnn source trees (folders holding qnn/)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    trees = [str(Path(t).resolve()) for t in args.trees]
    runs = {t: [] for t in trees}
    for r in range(args.rounds):
        for t in trees:
            env = dict(os.environ, PYTHONPATH=t)
            env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_creep.py (see there)
            out = subprocess.run([sys.executable, "-c", _CHILD, str(args.threads), str(args.repeats)], env=env, cwd=t,
                                 capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            res = json.loads(out)
            if not res["qnn"].startswith(t):
                raise SystemExit(f"bench_creep_ab: expected qnn from {t}; got {res['qnn']}")
            runs[t].append(res)
            print(f"round {r + 1} {t}: cpu {res['cpu_s']:.3f} s, wall {res['wall_s']:.3f} s, load {res['load']:.1f}")
    for t in trees:
        cpu = statistics.median(x["cpu_s"] for x in runs[t])
        wall = statistics.median(x["wall_s"] for x in runs[t])
        print(f"{t}: {args.threads} thread(s), step cpu {cpu:.3f} s, wall {wall:.3f} s (median of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
