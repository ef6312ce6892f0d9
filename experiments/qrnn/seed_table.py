"""Table of several MNIST runs of ``train_qrnn.py`` from their committed result files
(``results/<run>_curve.csv`` and ``results/<run>_test.json``, written by ``plot_curves.py`` and
``--test-only``): steps, best validation loss, test accuracies, the run that the lowest validation
loss selects, means over the runs, and the collapses — evaluations at which the sampled validation
accuracy fell from >= 0.8 to < 0.65 since the previous evaluation — with the largest gradient norm
and the smallest postselection probability logged in the 50 steps before each.

    python experiments/qrnn/seed_table.py mnist01lz-b100-s{0,1,2,3,4,5} mnist01lz-ams-s{0,2}
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _f(v: str) -> float:
    return float(v) if v not in ("", None) else math.nan


def load(run: str, results: Path = RESULTS) -> dict:
    rows = list(csv.DictReader(open(results / f"{run}_curve.csv")))
    test = json.loads((results / f"{run}_test.json").read_text())
    ev = [r for r in rows if r["val_loss"] != ""]
    best = min(ev, key=lambda r: float(r["val_loss"]))
    collapses = []
    for prev, cur in zip(ev, ev[1:]):
        if float(prev["val_acc"]) >= 0.8 and float(cur["val_acc"]) < 0.65:
            step = int(cur["step"])
            win = [r for r in rows if step - 50 <= int(r["step"]) <= step]
            collapses.append({
                "step": step,
                "max_grad_norm": max(_f(r.get("grad_norm")) for r in win),
                "min_postsel_prob": min(_f(r["min_postsel_prob"]) for r in win),
            })
    return {
        "run": run, "steps": int(rows[-1]["step"]), "best_step": int(best["step"]),
        "best_val_loss": float(best["val_loss"]), "max_val_acc": max(float(r["val_acc"]) for r in ev),
        "sampled": test["sampled_10_batches_mean"], "sampled_se": test["sampled_10_batches_se"],
        "argmax": test["argmax_full_test_accuracy"], "sampled_full": test["sampled_full_test_accuracy"],
        "collapses": collapses,
    }


def table(runs: list[dict]) -> str:
    out = ["| run | steps (best at) | best val loss | max val acc | test sampled, 10 batches | test argmax, full | "
           "test sampled, full | collapses: step (max grad norm, min postsel prob in the 50 steps before) |",
           "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        col = "; ".join(f"{c['step']} ({c['max_grad_norm']:.3g}, {c['min_postsel_prob']:.2g})" for c in r["collapses"])
        out.append(f"| {r['run']} | {r['steps']} ({r['best_step']}) | {r['best_val_loss']:.4f} | {r['max_val_acc']:.3f} | "
                   f"{r['sampled']:.3f} ± {r['sampled_se']:.3f} | {r['argmax']:.3f} | {r['sampled_full']:.3f} | "
                   f"{col or '-'} |")
    pick = min(runs, key=lambda r: r["best_val_loss"])
    n = len(runs)
    out += ["", f"Lowest validation loss: {pick['run']} -> test {pick['sampled']:.3f} ± {pick['sampled_se']:.3f} sampled, "
                f"{pick['argmax']:.4f} argmax.",
            f"Mean over the {n} runs: {sum(r['sampled'] for r in runs) / n:.3f} sampled, "
            f"{sum(r['argmax'] for r in runs) / n:.3f} argmax; "
            f"{sum(r['sampled'] >= 0.98 for r in runs)} of {n} runs >= 0.98 sampled."]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run names (the prefixes of the files in results/)")
    ap.add_argument("--results", default=str(RESULTS))
    a = ap.parse_args(argv)
    print(table([load(r, Path(a.results)) for r in a.runs]))


if __name__ == "__main__":
    main()
