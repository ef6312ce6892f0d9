"""SQLite job store: every job's id, backend, input hash, plan position, status and (once
collected) results, written before and after submission, so an interrupted run resumes by
collecting finished jobs instead of resubmitting them.

Rows are keyed by ``(run, position)``: the plan position is the job's index in the run, and
``input_hash`` (SHA-256 of what the job sends) must match when a resumed run reaches the same
position.  No token or account detail is ever written.

Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); s = JobStore(os.path.join(d, "jobs.sqlite"))
    >>> s.begin("run", 0, "abc", "fake_manila", "estimator", tag="t")["status"]
    'submitting'
    >>> s.mark_submitted("run", 0, "job-1"); s.get("run", 0)["job_id"]
    'job-1'
"""

from __future__ import annotations

import io
import os
import sqlite3
import time

import numpy as np

__all__ = ["JobStore", "STATUSES"]

STATUSES = ("submitting", "submitted", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    run TEXT NOT NULL,
    position INTEGER NOT NULL,
    input_hash TEXT NOT NULL,
    backend TEXT NOT NULL,
    primitive TEXT NOT NULL,
    tag TEXT NOT NULL,
    status TEXT NOT NULL,
    job_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    result BLOB,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (run, position)
)
"""


class JobStore:
    """A local SQLite file of jobs (one connection per operation: safe after a crash)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        d = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(d, exist_ok=True)
        with self._connect() as con:
            con.execute(_SCHEMA)

    def __repr__(self) -> str:
        return f"JobStore({self.path!r})"

    def __reduce__(self):
        return (JobStore, (self.path,))

    def _connect(self):
        con = sqlite3.connect(self.path, timeout=30)
        con.row_factory = sqlite3.Row
        return con

    def get(self, run: str, position: int) -> dict | None:
        with self._connect() as con:
            row = con.execute("SELECT * FROM jobs WHERE run=? AND position=?", (run, position)).fetchone()
        return None if row is None else dict(row)

    def begin(self, run: str, position: int, input_hash: str, backend: str, primitive: str, *, tag: str) -> dict:
        """Record a job about to be submitted (status ``submitting``), or return the existing row."""
        now = time.time()
        with self._connect() as con:
            con.execute("INSERT OR IGNORE INTO jobs (run, position, input_hash, backend, primitive, tag, status, "
                        "created, updated) VALUES (?,?,?,?,?,?,?,?,?)",
                        (run, position, input_hash, backend, primitive, tag, "submitting", now, now))
        return self.get(run, position)

    def _update(self, run, position, **fields) -> None:
        fields["updated"] = time.time()
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._connect() as con:
            con.execute(f"UPDATE jobs SET {cols} WHERE run=? AND position=?", (*fields.values(), run, position))

    def mark_attempt(self, run: str, position: int) -> None:
        with self._connect() as con:
            con.execute("UPDATE jobs SET attempts=attempts+1, status='submitting', job_id=NULL, updated=? "
                        "WHERE run=? AND position=?", (time.time(), run, position))

    def mark_submitted(self, run: str, position: int, job_id: str) -> None:
        self._update(run, position, status="submitted", job_id=str(job_id))

    def mark_done(self, run: str, position: int, arrays: list[np.ndarray]) -> None:
        buf = io.BytesIO()
        np.savez(buf, *arrays)
        self._update(run, position, status="done", result=buf.getvalue(), error=None)

    def mark_failed(self, run: str, position: int, error: str) -> None:
        self._update(run, position, status="failed", error=error[:2000])

    @staticmethod
    def arrays(row: dict) -> list[np.ndarray]:
        """The result arrays stored with a ``done`` row."""
        with np.load(io.BytesIO(row["result"]), allow_pickle=False) as z:
            return [z[f"arr_{i}"] for i in range(len(z.files))]

    def rows(self, run: str | None = None) -> list[dict]:
        q, args = ("SELECT * FROM jobs", ()) if run is None else ("SELECT * FROM jobs WHERE run=?", (run,))
        with self._connect() as con:
            return [dict(r) for r in con.execute(q + " ORDER BY run, position", args)]
