"""Run the layer-swap grid of a configuration file, locally or on a Ray cluster.

    python experiments/creep/run.py --config experiments/creep/configs/ci_tiny.toml
    python experiments/creep/run.py --config experiments/creep/configs/mnist_paper.toml --set seeds=[0]
    python experiments/creep/run.py --config ... --ray local          # a local Ray instance
    python experiments/creep/run.py --config ... --ray ray://head:10001   # an existing cluster

Finished tasks (``result.json`` present) are skipped; an interrupted task resumes from its
last checkpoint.  With ``--ray`` each task is one Ray task (``num_cpus`` = the config's
``threads``); the driver gathers the returned results and writes each ``result.json`` the same
way as a local run, then the summary (``summary.md``, ``curves.png``) of everything under
``--out``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grid import Task, load_config, result_path, run_task, tasks  # noqa: E402
from summarize import summarize  # noqa: E402


def _write(out: Path, result: dict) -> None:
    path = result_path(out, Task(**result["task"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))


def run_grid(cfg: dict, out: Path, *, ray_address: str | None = None, progress: bool = True,
             command: str | None = None) -> list[dict]:
    """Run every unfinished task of ``cfg``; returns the results of the tasks run now."""
    from qnn.training import run_record

    record = run_record(command)  # the code this process imported now is the code every task runs
    todo = [t for t in tasks(cfg) if not result_path(out, t).exists()]
    done = len(tasks(cfg)) - len(todo)
    print(f"{cfg['name']}: {len(todo)} task(s) to run, {done} finished already; results under {out}", flush=True)
    results = []
    if ray_address is None:
        for i, t in enumerate(todo, 1):
            print(f"[{i}/{len(todo)}] {t.key}", flush=True)
            r = run_task(t, cfg, out, progress=progress, record=record)
            print(f"    test acc {r['test_accs'][-1]:.4f} after {len(r['test_accs'])} epoch(s), "
                  f"{sum(r['epoch_seconds']):.1f} s", flush=True)
            results.append(r)
        return results
    import ray

    started = not ray.is_initialized()
    if started:
        # the workers import this folder's grid.py: ship it (without the results) as the working dir
        env = {"working_dir": str(Path(__file__).resolve().parent), "excludes": ["runs/", "results/", "__pycache__/"]}
        if ray_address == "local":
            ray.init(num_cpus=max(cfg["threads"], 1) * 2, include_dashboard=False, log_to_driver=False,
                     runtime_env=env)
        else:
            ray.init(address=ray_address, log_to_driver=False, runtime_env=env)
    try:
        remote = ray.remote(num_cpus=cfg["threads"])(run_task)
        refs = {remote.remote(asdict(t), cfg, str(out), progress=False, record=record): t for t in todo}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            r = ray.get(ready[0])
            _write(out, r)  # the driver writes what the task returned: the same files as a local run
            print(f"    {refs[ready[0]].key}: test acc {r['test_accs'][-1]:.4f}", flush=True)
            results.append(r)
    finally:
        if started:
            ray.shutdown()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="TOML file (see grid.py)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--out", type=Path, default=None, help="results folder (default experiments/creep/runs/<name>)")
    p.add_argument("--ray", default=None, metavar="ADDRESS", help="'local' or a Ray cluster address")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
    except (ValueError, FileNotFoundError) as exc:
        p.error(str(exc))
    out = args.out or Path(__file__).resolve().parent / "runs" / cfg["name"]
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    run_grid(cfg, out, ray_address=args.ray, progress=not args.no_progress, command=command)
    md = summarize(out)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
