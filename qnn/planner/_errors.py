"""Errors of the hardware path, each naming what was expected and what was given."""

from __future__ import annotations

__all__ = ["PlannerError", "AuthenticationError", "UnknownBackendError", "CircuitTooWideError",
           "PlanMismatchError", "BudgetExceededError", "JobFailedError", "TRANSIENT_ERRORS"]


class PlannerError(RuntimeError):
    """Base class of the planner's errors."""


class AuthenticationError(PlannerError):
    """No usable IBM Quantum account: none saved, no token in the environment, or the token was refused."""


class UnknownBackendError(PlannerError, ValueError):
    """The backend name is not one the service (or the fake provider) knows."""


class CircuitTooWideError(PlannerError, ValueError):
    """A circuit needs more qubits than the backend has."""


class PlanMismatchError(PlannerError):
    """Results do not match the plan (wrong number or shape), or a resumed run asks for
    different jobs than the job store recorded at the same plan position."""


class BudgetExceededError(PlannerError):
    """Sending the next jobs would exceed the planner's budget (nothing was sent)."""


class JobFailedError(PlannerError):
    """A job failed on the service (after the retries)."""


# errors worth retrying with backoff: network, time-outs
TRANSIENT_ERRORS = (ConnectionError, TimeoutError, OSError)
