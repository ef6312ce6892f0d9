"""Run records: what made an experiment result (code version, packages, machine, command)."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Sequence

__all__ = ["run_record"]

# Distributions whose versions matter for qnn results; only the installed ones are listed.
_KEY_PACKAGES = (
    "torch", "numpy", "scipy", "scikit-learn", "pandas", "tqdm", "mlxtend",
    "pennylane", "pennylane-lightning", "qiskit", "qiskit-aer", "qiskit-ibm-runtime",
    "shap", "lime", "mapie", "crepes", "xgboost", "lightgbm", "catboost",
)


def _git(args: list[str], cwd: Path) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        res = subprocess.run([git, *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def _git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git work tree holding the qnn package; (None, None) without one."""
    import qnn

    where = Path(qnn.__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:
        return None, None
    status = _git(["status", "--porcelain", "--untracked-files=no"], where)
    return commit, (None if status is None else bool(status))


def _packages() -> dict[str, str]:
    out = {}
    for name in _KEY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def run_record(command: str | Sequence[str] | None = None) -> dict:
    """Describe the current run: code version, packages, machine, command and time.

    Args:
        command: the command line to record, as a string or an argv list (joined with shell
            quoting); default ``sys.argv``.

    Returns:
        dict of plain values: ``git_commit`` (``None`` without git or outside a work tree),
        ``git_dirty`` (tracked files modified; ``None`` when unknown), ``qnn_version``,
        ``python``, ``packages`` (``{distribution: version}`` for the installed key packages:
        torch, numpy, ...), ``platform``, ``machine``, ``cpu_count``, ``torch_threads``,
        ``cuda`` (torch's CUDA version or ``None``), ``command`` and ``timestamp`` (UTC, ISO 8601).

    Example:
        >>> r = run_record(["python", "train.py", "--epochs", "3"])
        >>> r["command"]
        'python train.py --epochs 3'
        >>> "torch" in r["packages"] and r["timestamp"].endswith("+00:00")
        True
    """
    import qnn
    import torch

    if command is None:
        command = list(sys.argv)
    if isinstance(command, str):
        cmd = command
    elif isinstance(command, (list, tuple)) and all(isinstance(a, str) for a in command):
        cmd = shlex.join(command)
    else:
        raise TypeError(f"run_record: command must be a str, a list of str or None; got {command!r}")
    commit, dirty = _git_state()
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "qnn_version": qnn.__version__,
        "python": platform.python_version(),
        "packages": _packages(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "command": cmd,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
