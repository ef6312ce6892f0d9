"""Transports: how jobs reach a backend.  A transport submits one primitive job (a list of
PUBs) with a tag, returns its job id, collects its result, and finds jobs by tag (so that a job
submitted just before a crash is collected, not sent again).

* :class:`LocalTransport`: fake backends and Aer in qiskit-ibm-runtime's local mode (jobs live
  in this process only);
* :class:`RuntimeTransport`: a ``QiskitRuntimeService`` (job, batch or session mode);
* the fake runtime service of :mod:`qnn.testing` implements the same four methods.
"""

from __future__ import annotations

import itertools

from qnn._optional import import_optional
from qnn.planner._errors import AuthenticationError, JobFailedError

__all__ = ["Transport", "LocalTransport", "RuntimeTransport", "scrub"]


def scrub(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` replaced by ``***``."""
    return text.replace(secret, "***") if secret else text


class Transport:
    """Interface: ``submit(kind, pubs, options, tag) -> job id``, ``result(job_id)`` (a
    ``PrimitiveResult``; raises :class:`JobFailedError` for a failed job, ``TimeoutError`` /
    ``ConnectionError`` for transient trouble), ``find(tag) -> [job ids]`` of jobs that did
    not fail, and ``local`` (True when nothing leaves this machine)."""

    local = True

    def submit(self, kind: str, pubs: list, options: dict, tag: str) -> str:  # pragma: no cover
        raise NotImplementedError

    def result(self, job_id: str):  # pragma: no cover
        raise NotImplementedError

    def find(self, tag: str) -> list[str]:  # pragma: no cover
        return []


def _primitive(kind: str, mode, options: dict):
    rt = import_optional("qiskit_ibm_runtime", feature="qnn.planner")
    cls = rt.EstimatorV2 if kind == "estimator" else rt.SamplerV2
    return cls(mode=mode, options=options)


class LocalTransport(Transport):
    """Run primitives locally on a fake backend (its noise model) or an Aer simulator."""

    local = True

    def __init__(self, backend):
        self.backend = backend
        self._jobs: dict[str, tuple] = {}
        self._ids = itertools.count()

    def submit(self, kind, pubs, options, tag):
        opts = {k: v for k, v in options.items() if k != "environment"}
        job = _primitive(kind, self.backend, opts).run(pubs)
        job_id = f"local-{next(self._ids)}"
        self._jobs[job_id] = (job, tag)
        return job_id

    def result(self, job_id):
        try:
            job, _ = self._jobs[job_id]
        except KeyError:
            raise JobFailedError(f"LocalTransport: job {job_id!r} is not known in this process") from None
        try:
            return job.result()
        except Exception as exc:
            raise JobFailedError(f"LocalTransport: job {job_id!r} failed ({type(exc).__name__}: {exc})") from exc

    def find(self, tag):
        return [j for j, (_, t) in self._jobs.items() if t == tag]


class RuntimeTransport(Transport):
    """Submit through a ``QiskitRuntimeService`` (job mode on ``backend``, or a ``Batch`` /
    ``Session`` opened on first use).  Job tags carry the plan position and input hash."""

    local = False

    def __init__(self, service, backend, mode: str = "job"):
        self.service = service
        self.backend = backend
        self.mode = mode
        self._mode_obj = None

    def _mode(self):
        if self.mode == "job":
            return self.backend
        if self._mode_obj is None:
            rt = import_optional("qiskit_ibm_runtime", feature="qnn.planner")
            self._mode_obj = (rt.Batch if self.mode == "batch" else rt.Session)(backend=self.backend)
        return self._mode_obj

    def submit(self, kind, pubs, options, tag):
        opts = dict(options)
        env = dict(opts.get("environment", {}))
        env["job_tags"] = list(env.get("job_tags", [])) + [tag]
        opts["environment"] = env
        try:
            job = _primitive(kind, self._mode(), opts).run(pubs)
        except Exception as exc:
            if "401" in str(exc) or "nauthori" in str(exc):
                raise AuthenticationError(f"RuntimeTransport: the service refused the account ({type(exc).__name__})") \
                    from None
            raise
        return job.job_id()

    def result(self, job_id):
        job = self.service.job(job_id)
        try:
            return job.result()
        except Exception as exc:
            if type(exc).__name__ in ("RuntimeJobFailureError", "RuntimeInvalidStateError", "RuntimeJobMaxTimeoutError"):
                raise JobFailedError(f"RuntimeTransport: job {job_id!r} failed ({type(exc).__name__}: {exc})") from exc
            raise

    def find(self, tag):
        jobs = self.service.jobs(job_tags=[tag], limit=20)
        return [j.job_id() for j in jobs if str(j.status()) not in ("ERROR", "CANCELLED", "JobStatus.ERROR")]

    def close(self) -> None:
        if self._mode_obj is not None:
            self._mode_obj.close()
            self._mode_obj = None
