"""The experiment grid of the layer-swap study: configuration files, tasks, one run each.

A configuration file (TOML) names the grid::

    name = "mnist-paper"
    datasets = ["mnist"]                 # qnn.datasets.IMAGE_DATASETS
    configurations = ["level0", "level1", "level2", "control-tanh"]   # qnn.models.creep.CONFIGURATIONS
    modes = ["paper", "physical"]        # ignored (one run) where nothing is quantum
    seeds = [0, 1]
    epochs = 50
    batch_size = 200
    lr = 5e-4
    train_per_class = 0                  # 0: the whole split; else that many images per class
    test_per_class = 0
    n_reps = 10                          # DataReUploadingLinear repetitions
    threads = 2                          # torch threads per run

Every key can be overridden on the command line (``--set epochs=2``).  Each task
(dataset x configuration x mode x seed) runs in ``<out>/<dataset>/<configuration>/<mode>/seed<k>/``:
a checkpoint after every epoch (``qnn.training.fit``: model, optimiser and RNG states), then
``result.json`` in the paper's layout (``train_losses``, ``test_losses``, ``train_accs``,
``test_accs``) plus ``epoch_seconds``, the task, the configuration and the run record (git
commit, package versions, command).  A task whose ``result.json`` exists is skipped; a killed
task resumes from its checkpoint with identical results.
"""

from __future__ import annotations

import functools
import json
import os
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["DEFAULTS", "load_config", "tasks", "Task", "run_task", "result_path"]

DEFAULTS = {
    "name": "creep", "datasets": ["mnist-sample"], "configurations": ["level0", "level1", "level2"],
    "modes": ["physical"], "seeds": [0], "epochs": 1, "batch_size": 200, "lr": 5e-4,
    "train_per_class": 0, "test_per_class": 0, "n_reps": 10, "threads": 1,
}
_LIST_KEYS = ("datasets", "configurations", "modes", "seeds")


def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_config(path: str | os.PathLike | None, overrides: list[str] = ()) -> dict:
    """The configuration: :data:`DEFAULTS`, then the TOML file, then ``key=value`` overrides
    (values in TOML syntax: ``seeds=[0,1]``, ``lr=1e-3``, ``modes=["paper"]``)."""
    cfg = dict(DEFAULTS)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file {p} not found")
        with open(p, "rb") as f:
            cfg.update(tomllib.load(f))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in DEFAULTS:
            raise ValueError(f"--set must be key=value with key one of {sorted(DEFAULTS)}; got {item!r}")
        cfg[key.strip()] = _parse_value(value.strip())
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; valid keys are {sorted(DEFAULTS)}")
    from qnn.datasets import IMAGE_DATASETS
    from qnn.models.creep import CONFIGURATIONS, MODES

    for key, valid in (("datasets", IMAGE_DATASETS), ("configurations", CONFIGURATIONS), ("modes", MODES)):
        if not isinstance(cfg[key], list) or not cfg[key] or any(v not in valid for v in cfg[key]):
            raise ValueError(f"config {key} must be a non-empty list from {list(valid)}; got {cfg[key]!r}")
    for key in ("epochs", "batch_size", "n_reps", "threads"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ValueError(f"config {key} must be an int >= 1; got {cfg[key]!r}")
    for key in ("train_per_class", "test_per_class"):
        if not isinstance(cfg[key], int) or cfg[key] < 0:
            raise ValueError(f"config {key} must be an int >= 0 (0: the whole split); got {cfg[key]!r}")
    if not isinstance(cfg["seeds"], list) or not cfg["seeds"] or not all(isinstance(s, int) for s in cfg["seeds"]):
        raise ValueError(f"config seeds must be a non-empty list of ints; got {cfg['seeds']!r}")
    if not isinstance(cfg["lr"], (int, float)) or cfg["lr"] <= 0:
        raise ValueError(f"config lr must be a positive number; got {cfg['lr']!r}")
    return cfg


@dataclass(frozen=True)
class Task:
    dataset: str
    configuration: str
    mode: str  # "paper" | "physical" | "classical" (nothing quantum)
    seed: int

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.configuration}/{self.mode}/seed{self.seed}"


def _is_classical(configuration: str) -> bool:
    from qnn.models.creep import CONTROLS

    return configuration in ("level0", "classical") or configuration in CONTROLS


def tasks(cfg: dict) -> list[Task]:
    """The grid's tasks, classical configurations once per seed (their mode is "classical")."""
    out, seen = [], set()
    for d in cfg["datasets"]:
        for c in cfg["configurations"]:
            for m in (["classical"] if _is_classical(c) else cfg["modes"]):
                for s in cfg["seeds"]:
                    t = Task(d, c, m, s)
                    if t not in seen:
                        seen.add(t)
                        out.append(t)
    return out


def result_path(out: Path, task: Task) -> Path:
    return Path(out) / task.key / "result.json"


@functools.lru_cache(maxsize=4)  # a grid's tasks share their data: load and preprocess it once per process
def _data(dataset: str, per_class: int, split: str):
    from qnn.datasets import load_images

    return load_images(dataset, split, limit=per_class or None)


def run_task(task: Task | dict, cfg: dict, out: str | os.PathLike, *, progress: bool = False,
             command: str | None = None, record: dict | None = None) -> dict:
    """Train one task (resuming from its checkpoint) and return its result (also written to
    ``result.json``).  Runs anywhere qnn is installed: locally or as a Ray task.

    ``record`` is the run record (git commit, versions, command) of the code that runs: the
    driver takes it once when the grid starts, since a long grid keeps the modules it imported
    then even if the work tree moves on; without it the record is taken here, before training."""
    import torch

    from qnn.models.creep import hybrid_net
    from qnn.training import fit, run_record

    task = Task(**task) if isinstance(task, dict) else task
    record = record if record is not None else run_record(command)
    torch.set_num_threads(cfg["threads"])
    folder = Path(out) / task.key
    folder.mkdir(parents=True, exist_ok=True)
    Xtr, ytr = _data(task.dataset, cfg["train_per_class"], "train")
    Xte, yte = _data(task.dataset, cfg["test_per_class"], "test")
    mode = "physical" if task.mode == "classical" else task.mode
    model, report = hybrid_net(task.configuration, in_channels=Xtr.shape[1], mode=mode, n_reps=cfg["n_reps"],
                               seed=task.seed)
    hist = fit(model, (Xtr, ytr), test=(Xte, yte), epochs=cfg["epochs"], batch_size=cfg["batch_size"],
               lr=cfg["lr"], seed=task.seed, checkpoint=folder / "checkpoint.pt", progress=progress)
    paper = hist.to_paper_dict()
    result = {
        "task": asdict(task), **paper,
        "epoch_seconds": hist.column("seconds"),
        "n_train": int(len(ytr)), "n_test": int(len(yte)),
        "params": report.params_after, "swap": report.to_dict(),
        "config": {k: cfg[k] for k in ("epochs", "batch_size", "lr", "train_per_class", "test_per_class", "n_reps",
                                       "threads")},
        "record": record,
    }
    tmp = folder / "result.json.part"
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, folder / "result.json")
    return result
