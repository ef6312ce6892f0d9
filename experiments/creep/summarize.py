"""Summaries of a results folder: last-epoch mean ± population std (ddof=0, as the paper)
per dataset x configuration x mode beside the paper's numbers, and a plot of the curves.

    python experiments/creep/summarize.py experiments/creep/runs/mnist-paper
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["load_results", "summary_rows", "summarize"]


def load_results(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*/*/*/seed*/result.json"))]


def summary_rows(results: list[dict]) -> list[dict]:
    from qnn.models.creep import PAPER_RESULTS

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        t = r["task"]
        groups[(t["dataset"], t["configuration"], t["mode"])].append(r)
    rows = []
    for (d, c, m), rs in sorted(groups.items()):
        acc = np.array([100 * r["test_accs"][-1] for r in rs])
        tr = np.array([100 * r["train_accs"][-1] for r in rs])
        loss = np.array([r["train_losses"][-1] for r in rs])
        epochs = sorted({len(r["test_accs"]) for r in rs})
        sec = np.median([np.median(r["epoch_seconds"]) for r in rs])
        paper = PAPER_RESULTS.get((d, c))
        rows.append({"dataset": d, "configuration": c, "mode": m, "runs": len(rs), "epochs": epochs,
                     "n_train": rs[0]["n_train"], "test_acc": (acc.mean(), acc.std()),
                     "train_acc": (tr.mean(), tr.std()), "train_loss": (loss.mean(), loss.std()),
                     "seconds_per_epoch": float(sec), "params": rs[0]["params"], "paper": paper,
                     "commits": sorted({(r["record"] or {}).get("git_commit") or "?" for r in rs})})
    return rows


def _pm(v, digits=2):
    return f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}"


def to_markdown(rows: list[dict]) -> str:
    head = ("| dataset | configuration | mode | runs | epochs | train images | test acc % (last epoch) | "
            "paper test acc % | train acc % | train loss | s/epoch | parameters |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        paper = _pm(r["paper"]) if r["paper"] else "–"
        lines.append(f"| {r['dataset']} | {r['configuration']} | {r['mode']} | {r['runs']} | "
                     f"{'/'.join(map(str, r['epochs']))} | {r['n_train']:,} | {_pm(r['test_acc'])} | {paper} | "
                     f"{_pm(r['train_acc'])} | {_pm(r['train_loss'], 4)} | {r['seconds_per_epoch']:.1f} | "
                     f"{r['params']:,} |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        t = r["task"]
        groups[(t["dataset"], t["configuration"], t["mode"])].append(r)
    datasets = sorted({k[0] for k in groups})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        for (dd, c, m), rs in sorted(groups.items()):
            if dd != d:
                continue
            n = min(len(r["test_accs"]) for r in rs)
            curves = 100 * np.array([r["test_accs"][:n] for r in rs])
            x = np.arange(1, n + 1)
            line, = ax.plot(x, curves.mean(0), marker="o" if n < 10 else None, label=f"{c} ({m})")
            if len(rs) > 1:
                ax.fill_between(x, curves.mean(0) - curves.std(0), curves.mean(0) + curves.std(0),
                                color=line.get_color(), alpha=0.2)
        ax.set_title(d)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarize(folder: Path) -> str:
    """Write ``summary.md`` and ``curves.png`` into ``folder``; returns the Markdown."""
    folder = Path(folder)
    results = load_results(folder)
    if not results:
        return f"(no results under {folder})"
    rows = summary_rows(results)
    md = to_markdown(rows)
    commits = sorted({c for r in rows for c in r["commits"]})
    (folder / "summary.md").write_text(
        "Last-epoch mean ± population std (ddof=0) over the runs; paper: creep.md §4 (5 runs).\n\n" + md
        + f"\n\nMade by git commit(s) {', '.join(commits)} (each run's result.json holds its full record).\n")
    plot(results, folder / "curves.png")
    return md


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1])))
