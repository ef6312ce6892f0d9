"""Torch autograd for engines that only evaluate circuits (Qiskit, IBM Runtime).

:func:`parameter_shift_run` wraps an ``evaluate`` callback in a ``torch.autograd.Function``.
The forward pass evaluates the circuit once for the whole batch.  The backward pass computes
the vector-Jacobian product by **exact shift rules**, and packs every shifted point of the
batch into **one** further ``evaluate`` call (so a hardware engine sends one job per primitive);
with ``eager=True`` the shifted points go in the forward pass's own call instead:

* each parametrised gate angle ("occurrence" ``p``, see
  :func:`qnn.engines._convert.occurrence_plan`) is ``theta_p = scale_p * v + offset_p`` for an
  input or weight value ``v``; the chain rule gives ``dL/dv = sum_p scale_p dL/dtheta_p`` (one
  weight may feed several gates);
* single-qubit rotations and ``PhaseShift`` (generator eigenvalues ``+-1/2``) use the two-term
  rule ``df/dt = [f(t + pi/2) - f(t - pi/2)] / 2``;
* controlled rotations ``CRX/CRY/CRZ/MCRY`` (eigenvalues ``0, +-1/2``) use the four-term rule
  ``df/dt = c1 [f(t + pi/2) - f(t - pi/2)] - c2 [f(t + 3pi/2) - f(t - 3pi/2)]`` with
  ``c1 = (sqrt2 + 1) / (4 sqrt2)``, ``c2 = (sqrt2 - 1) / (4 sqrt2)``;
* ``Rot`` is three rotations, one occurrence each;
* amplitude-embedded features: the exact polarisation rule of :mod:`qnn.engines._amplitude`
  (two extra states per feature and sample, in the same call).

With shots the shifted evaluations use the same shot count as the forward pass, so the
gradient is an unbiased estimate.

Example:
    >>> import numpy as np, torch, qnn
    >>> from qnn.engines._autograd import parameter_shift_run
    >>> c = qnn.Circuit(1); _ = c.new_inputs(1); c.add("RX", 0, [qnn.Param.input(0)]).measure_z()
    Circuit(n_qubits=1, gates=1, inputs=1, weights=0, outputs=1)
    >>> ev = lambda theta, states, ids: np.cos(theta[:, :1])   # <Z> after RX(theta)
    >>> x = torch.tensor([[0.3]], dtype=torch.float64, requires_grad=True)
    >>> y = parameter_shift_run("demo", ev, c, x, torch.zeros(0, dtype=torch.float64))
    >>> y.sum().backward()
    >>> bool(abs(float(x.grad) + np.sin(0.3)) < 1e-12)
    True
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from qnn.circuit import Circuit
from qnn.engines._amplitude import input_grad, normalised, scaled_features, shifted_states
from qnn.engines._convert import OccurrencePlan, occurrence_plan

__all__ = ["parameter_shift_run", "shift_terms", "Evaluate"]

# evaluate(thetas (N, P) float64, states (S, 2**n) float64 | None, state_ids (N,) int | None)
#   -> (N, n_outputs) float64
Evaluate = Callable[[np.ndarray, "np.ndarray | None", "np.ndarray | None"], np.ndarray]

_C1 = (math.sqrt(2) + 1) / (4 * math.sqrt(2))
_C2 = (math.sqrt(2) - 1) / (4 * math.sqrt(2))
TWO_TERM = ((math.pi / 2, 0.5), (-math.pi / 2, -0.5))
FOUR_TERM = ((math.pi / 2, _C1), (-math.pi / 2, -_C1), (3 * math.pi / 2, -_C2), (-3 * math.pi / 2, _C2))


def shift_terms(plan: OccurrencePlan, selected: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten the shift rules of the selected occurrences into ``(occurrence, shift, coef)``."""
    occ, shift, coef = [], [], []
    for p in np.flatnonzero(selected):
        for s, c in FOUR_TERM if plan.four_term[p] else TWO_TERM:
            occ.append(p)
            shift.append(s)
            coef.append(c)
    return (np.asarray(occ, dtype=np.int64), np.asarray(shift, dtype=np.float64),
            np.asarray(coef, dtype=np.float64))


def _angles_np(plan: OccurrencePlan, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    B = x.shape[0]
    if plan.n_occurrences == 0:
        return np.zeros((B, 0))
    raw = np.empty((B, plan.n_occurrences))
    if plan.is_input.any():
        raw[:, plan.is_input] = x[:, plan.index[plan.is_input]]
    if (~plan.is_input).any():
        raw[:, ~plan.is_input] = w[plan.index[~plan.is_input]][None, :]
    return raw * plan.scale + plan.offset


def _check_output(owner: str, vals, n_rows: int, n_out: int) -> np.ndarray:
    vals = np.asarray(vals, dtype=np.float64)
    if vals.shape != (n_rows, n_out):
        raise RuntimeError(
            f"{owner}: the backend returned results of shape {vals.shape}; expected ({n_rows}, {n_out})"
        )
    if not np.all(np.isfinite(vals)):
        raise RuntimeError(f"{owner}: the backend returned NaN or inf results")
    return vals


class _Ctx:
    """Non-tensor state handed to the autograd Function."""

    def __init__(self, owner: str, evaluate: Evaluate, circuit: Circuit, eager: bool = False):
        self.owner = owner
        self.evaluate = evaluate
        self.circuit = circuit
        self.plan = occurrence_plan(circuit)
        self.eager = eager


def _gradient_rows(info: _Ctx, theta, u, states, need_x: bool, need_w: bool):
    """Every shifted point the backward pass needs: ``(thetas, states, ids, meta)`` or None."""
    plan, circuit = info.plan, info.circuit
    B = theta.shape[0]
    selected = (plan.is_input & need_x) | (~plan.is_input & need_w)
    amp = u is not None and need_x
    if not B or not (selected.any() or amp):
        return None
    occ, shift, coef = shift_terms(plan, selected)
    E = occ.shape[0]
    th = np.repeat(theta[:, None, :], E, axis=1)  # (B, E, P): rows (b, e)
    if E:
        th[:, np.arange(E), occ] += shift[None, :]
    thetas = [th.reshape(B * E, plan.n_occurrences)]
    state_list, ids, aux = None, None, None
    if u is not None:
        state_list = [states]
        ids = [np.repeat(np.arange(B), E)]
    if amp:
        J = circuit.state_prep.n_features
        shifted, aux = shifted_states(u, J)
        state_list.append(shifted)
        thetas.append(np.repeat(theta, J * 2, axis=0))
        ids.append(B + np.arange(B * J * 2))
    all_theta = np.concatenate(thetas, axis=0)
    all_states = np.concatenate(state_list, axis=0) if state_list is not None else None
    all_ids = np.concatenate(ids) if ids is not None else None
    return all_theta, all_states, all_ids, (occ, coef, E, amp, aux)


class _ParameterShiftFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, info: _Ctx, inputs: torch.Tensor, weights: torch.Tensor):
        circuit = info.circuit
        B, O = inputs.shape[0], circuit.n_outputs
        x64 = inputs.detach().to("cpu", torch.float64)
        x = x64.numpy()
        w = weights.detach().to("cpu", torch.float64).numpy()
        theta = _angles_np(info.plan, x, w)
        u = m = states = ids = None
        if circuit.state_prep is not None:
            u_t, m_t = scaled_features(info.owner, circuit.state_prep, circuit.n_qubits, x64)
            u, m, states = u_t.numpy(), m_t.numpy(), normalised(u_t).numpy()
            ids = np.arange(B)
        rows = None
        if info.eager and B:
            # forward and every shifted point in one evaluation (one job per primitive per step)
            rows = _gradient_rows(info, theta, u, states, bool(ctx.needs_input_grad[1]),
                                  bool(ctx.needs_input_grad[2]))
        ctx.shifted = None
        if rows is not None:
            g_theta, g_states, g_ids, meta = rows
            all_theta = np.concatenate([theta, g_theta], axis=0)
            if g_states is not None:  # the gradient rows' states already start with the forward ones
                all_states, all_ids = g_states, np.concatenate([ids, g_ids])
            else:
                all_states, all_ids = None, None
            res = _check_output(info.owner, info.evaluate(all_theta, all_states, all_ids), all_theta.shape[0], O)
            vals, ctx.shifted = res[:B], (res[B:], meta)
        else:
            vals = _check_output(info.owner, info.evaluate(theta, states, ids), B, O) if B else np.zeros((0, O))
        ctx.info, ctx.theta, ctx.vals = info, theta, vals
        ctx.u, ctx.m, ctx.states = u, m, states
        ctx.shapes = (inputs.shape, inputs.dtype, inputs.device, weights.shape, weights.dtype, weights.device)
        return torch.as_tensor(vals, dtype=inputs.dtype, device=inputs.device)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        info, theta, vals, u = ctx.info, ctx.theta, ctx.vals, ctx.u
        plan, circuit = info.plan, info.circuit
        xshape, xdtype, xdev, wshape, wdtype, wdev = ctx.shapes
        need_x, need_w = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        B, O = vals.shape
        gx = np.zeros(tuple(xshape))
        gw = np.zeros(tuple(wshape))
        g = grad_out.detach().to("cpu", torch.float64).numpy()
        if ctx.shifted is not None:
            res, meta = ctx.shifted
        else:
            rows = _gradient_rows(info, theta, u, ctx.states, need_x, need_w)
            res, meta = None, None
            if rows is not None:
                all_theta, states, all_ids, meta = rows
                res = _check_output(info.owner, info.evaluate(all_theta, states, all_ids), all_theta.shape[0], O)
        if meta is not None:
            occ, coef, E, amp, aux = meta
            if E:
                r = res[: B * E].reshape(B, E, O)
                contrib = np.einsum("beo,bo->be", r, g) * coef[None, :]  # (B, E)
                dtheta = np.zeros((B, plan.n_occurrences))
                np.add.at(dtheta, (slice(None), occ), contrib)
                dtheta *= plan.scale[None, :]
                if need_x and plan.is_input.any():
                    m = plan.is_input
                    np.add.at(gx, (slice(None), plan.index[m]), dtheta[:, m])
                if need_w and (~plan.is_input).any():
                    m = ~plan.is_input
                    np.add.at(gw, plan.index[m], dtheta[:, m].sum(axis=0))
            if amp:
                sp = circuit.state_prep
                J = sp.n_features
                gx[:, sp.start: sp.start + J] += input_grad(res[B * E:], aux, vals, ctx.m, g)
        grad_x = torch.as_tensor(gx, dtype=xdtype, device=xdev) if need_x else None
        grad_w = torch.as_tensor(gw, dtype=wdtype, device=wdev) if need_w else None
        return None, grad_x, grad_w


def parameter_shift_run(owner: str, evaluate: Evaluate, circuit: Circuit, inputs: torch.Tensor,
                        weights: torch.Tensor, *, eager: bool = False) -> torch.Tensor:
    """Evaluate ``circuit`` on a batch through ``evaluate`` with parameter-shift gradients.

    Args:
        owner: name used in error messages (e.g. ``"QiskitEngine"``).
        evaluate: ``evaluate(thetas, states, state_ids) -> (N, n_outputs)``: ``thetas (N, P)`` are
            occurrence angles (see :func:`qnn.engines._convert.occurrence_plan`); for an
            amplitude-embedded circuit ``states (S, 2**n)`` holds normalised states in qnn basis
            order and row ``i`` starts from ``states[state_ids[i]]``, otherwise both are None.
        circuit, inputs, weights: as in :meth:`qnn.engines.Engine.run` (already validated).
        eager: when a gradient will be needed, evaluate the forward rows and every shifted
            point in the **same** ``evaluate`` call (so forward and backward share one job);
            the backward pass then evaluates nothing.

    Returns:
        ``(B, n_outputs)`` tensor on ``inputs.device`` whose backward runs one further
        ``evaluate`` call holding every shifted point.
    """
    eager = eager and torch.is_grad_enabled() and (inputs.requires_grad or weights.requires_grad)
    return _ParameterShiftFunction.apply(_Ctx(owner, evaluate, circuit, eager), inputs, weights)
