"""Benchmark: one training step of the "Let the Quantum Creep In" level-2 model (creep.md §2-3),
qnn's fast layers vs a straightforward implementation of the paper's layers, and a full MNIST
epoch with the fast layers.

    python bench/bench_creep.py --threads 1 2 --repeats 5 --naive-batch 2 --epoch-batches 300

Model: FlippedQuanv3x3(1->32), FlippedQuanv3x3(32->16), flatten 12544,
DataReUploadingLinear(12544->10, n=7, reps=10), built by ``qnn.models.creep.hybrid_net("level2")``
as the experiments do (its forward runs the two activation-free convolutions as one composed
5x5 convolution); CrossEntropy + Adam(lr 5e-4), batch 200,
MNIST-shaped input 1x32x32 (Pad(2) + Normalize(0.5, 0.5) of real MNIST when
``$QNN_DATA_DIR/mnist`` exists, else uniform noise in [-1, 1]).

Straightforward implementation (as creep.md §5 describes the authors' code, written here from
that description): an explicit (4^n - 1, 2^n, 2^n) Pauli stack (n=7: 16383 x 128 x 128
complex64 = 2.1 GB; built once and reused, which is *kinder* than rebuilding it per sample),
per sample and per repetition ``matrix_exp(i t H)`` and ``matrix_exp(i sum_k theta_k P_k)``
contracted from the stack, plain autograd; the convolutions loop over output positions in
Python (each position vectorised over batch and channels) and take Re<psi|S|psi>.

The straightforward DRU layer is too slow to run at batch 200: it is timed at
``--naive-batch`` samples and scaled linearly (its work is a per-sample loop, linear in the
batch).  The straightforward convolutions are *not* linear in the batch (per-position Python
overhead), so they are timed at the full batch 200.  Step = conv part (measured at 200) +
DRU part (per-sample time x 200) + Adam.  Outputs and gradients of both implementations are
checked equal on the same weights (``--naive-batch`` samples) before timing.

Medians of ``--repeats`` steps; wall-clock and process CPU time, with the load average (the
machine may be shared).  Results: ``bench/results/bench_creep.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# OpenMP threads that spin-wait after each parallel region compete with the DRU layer's own
# worker threads (qnn.layers parallel_map) for the 2 cores, and with other processes on a
# shared machine: measured 2.2x slower steps at 2 threads under load without this.  Must be
# set before torch loads libgomp; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qnn.layers import DataReUploadingLinear, FlippedQuanv3x3  # noqa: E402
from qnn.models.creep import hybrid_net  # noqa: E402


# ------------------------------------------------------------------------------------------
# straightforward implementation
# ------------------------------------------------------------------------------------------
def pauli_stack(n: int, dtype=torch.complex64) -> torch.Tensor:
    """(4^n - 1, 2^n, 2^n) by Kronecker products, IXYZ order, written into one buffer."""
    single = {"I": torch.eye(2, dtype=dtype), "X": torch.tensor([[0, 1], [1, 0]], dtype=dtype),
              "Y": torch.tensor([[0, -1j], [1j, 0]], dtype=dtype), "Z": torch.tensor([[1, 0], [0, -1]], dtype=dtype)}
    out = torch.empty(4**n - 1, 2**n, 2**n, dtype=dtype)
    for k, word in enumerate(itertools.islice(itertools.product("IXYZ", repeat=n), 1, None)):
        m = single[word[0]]
        for ch in word[1:]:
            m = torch.kron(m, single[ch])
        out[k] = m
    return out


class NaiveFlipped(nn.Module):
    def __init__(self, fast: FlippedQuanv3x3, stack2: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(fast.weight.detach().clone())
        self.bias = nn.Parameter(fast.bias.detach().clone())
        self.stack = stack2
        self.cin = fast.in_channels

    def forward(self, x):
        gen = torch.einsum("ock,kij->ocij", self.weight.to(self.stack.dtype), self.stack)
        psi = torch.linalg.matrix_exp(1j * gen)[..., :, 0]  # (O, C, 4)
        b, c, h, w = x.shape
        rows = []
        for i in range(h - 2):
            cols = []
            for j in range(w - 2):
                m = x[:, :, i:i + 3, j:j + 3]
                m4 = nn.functional.pad(m, (0, 1, 0, 1)).to(psi.dtype)
                s = (m4 + m4.transpose(-1, -2)) / 2
                e = torch.einsum("oci,bcij,ocj->boc", psi.conj(), s, psi).real
                cols.append(e.sum(-1) / self.cin)
            rows.append(torch.stack(cols, -1))
        return torch.stack(rows, -2) + self.bias.real.view(1, -1, 1, 1)


class NaiveDRU(nn.Module):
    def __init__(self, fast: DataReUploadingLinear, stack: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(fast.weight.detach().clone())
        self.bias = nn.Parameter(fast.bias.detach().clone())
        self.stack = stack
        self.n, self.reps, self.out = fast.n_qubits, fast.n_reps, fast.out_features
        self.t = 1.0 / fast.n_reps

    def forward(self, x):
        d = 2**self.n
        outs = []
        for xb in x:  # per sample, as the authors' vmap
            xm = nn.functional.pad(xb, (0, d * d - xb.numel())).reshape(d, d)
            h = ((xm + xm.T) / 2).to(torch.complex64)
            psi = torch.full((d,), d**-0.5, dtype=torch.complex64)
            for l in range(self.reps):
                psi = torch.linalg.matrix_exp(1j * self.t * h) @ psi  # recomputed every repetition
                gen = torch.einsum("k,kij->ij", self.weight[l].to(torch.complex64), self.stack)
                psi = torch.linalg.matrix_exp(1j * gen) @ psi
            outs.append(psi[: self.out].abs().square())
        return torch.stack(outs) + self.bias


# ------------------------------------------------------------------------------------------
def make_models(seed=0):
    """The level-2 model as the experiments build it (:func:`qnn.models.creep.hybrid_net`; its
    forward composes the two activation-free convolutions into one 5x5 convolution)."""
    fast, _ = hybrid_net("level2", mode="physical", n_reps=10, seed=seed)
    assert isinstance(fast.conv1, FlippedQuanv3x3) and isinstance(fast.fc, DataReUploadingLinear)
    assert fast.fc.n_qubits == 7
    return fast


def data(batch, gen):
    root = os.environ.get("QNN_DATA_DIR")
    if root and (Path(root) / "mnist").is_dir():
        from qnn.datasets.mnist import load_mnist
        imgs, labels = load_mnist("train", data_dir=root)
        x = torch.from_numpy(imgs).float().div(255.0)
        x = nn.functional.pad(x, (2, 2, 2, 2)).sub(0.5).div(0.5).unsqueeze(1)
        return x, torch.from_numpy(labels).long(), "MNIST train (Pad(2), Normalize(0.5, 0.5))"
    n = 60000
    return (torch.rand(n, 1, 32, 32, generator=gen) * 2 - 1, torch.randint(0, 10, (n,), generator=gen),
            "uniform noise in [-1, 1] (no $QNN_DATA_DIR/mnist)")


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def med(xs):
    return statistics.median(xs)


def step_fn(model, opt, x, y):
    def f():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return f


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--naive-batch", type=int, default=2)
    ap.add_argument("--naive-repeats", type=int, default=1)
    ap.add_argument("--epoch-batches", type=int, default=300, help="batches timed for the epoch figure (300 = full)")
    ap.add_argument("--epoch-threads", type=int, default=2)
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_creep.json"))
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    X, Y, source = data(args.batch, gen)
    xb, yb = X[: args.batch], Y[: args.batch]
    res = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                       "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")},
           "data": source, "batch": args.batch, "steps": {}, "naive": None, "epoch": None,
           "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}

    fast = make_models()
    # ---- equality check and naive timing --------------------------------------------
    if not args.skip_naive:
        torch.set_num_threads(max(args.threads))
        t0 = time.perf_counter()
        stack7 = pauli_stack(7)
        stack2 = pauli_stack(2)
        build_s = time.perf_counter() - t0
        nconv = nn.Sequential(NaiveFlipped(fast.conv1, stack2), NaiveFlipped(fast.conv2, stack2), nn.Flatten())
        ndru = NaiveDRU(fast.fc, stack7)
        nb = args.naive_batch
        xs, ys = xb[:nb], yb[:nb]
        out_f = fast(xs)
        loss_f = nn.functional.cross_entropy(out_f, ys)
        gf = torch.autograd.grad(loss_f, list(fast.parameters()))
        out_n = ndru(nconv(xs))
        loss_n = nn.functional.cross_entropy(out_n, ys)
        gn = torch.autograd.grad(loss_n, list(nconv.parameters()) + list(ndru.parameters()))
        out_err = float((out_f - out_n).detach().abs().max())
        grad_err = max(float((a - b).abs().max() / (b.abs().max() + 1e-30)) for a, b in zip(gf, gn))
        print(f"check on {nb} samples: max |out diff| {out_err:.2e}, max relative grad diff {grad_err:.2e}")
        assert out_err < 1e-3 and grad_err < 1e-2, "fast and straightforward implementations disagree"
        naive = {"stack_build_s": build_s, "check": {"samples": nb, "max_abs_output_diff": out_err,
                                                     "max_rel_grad_diff": grad_err}, "threads": {}}
        for th in args.threads:
            torch.set_num_threads(th)
            conv_w, conv_c, dru_w, dru_c = [], [], [], []
            for _ in range(args.naive_repeats):
                def conv_part():
                    feats = nconv(xb)
                    feats.backward(torch.ones_like(feats))
                w, c = timed(conv_part)
                conv_w.append(w)
                conv_c.append(c)
                feats = nconv(xs).detach().requires_grad_()

                def dru_part():
                    nn.functional.cross_entropy(ndru(feats), ys).backward()
                w, c = timed(dru_part)
                dru_w.append(w / nb)
                dru_c.append(c / nb)
            est = med(conv_w) + med(dru_w) * args.batch
            naive["threads"][th] = {"conv_part_at_batch_s": med(conv_w), "conv_part_cpu_s": med(conv_c),
                                    "dru_per_sample_s": med(dru_w), "dru_per_sample_cpu_s": med(dru_c),
                                    "step_estimate_s": est, "load": os.getloadavg()}
            print(f"naive, {th} thread(s): conv part at batch {args.batch} {med(conv_w):.2f} s, DRU "
                  f"{med(dru_w):.2f} s/sample -> step at batch {args.batch} ~ {est:.1f} s")
        res["naive"] = naive
        del stack7, ndru, nconv

    # ---- fast step ----------------------------------------------------------------------
    for th in args.threads:
        torch.set_num_threads(th)
        model = make_models()
        opt = torch.optim.Adam(model.parameters(), lr=5e-4)
        f = step_fn(model, opt, xb, yb)
        f()  # warm-up
        ws, cs = [], []
        for _ in range(args.repeats):
            w, c = timed(f)
            ws.append(w)
            cs.append(c)
        r = {"median_s": med(ws), "min_s": min(ws), "cpu_median_s": med(cs), "all_s": ws, "load": os.getloadavg()}
        if res["naive"]:
            r["speedup_vs_naive"] = res["naive"]["threads"][th]["step_estimate_s"] / med(ws)
        res["steps"][th] = r
        print(f"qnn, {th} thread(s): step {med(ws):.3f} s (min {min(ws):.3f}, cpu {med(cs):.3f})"
              + (f", {r['speedup_vs_naive']:.0f}x vs straightforward" if "speedup_vs_naive" in r else ""))

    # ---- epoch -----------------------------------------------------------------------------
    if args.epoch_batches > 0:
        torch.set_num_threads(args.epoch_threads)
        model = make_models()
        opt = torch.optim.Adam(model.parameters(), lr=5e-4)
        perm = torch.randperm(X.shape[0], generator=gen)
        n_batches = X.shape[0] // args.batch
        nb = min(args.epoch_batches, n_batches)
        load0 = os.getloadavg()
        w0, c0 = time.perf_counter(), time.process_time()
        losses = []
        for i in range(nb):
            idx = perm[i * args.batch:(i + 1) * args.batch]
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(X[idx]), Y[idx])
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        per_epoch = wall / nb * n_batches
        res["epoch"] = {"threads": args.epoch_threads, "batches_timed": nb, "batches_per_epoch": n_batches,
                        "wall_s": wall, "cpu_s": cpu, "epoch_s": per_epoch, "measured_full_epoch": nb == n_batches,
                        "first_loss": losses[0], "last_loss": losses[-1], "load_before": load0,
                        "load_after": os.getloadavg()}
        print(f"epoch ({args.epoch_threads} threads): {nb} batches in {wall:.1f} s (cpu {cpu:.1f} s) -> "
              f"{per_epoch:.1f} s per 60,000-image epoch; loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    from qnn.training import run_record

    res["run"] = run_record(["python", *sys.argv])  # git commit, packages, command
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
