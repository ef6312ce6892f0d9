"""Plot training curves of QRNN runs (``log.jsonl`` written by train_qrnn.py) and copy the small
result files into ``experiments/qrnn/results/``.

    python experiments/qrnn/plot_curves.py experiments/qrnn/runs/mnist01 experiments/qrnn/runs/mnist36 \
        --out experiments/qrnn/results
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(run: Path):
    return [json.loads(line) for line in open(run / "log.jsonl")]


def plot_run(run: Path, out: Path) -> dict:
    log = load(run)
    steps = [r["step"] for r in log]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(steps, [r["loss"] for r in log], lw=0.6, label="train loss")
    ev = [r for r in log if "val_loss" in r]
    axes[0].plot([r["step"] for r in ev], [r["val_loss"] for r in ev], "o-", ms=2, label="val loss (sampled)")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("optimiser step")
    axes[0].legend()
    axes[1].plot([r["step"] for r in ev], [r["val_acc"] for r in ev], "o-", ms=2, color="C2")
    axes[1].set_ylim(0, 1)
    axes[1].set_xlabel("optimiser step")
    axes[1].set_ylabel("validation accuracy (sampled labels)")
    axes[2].plot(steps, [r["min_postsel_prob"] for r in log], lw=0.6, color="C3")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("optimiser step")
    axes[2].set_ylabel("min postselection probability")
    fig.suptitle(run.name)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{run.name}_curves.png", dpi=110)
    plt.close(fig)
    # a compact CSV of the curve (every 10th step and all evaluations)
    with open(out / f"{run.name}_curve.csv", "w") as f:
        f.write("step,loss,min_postsel_prob,time_s,val_loss,val_acc,grad_norm\n")
        for r in log:
            if r["step"] % 10 == 0 or "val_loss" in r:
                f.write(
                    f"{r['step']},{r['loss']:.6g},{r['min_postsel_prob']:.4g},{r['time_s']:.3f},"
                    f"{r.get('val_loss', '')},{r.get('val_acc', '')},{r.get('grad_norm', float('nan')):.4g}\n"
                )
    for name in ("test.json", "summary.json", "args.json"):
        if (run / name).exists():
            shutil.copy(run / name, out / f"{run.name}_{name}")
    best = min(ev, key=lambda r: r["val_loss"]) if ev else None
    return {"run": run.name, "steps": steps[-1] if steps else 0, "best_val": best}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", default="experiments/qrnn/results")
    a = p.parse_args(argv)
    for r in a.runs:
        print(json.dumps(plot_run(Path(r), Path(a.out))))


if __name__ == "__main__":
    main()
