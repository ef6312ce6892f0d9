"""Train a QRNN (qnn.qrnn.QRNN) on one of the paper's tasks; resumable, with progress bar.

Examples (see README.md in this folder):
    python experiments/qrnn/train_qrnn.py --task mnist01 --W 8 --S 2 --ord 2 --d 2 --lr 0.005 \
        --batch 50 --steps 2000 --run-dir experiments/qrnn/runs/mnist01 --resume
    python experiments/qrnn/train_qrnn.py --task elman-xor --W 4 --S 1 --ord 2 --d 3 --lr 0.005 \
        --batch 16 --steps 1000 --stop-loss 1e-3 --run-dir experiments/qrnn/runs/xor
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from qnn.datasets import sequences as seqs  # noqa: E402
from qnn.qrnn import QRNN, qrnn_loss  # noqa: E402


def make_task(args, split, n=None, seed=0):
    t = args.task
    if t.startswith("mnist") or t.startswith("fashion"):
        base, *suffixes = t.split("-")
        if not set(suffixes) <= {"ds", "lz"} or len(set(suffixes)) != len(suffixes):
            raise ValueError(
                f"unknown MNIST variant {t!r}; expected e.g. mnist01, mnist36-ds, mnist01-lz "
                "(-ds: deskewed, -lz: Lanczos resize)"
            )
        digits = tuple(int(c) for c in base.replace("mnist", "").replace("fashion", ""))
        return seqs.mnist_pixels(
            digits, split, n=n, seed=seed, fashion=t.startswith("fashion"), deskew="ds" in suffixes,
            resize="lanczos" if "lz" in suffixes else "box",
        )
    if t == "elman-xor":
        return seqs.elman_xor(n or 16, seed=seed)
    if t == "elman-letter":
        return seqs.elman_letter(n or 16, seed=seed)
    if t == "dna":
        return seqs.dna(n or 128, args.length, seed=seed, carry=not args.dna_zero_targets)
    if t == "simple-seq":
        return seqs.simple_seq()
    raise ValueError(f"unknown task {t!r}")


class Sampler:
    """Training batches: per-class sampling for MNIST (``--batch`` per digit), fresh random
    sequences for the synthetic tasks."""

    def __init__(self, args):
        self.args = args
        self.mnist = args.task.startswith(("mnist", "fashion"))
        self.g = torch.Generator().manual_seed(args.seed)
        if self.mnist:
            full = make_task(args, "train")
            # hold out `val_size` per class for validation (deterministic)
            gv = torch.Generator().manual_seed(12345)
            val_idx, tr_idx = [], []
            for c in range(int(full.labels.max()) + 1):
                idx = torch.nonzero(full.labels == c).flatten()
                idx = idx[torch.randperm(len(idx), generator=gv)]
                val_idx.append(idx[: args.val_size])
                tr_idx.append(idx[args.val_size :])
            self.train = full
            self.by_class = tr_idx
            self.val = full.subset(torch.cat(val_idx))

    def batch(self, step):
        a = self.args
        if self.mnist:
            idx = torch.cat([c[torch.randint(0, len(c), (a.batch,), generator=self.g)] for c in self.by_class])
            return self.train.subset(idx)
        if a.task == "simple-seq":
            return make_task(a, "train")
        return make_task(a, "train", n=a.batch, seed=1_000_000 * a.seed + step)

    def validation(self):
        a = self.args
        if self.mnist:
            return self.val
        if a.task == "simple-seq":
            return make_task(a, "train")
        return make_task(a, "train", n=a.val_n, seed=999_999_999 - a.seed)


def parse_lr_schedule(text):
    """``'3000:0.001,4500:0.0005'`` -> ``[(3000, 0.001), (4500, 0.0005)]`` (sorted)."""
    if not text:
        return []
    out = []
    for part in text.split(","):
        try:
            k, v = part.split(":")
            out.append((int(k), float(v)))
        except ValueError:
            raise ValueError(f"--lr-schedule: expected 'step:lr,step:lr,...'; got {text!r}") from None
    return sorted(out)


def lr_at(step, base, schedule):
    """Learning rate for optimiser step ``step`` (0-based)."""
    lr = base
    for k, v in schedule:
        if step >= k:
            lr = v
    return lr


@torch.no_grad()
def evaluate(model, task, readout="sample", batch=500, gen=None):
    """Postselect the ignored steps, sample/argmax the rest; loss, word error, sequence accuracy."""
    tot_loss, correct, words_ok, words_n, n = 0.0, 0, 0, 0, 0
    for i in range(0, len(task), batch):
        x, y = task.inputs[i : i + batch], task.targets[i : i + batch]
        out = model(x, y, postselect=task.ignore, readout=readout, generator=gen)
        tot_loss += float(qrnn_loss(out.probs, y[:, 1:], task.score)) * len(x)
        m = task.score.expand(len(x), -1)
        eq = out.words == y[:, 1:]
        correct += int((eq | ~m).all(-1).sum())
        words_ok += int(eq[m].sum())
        words_n += int(m.sum())
        n += len(x)
    return {"loss": tot_loss / n, "accuracy": correct / n, "cer": 1 - words_ok / words_n}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--length", type=int, default=10, help="DNA sequence length")
    p.add_argument("--dna-zero-targets", action="store_true",
                   help="DNA: unscored targets 0 (harder variant) instead of the authors' carried base")
    p.add_argument("--W", type=int, default=8)
    p.add_argument("--S", type=int, default=2)
    p.add_argument("--ord", type=int, default=2)
    p.add_argument("--d", type=int, default=2)
    p.add_argument("--mode", default="postselect")
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--loss", default="ce_probs", choices=["ce_probs", "nll"],
                   help="training loss: the authors' CE of softmax(probabilities) (default) or -log p[target]; "
                        "validation and checkpoint selection always use ce_probs")
    p.add_argument("--lr-schedule", default=None,
                   help="piecewise-constant Adam lr after given steps, e.g. '3000:0.001,4500:0.0005' "
                        "(--lr before the first); applied every step, also after --resume")
    p.add_argument("--amsgrad", action="store_true",
                   help="Adam with the AMSGrad correction (not in the paper; guards against late collapses)")
    p.add_argument("--batch", type=int, default=50, help="per digit for MNIST, else sequences per step")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--stop-loss", type=float, default=None, help="stop when validation loss < this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-size", type=int, default=500, help="MNIST: validation images per digit")
    p.add_argument("--val-n", type=int, default=64, help="synthetic tasks: validation sequences")
    p.add_argument("--val-sub", type=int, default=200, help="MNIST: validation subset evaluated every --eval-every")
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--ckpt-every", type=int, default=20)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--checkpoint-steps", action="store_true", help="gradient checkpointing per step")
    p.add_argument("--test", action="store_true", help="after training, evaluate the best model on the test set")
    p.add_argument("--test-only", action="store_true")
    p.add_argument("--test-batches", type=int, default=10)
    p.add_argument("--test-batch-size", type=int, default=100)
    p.add_argument("--test-n", type=int, default=None, help="limit the argmax test set (default: full)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = Path(args.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    task0 = make_task(args, "train", n=2) if not args.task.startswith(("mnist", "fashion")) else None
    I = task0.input_size if task0 is not None else 2
    model = QRNN(I, args.W, stages=args.S, order=args.ord, degree=args.d, mode=args.mode, checkpoint=args.checkpoint_steps)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, amsgrad=args.amsgrad)
    schedule = parse_lr_schedule(args.lr_schedule)
    ck = run / "checkpoint.pt"
    state = {"step": 0, "best_val": math.inf, "best_step": -1, "converged_step": None}
    sampler = None
    if args.resume and ck.exists():
        blob = torch.load(ck, weights_only=False)
        model.load_state_dict(blob["model"])
        opt.load_state_dict(blob["opt"])
        state = blob["state"]
        torch.set_rng_state(blob["rng"])
        print(f"resumed from step {state['step']}", flush=True)
    if args.test_only and ck.exists():
        state = torch.load(ck, weights_only=False)["state"]
    if not args.test_only:
        (run / "args.json").write_text(json.dumps(vars(args), indent=1))
        sampler = Sampler(args)
        if sampler.mnist:
            sampler.g.manual_seed(args.seed * 7919 + state["step"])
        val = sampler.validation()
        if sampler.mnist and args.val_sub and len(val) > args.val_sub:
            gsub = torch.Generator().manual_seed(4242)
            val_eval = val.subset(torch.randperm(len(val), generator=gsub)[: args.val_sub])
        else:
            val_eval = val
        log = open(run / "log.jsonl", "a")
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover
            tqdm = None
        bar = None
        if tqdm is not None and not args.no_progress:
            bar = tqdm(total=args.steps, initial=state["step"], desc=f"{args.task}", dynamic_ncols=True)
        while state["step"] < args.steps and state["converged_step"] is None:
            step = state["step"]
            b = sampler.batch(step)
            t0 = time.perf_counter()
            for group in opt.param_groups:
                group["lr"] = lr_at(step, args.lr, schedule)
            opt.zero_grad()
            out = model(b.inputs, b.targets)  # teacher forcing: postselect every step
            loss = qrnn_loss(out.probs, b.targets[:, 1:], b.score, kind=args.loss)
            loss.backward()
            gn = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5))
            opt.step()
            dt = time.perf_counter() - t0
            rec = {
                "step": step + 1,
                "loss": float(loss.detach()),
                "min_postsel_prob": float(out.min_postsel_prob),
                "grad_norm": gn,
                "lr": opt.param_groups[0]["lr"],
                "time_s": dt,
            }
            state["step"] = step + 1
            if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
                g = torch.Generator().manual_seed(step)
                ev = evaluate(model, val_eval, "sample", gen=g)
                rec.update({"val_loss": ev["loss"], "val_acc": ev["accuracy"], "val_cer": ev["cer"]})
                if ev["loss"] < state["best_val"]:
                    state["best_val"], state["best_step"] = ev["loss"], step + 1
                    torch.save(model.state_dict(), run / "best.pt")
                if args.stop_loss is not None and ev["loss"] < args.stop_loss:
                    state["converged_step"] = step + 1
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", val=f"{rec.get('val_loss', float('nan')):.4f}", s=f"{dt:.2f}")
            if state["step"] % args.ckpt_every == 0 or state["converged_step"] is not None or state["step"] == args.steps:
                tmp = run / "checkpoint.pt.tmp"
                torch.save(
                    {"model": model.state_dict(), "opt": opt.state_dict(), "state": state, "rng": torch.get_rng_state()},
                    tmp,
                )
                os.replace(tmp, ck)
        if bar is not None:
            bar.close()
        log.close()
        summary = {"task": args.task, **state, "params": sum(p.numel() for p in model.parameters())}
        (run / "summary.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary), flush=True)
    if args.test or args.test_only:
        if (run / "best.pt").exists():
            model.load_state_dict(torch.load(run / "best.pt"))
        res = test(model, args)
        res["best_step"] = state.get("best_step")
        res["steps_trained"] = state.get("step")
        (run / "test.json").write_text(json.dumps(res, indent=1))
        print(json.dumps(res), flush=True)


def test(model, args):
    """Authors' protocol: 10 random test batches (with replacement), sampled labels, mean +- s.e.;
    plus argmax (and sampled) accuracy over the whole test set."""
    if args.task.startswith(("mnist", "fashion")):
        testset = make_task(args, "test")
    else:
        testset = make_task(args, "test", n=args.test_n or max(args.test_batch_size, 256), seed=10**9 + 7)
    g = torch.Generator().manual_seed(2020)
    accs = []
    for _ in range(args.test_batches):
        idx = torch.randint(0, len(testset), (args.test_batch_size,), generator=g)
        accs.append(evaluate(model, testset.subset(idx), "sample", gen=g)["accuracy"])
    acc_t = torch.tensor(accs)
    full = testset if args.test_n is None else testset.subset(slice(0, args.test_n))
    am = evaluate(model, full, "argmax")
    sm = evaluate(model, full, "sample", gen=g)
    return {
        "task": args.task,
        "sampled_10_batches_mean": float(acc_t.mean()),
        "sampled_10_batches_se": float(acc_t.std() / math.sqrt(len(accs))) if len(accs) > 1 else float("nan"),
        "sampled_10_batches": accs,
        "test_batch_size": args.test_batch_size,
        "argmax_full_test_accuracy": am["accuracy"],
        "argmax_full_test_loss": am["loss"],
        "sampled_full_test_accuracy": sm["accuracy"],
        "n_test": len(full),
    }


if __name__ == "__main__":
    main()
