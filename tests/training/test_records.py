"""qnn.training.run_record: what made a result."""

from __future__ import annotations

import datetime
import shutil
import sys

import pytest

import qnn
from qnn.training import run_record
from qnn.training import _records


def test_fields_and_types():
    r = run_record()
    assert isinstance(r["command"], str) and r["command"]  # sys.argv of this pytest process
    assert r["qnn_version"] == qnn.__version__
    assert r["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "torch" in r["packages"] and "numpy" in r["packages"]
    assert all(isinstance(v, str) for v in r["packages"].values())
    assert isinstance(r["cpu_count"], int) and isinstance(r["torch_threads"], int)
    assert r["platform"] and r["machine"]
    t = datetime.datetime.fromisoformat(r["timestamp"])
    assert t.utcoffset() == datetime.timedelta(0)
    if shutil.which("git") and r["git_commit"] is not None:
        assert len(r["git_commit"]) == 40 and isinstance(r["git_dirty"], bool)


def test_command_given_as_string_or_argv():
    assert run_record("make all")["command"] == "make all"
    assert run_record(["python", "-m", "qnn.demo", "--out", "a b.json"])["command"] == "python -m qnn.demo --out 'a b.json'"
    with pytest.raises(TypeError, match=r"run_record: command must be a str, a list of str or None; got 3"):
        run_record(3)


def test_only_installed_packages_listed(monkeypatch):
    monkeypatch.setattr(_records, "_KEY_PACKAGES", ("torch", "surely-not-installed-pkg"))
    assert list(run_record()["packages"]) == ["torch"]


def test_without_git_no_crash(monkeypatch):
    monkeypatch.setattr(_records.shutil, "which", lambda name: None)
    r = run_record()
    assert r["git_commit"] is None and r["git_dirty"] is None
