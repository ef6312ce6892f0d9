"""The hardware path: plan, cost, budget, send and resume primitive jobs on IBM Quantum
backends (or fake backends locally).

* :class:`Planner` -- backend by name or least busy; ISA transpilation cached per (circuit,
  backend, optimisation level, seed); every circuit evaluation of one model step packed into as
  few PUBs and jobs as the backend's limits allow (:meth:`Planner.step`); job, batch and
  session modes; shots or precision; primitive options passed through.
* :func:`estimate` -- circuits, PUBs, jobs, shots and estimated QPU seconds of a forward pass,
  a training step, a training run, an explanation or a conformal calibration, before anything is
  sent; :class:`Budget` -- a limit the planner refuses to exceed.
* :class:`JobStore` -- SQLite record of every job, so an interrupted run resumes.

Example:
    >>> from qnn.planner import Budget, Estimate
    >>> Budget(jobs=2).allows(Estimate(jobs=3))
    False
"""

from qnn.planner._cost import DEFAULT_JOB_OVERHEAD_S, Budget, Estimate, job_qpu_seconds
from qnn.planner._errors import (
    AuthenticationError,
    BudgetExceededError,
    CircuitTooWideError,
    JobFailedError,
    PlanMismatchError,
    PlannerError,
    UnknownBackendError,
)
from qnn.planner._estimate import WORKLOADS, attach, estimate, evaluation_estimate, hardware_engines, planner_of
from qnn.planner._planner import EXECUTION_MODES, Planner, active_planner
from qnn.planner._store import JobStore
from qnn.planner._transport import LocalTransport, RuntimeTransport, Transport

__all__ = [
    "Planner", "active_planner", "EXECUTION_MODES", "Budget", "Estimate", "job_qpu_seconds",
    "DEFAULT_JOB_OVERHEAD_S", "estimate", "evaluation_estimate", "WORKLOADS", "attach", "planner_of", "hardware_engines", "JobStore",
    "Transport", "LocalTransport", "RuntimeTransport", "PlannerError", "AuthenticationError", "UnknownBackendError",
    "CircuitTooWideError", "PlanMismatchError", "BudgetExceededError", "JobFailedError",
]
