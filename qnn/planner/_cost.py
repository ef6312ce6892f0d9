"""Cost model and budget.

QPU time of one primitive job.  IBM documents the execution model, not a closed formula:
circuits of a job are run column-wise over the (circuits x shots) matrix, and a repetition
delay ``rep_delay`` (``backend.default_rep_delay``) follows every circuit execution
(IBM Quantum documentation, "Qubit initialization" / dynamic repetition rate execution,
https://quantum.cloud.ibm.com/docs/en/guides/repetition-rate-execution; usage definitions:
https://quantum.cloud.ibm.com/docs/en/guides/estimate-job-run-time).  qnn therefore estimates

    qpu_seconds(job) = overhead + sum over bound circuits c of shots_c * (duration_c + rep_delay)

with ``duration_c`` from the backend target's gate durations and ``overhead`` a per-job
constant (default 2 s; IBM publishes no value, so this is an **approximation**; after
submission the service's own figure is ``job.usage_estimation['quantum_seconds']``).
Estimator jobs measure each qubit-wise-commuting group of observables separately, so their
bound circuits count once per group; twirling / error-mitigation overheads are not modelled.

Example:
    >>> round(job_qpu_seconds([(100, 1e-6)], rep_delay=250e-6, overhead=2.0), 6)
    2.0251
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from qnn.planner._errors import BudgetExceededError

__all__ = ["job_qpu_seconds", "DEFAULT_JOB_OVERHEAD_S", "DEFAULT_REP_DELAY_S", "Budget", "Estimate"]

DEFAULT_JOB_OVERHEAD_S = 2.0
DEFAULT_REP_DELAY_S = 250e-6


def job_qpu_seconds(executions, *, rep_delay: float = DEFAULT_REP_DELAY_S,
                    overhead: float = DEFAULT_JOB_OVERHEAD_S) -> float:
    """Estimated QPU seconds of one job from ``executions``: ``(shots, circuit duration in s)``
    for every bound circuit it runs (see the module docstring)."""
    return overhead + sum(shots * (duration + rep_delay) for shots, duration in executions)


@dataclass
class Estimate:
    """What a workload sends: bound circuits, PUBs, jobs, shots, estimated QPU seconds.

    ``circuits`` counts bound circuits (parameter sets) as the primitives receive them,
    ``shots`` the total shots over them; ``exact`` is False when the figures were scaled from
    a smaller dry run rather than planned one by one.
    """

    workload: str = ""
    circuits: int = 0
    pubs: int = 0
    jobs: int = 0
    shots: int = 0
    qpu_seconds: float = 0.0
    exact: bool = True
    by_primitive: dict = field(default_factory=dict)

    def __add__(self, other: "Estimate") -> "Estimate":
        kinds = dict(self.by_primitive)
        for k, v in other.by_primitive.items():
            kinds[k] = kinds.get(k, 0) + v
        return Estimate(self.workload or other.workload, self.circuits + other.circuits, self.pubs + other.pubs,
                        self.jobs + other.jobs, self.shots + other.shots, self.qpu_seconds + other.qpu_seconds,
                        self.exact and other.exact, kinds)

    def scaled(self, times: float, workload: str | None = None, exact: bool | None = None) -> "Estimate":
        """This estimate repeated ``times`` times (jobs, circuits... multiplied)."""
        return Estimate(workload or self.workload, int(round(self.circuits * times)), int(round(self.pubs * times)),
                        int(math.ceil(self.jobs * times)), int(round(self.shots * times)), self.qpu_seconds * times,
                        self.exact if exact is None else exact,
                        {k: int(math.ceil(v * times)) for k, v in self.by_primitive.items()})

    def as_dict(self) -> dict:
        return {"workload": self.workload, "circuits": self.circuits, "pubs": self.pubs, "jobs": self.jobs,
                "shots": self.shots, "qpu_seconds": round(self.qpu_seconds, 6), "exact": self.exact,
                "jobs_by_primitive": dict(self.by_primitive)}

    def __str__(self) -> str:
        approx = "" if self.exact else " (scaled estimate)"
        return (f"{self.workload or 'workload'}: {self.circuits:,} circuits in {self.pubs:,} PUBs, "
                f"{self.jobs:,} jobs, {self.shots:,} shots, ~{self.qpu_seconds:,.1f} QPU s{approx}")


class Budget:
    """A spending limit in estimated QPU seconds and/or jobs, checked **before** jobs are sent.

    Example:
        >>> b = Budget(qpu_seconds=10)
        >>> b.charge(Estimate(jobs=1, qpu_seconds=4.0)); b.spent_qpu_seconds
        4.0
        >>> b.charge(Estimate(jobs=1, qpu_seconds=7.0))
        Traceback (most recent call last):
        ...
        qnn.planner._errors.BudgetExceededError: Budget: sending 1 jobs (~7.0 QPU s) would exceed the budget of 10.0 QPU s (4.0 spent); raise it with budget.raise_to(...)
    """

    def __init__(self, qpu_seconds: float | None = None, jobs: int | None = None):
        for name, v in (("qpu_seconds", qpu_seconds), ("jobs", jobs)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                raise ValueError(f"Budget: {name} must be None or a number >= 0; got {v!r}")
        self.qpu_seconds = None if qpu_seconds is None else float(qpu_seconds)
        self.jobs = jobs
        self.spent_qpu_seconds = 0.0
        self.spent_jobs = 0

    def __repr__(self) -> str:
        return (f"Budget(qpu_seconds={self.qpu_seconds}, jobs={self.jobs}; spent {self.spent_qpu_seconds:.1f} s, "
                f"{self.spent_jobs} jobs)")

    def allows(self, est: Estimate) -> bool:
        if self.qpu_seconds is not None and self.spent_qpu_seconds + est.qpu_seconds > self.qpu_seconds + 1e-9:
            return False
        return not (self.jobs is not None and self.spent_jobs + est.jobs > self.jobs)

    def check(self, est: Estimate) -> None:
        """Raise :class:`BudgetExceededError` if ``est`` does not fit in what is left."""
        if self.allows(est):
            return
        limits = []
        if self.qpu_seconds is not None:
            limits.append(f"{self.qpu_seconds:.1f} QPU s ({self.spent_qpu_seconds:.1f} spent)")
        if self.jobs is not None:
            limits.append(f"{self.jobs} jobs ({self.spent_jobs} spent)")
        raise BudgetExceededError(
            f"Budget: sending {est.jobs} jobs (~{est.qpu_seconds:.1f} QPU s) would exceed the budget of "
            f"{' and '.join(limits)}; raise it with budget.raise_to(...)")

    def charge(self, est: Estimate) -> None:
        self.check(est)
        self.spent_qpu_seconds += est.qpu_seconds
        self.spent_jobs += est.jobs

    def raise_to(self, qpu_seconds: float | None = None, jobs: int | None = None) -> None:
        """Raise the limits (a limit can only go up)."""
        if qpu_seconds is not None:
            if self.qpu_seconds is not None and qpu_seconds < self.qpu_seconds:
                raise ValueError(f"Budget.raise_to: qpu_seconds must be >= {self.qpu_seconds}; got {qpu_seconds}")
            self.qpu_seconds = float(qpu_seconds)
        if jobs is not None:
            if self.jobs is not None and jobs < self.jobs:
                raise ValueError(f"Budget.raise_to: jobs must be >= {self.jobs}; got {jobs}")
            self.jobs = int(jobs)
