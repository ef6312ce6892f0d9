"""Cost estimates of whole workloads, before anything is sent.

:func:`estimate` dry-runs the workload through the planner (same recording, same packing, a
transport that sends nothing), so circuits, PUBs, jobs and shots are exactly what
:meth:`Planner.step` would send; workloads made of many identical passes (a training run, an
explanation, a calibration) multiply the planned pass (``exact`` stays True when every pass is
planned alike, False when a pass was scaled to a different batch size).

Example:
    >>> import torch
    >>> hardware_engines(torch.nn.Linear(2, 1))
    []
"""

from __future__ import annotations

import copy
import math

import torch

from qnn.planner._cost import Estimate

__all__ = ["estimate", "WORKLOADS", "hardware_engines", "planner_of", "attach"]

WORKLOADS = ("forward", "step", "train", "explain", "calibrate")


def hardware_engines(model) -> list[tuple[str, object]]:
    """``(module path, engine)`` for every submodule whose engine declares ``capabilities.hardware``."""
    out = []
    named = getattr(model, "named_modules", None)
    mods = list(named()) if callable(named) else [("", model)]
    for path, m in mods:
        eng = getattr(m, "engine", None)
        caps = getattr(eng, "capabilities", None)
        if caps is not None and getattr(caps, "hardware", False):
            out.append((path or type(m).__name__, eng))
    return out


def planner_of(model):
    """The planner of ``model``'s hardware engines (the first one's), or None."""
    hits = hardware_engines(model)
    return hits[0][1].planner if hits and hasattr(hits[0][1], "planner") else None


def attach(model, planner) -> None:
    """Make every hardware engine of ``model`` send through ``planner``."""
    for _, eng in hardware_engines(model):
        eng.use_planner(planner)


def _on_backend(model, backend, shots: int, seed):
    """A deep copy of ``model`` whose engines are ``ibm`` engines on ``backend``."""
    from qnn.engines import get_engine  # the engines sit above the planner: imported on use

    twin = copy.deepcopy(model)
    eng = get_engine("ibm", backend=backend, shots=shots, seed=seed)
    for _, m in twin.named_modules():
        if hasattr(getattr(m, "engine", None), "capabilities"):
            m.engine = eng
    return twin


def estimate(model, workload: str = "step", *, example: torch.Tensor, planner=None, backend=None,
             shots: int = 4096, n_samples: int | None = None, epochs: int = 1, n_evaluations: int | None = None,
             loss_fn=None, seed: int | None = None) -> Estimate:
    """Circuits, PUBs, jobs, shots and estimated QPU seconds of a workload on ``model``.

    Args:
        model: a torch module with qnn layers on the ``ibm`` engine (or any engine with
            ``backend=`` given: the estimate is for a copy moved to that backend).
        workload: ``"forward"`` (one no-grad pass on ``example``), ``"step"`` (one training
            step: forward and parameter-shift rows), ``"train"`` (``epochs`` over ``n_samples``
            in batches of ``len(example)``), ``"explain"`` (``n_evaluations`` model
            evaluations, e.g. a SHAP/LIME budget), ``"calibrate"`` (one pass over ``n_samples``
            calibration points).
        example: one input batch (its batch size is the training batch size).
        planner: the planner to plan with (default: the model's).
        backend, shots, seed: move a copy to an ``ibm`` engine on this backend first.
        loss_fn: ``loss_fn(output)`` for a step (default ``output.sum()``).
    """
    if workload not in WORKLOADS:
        raise ValueError(f"estimate: workload must be one of {list(WORKLOADS)}; got {workload!r}")
    if not torch.is_tensor(example) or example.dim() < 1 or example.shape[0] < 1:
        raise ValueError(f"estimate: example must be an input batch tensor (batch, ...); got {example!r}")
    if backend is not None:
        model = _on_backend(model, backend, shots, seed)
    planner = planner or planner_of(model)
    if planner is None:
        return Estimate(workload)  # nothing runs on hardware
    B = int(example.shape[0])

    def forward(batch: int, grad: bool) -> Estimate:
        x = example[:batch] if batch <= B else example[torch.arange(batch) % B]

        def fn():
            with torch.set_grad_enabled(grad):
                return model(x)
        return planner.dry_run(fn, workload)

    if workload == "forward":
        return forward(B, False)
    if workload == "step":
        return forward(B, True)
    if workload == "train":
        if n_samples is None or n_samples < 1 or epochs < 1:
            raise ValueError(f"estimate: 'train' needs n_samples >= 1 and epochs >= 1; got {n_samples}, {epochs}")
        full, rest = divmod(n_samples, B)
        est = forward(B, True).scaled(full * epochs, workload) if full else Estimate(workload)
        if rest:
            est = est + forward(rest, True).scaled(epochs, workload)
        est.workload = workload
        return est
    n = n_evaluations if workload == "explain" else n_samples
    if n is None or n < 1:
        raise ValueError(f"estimate: {workload!r} needs {'n_evaluations' if workload == 'explain' else 'n_samples'}"
                         f" >= 1; got {n}")
    if n <= 4 * B:
        return forward(n, False)
    full, rest = divmod(n, B)
    est = forward(B, False).scaled(full, workload)
    if rest:
        est = est + forward(rest, False)
    # batches of B are planned one by one here; the real workload may batch differently
    est.workload, est.exact = workload, False
    return est


def _ceil(x: float) -> int:
    return int(math.ceil(x))


def evaluation_estimate(model, n_evaluations: int, workload: str = "explain") -> Estimate:
    """Estimate of ``n_evaluations`` model evaluations from the engines' declared capabilities
    alone (no example input needed): one circuit evaluation per hardware layer and model
    evaluation, at each engine's ``cost_per_evaluation``, plus one job overhead per job of
    ``max_circuits_per_job`` circuits.  Scaled, so ``exact`` is False; :func:`estimate` with an
    example input plans it exactly."""
    est = Estimate(workload, exact=False)
    for _, eng in hardware_engines(model):
        caps = eng.capabilities
        planner = getattr(eng, "planner", None)
        per_job = getattr(planner, "max_circuits_per_job", 10_000)
        overhead = getattr(planner, "job_overhead", 2.0)
        jobs = _ceil(n_evaluations / per_job)
        est = est + Estimate(workload, n_evaluations, jobs, jobs, n_evaluations * (caps.shots or 0),
                             n_evaluations * caps.cost_per_evaluation + jobs * overhead, False, {"estimator": jobs})
    return est
