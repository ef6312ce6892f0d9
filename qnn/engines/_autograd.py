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
* ``PauliExp`` gates ``U = exp(iA)``, ``A = sum_k c_k P_k``: the generalised shift rule
  ``dE/dc_k = sum_l omega_kl [E(U e^{i pi/4 P_l}) - E(U e^{-i pi/4 P_l})]`` over all 4^m - 1
  strings ``P_l`` of the gate's m wires, with ``omega`` from
  :func:`qnn.pauli.pauli_exp_shift_coefficients` (computed classically from ``A``'s
  eigendecomposition).  The shifted matrices ``U e^{+-i pi/4 P_l}`` are the gate's matrix in
  2 (4^m - 1) further rows per sample, whatever the number of words; the engines receive every
  ``PauliExp`` matrix per row (``unitaries``), since it has no parametrised circuit form;
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
from qnn.engines._convert import OccurrencePlan, occurrence_plan, pauli_exp_gates
from qnn.pauli import pauli_exp_matrix, pauli_exp_shift_coefficients, pauli_matrices

__all__ = ["parameter_shift_run", "shift_terms", "Evaluate"]

# evaluate(thetas (N, P) float64, states (S, 2**n) float64 | None, state_ids (N,) int | None
#          [, unitaries {gate index: (N, 2**m, 2**m) complex128}, only for circuits with PauliExp gates])
#   -> (N, n_outputs) float64
Evaluate = Callable[[np.ndarray, "np.ndarray | None", "np.ndarray | None"], np.ndarray]

_C1 = (math.sqrt(2) + 1) / (4 * math.sqrt(2))
_C2 = (math.sqrt(2) - 1) / (4 * math.sqrt(2))
TWO_TERM = ((math.pi / 2, 0.5), (-math.pi / 2, -0.5))
FOUR_TERM = ((math.pi / 2, _C1), (-math.pi / 2, -_C1), (3 * math.pi / 2, -_C2), (-3 * math.pi / 2, _C2))


def shift_terms(plan: OccurrencePlan, selected: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten the shift rules of the selected occurrences into ``(occurrence, shift, coef)``."""
    occ, shift, coef = [], [], []
    for p in np.flatnonzero(selected & ~plan.pauli_exp):
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
        # PauliExp gates: (gate index, words, occurrence per coefficient (-1: constant), constants)
        self.pe = []
        for gi in pauli_exp_gates(circuit):
            g = circuit.gates[gi]
            occ = iter(np.flatnonzero(self.plan.gate == gi))
            cols = np.array([-1 if prm.kind == "const" else next(occ) for prm in g.params], dtype=np.int64)
            consts = np.array([prm.offset if prm.kind == "const" else 0.0 for prm in g.params])
            self.pe.append((gi, g.words, cols, consts))

    def coefficients(self, entry, theta: np.ndarray) -> np.ndarray:
        """The gate's coefficients ``c_k`` per row, ``(N, K)``."""
        _, _, cols, consts = entry
        c = np.tile(consts, (theta.shape[0], 1))
        m = cols >= 0
        c[:, m] = theta[:, cols[m]]
        return c

    def unitaries(self, theta: np.ndarray) -> dict | None:
        if not self.pe:
            return None
        with torch.no_grad():
            return {e[0]: pauli_exp_matrix(e[1], torch.from_numpy(self.coefficients(e, theta))).numpy()
                    for e in self.pe}

    def call(self, theta, states, ids, unitaries):
        if self.pe:
            return self.evaluate(theta, states, ids, unitaries)
        return self.evaluate(theta, states, ids)


def _half_turns(m: int) -> np.ndarray:
    """``e^{+-i pi/4 P_l} = (I +- i P_l) / sqrt 2`` for the 4^m - 1 strings: ``(L, 2, d, d)``."""
    p = pauli_matrices(m, torch.complex128).numpy()
    eye = np.eye(2**m, dtype=np.complex128)
    return np.stack([(eye + 1j * p) / math.sqrt(2), (eye - 1j * p) / math.sqrt(2)], axis=1)


def _repeat_u(unitaries: dict | None, k: int) -> dict | None:
    return None if unitaries is None else {gi: np.repeat(u, k, axis=0) for gi, u in unitaries.items()}


def _gradient_rows(info: _Ctx, theta, u, states, U0, need_x: bool, need_w: bool):
    """Every shifted point the backward pass needs, as one block of rows
    ``(thetas, states, state ids, unitaries, meta)``, or None when no gradient is needed.

    ``states`` (when the circuit is amplitude-embedded) starts with the forward rows' states, so the
    forward rows (state ids ``0..B-1``) can be evaluated in the same call (``eager``)."""
    plan, circuit = info.plan, info.circuit
    B = theta.shape[0]
    selected = (plan.is_input & need_x) | (~plan.is_input & need_w)
    amp = u is not None and need_x
    if not B or not (selected.any() or amp):
        return None
    occ, shift, coef = shift_terms(plan, selected)
    E = occ.shape[0]
    thetas, ids, units = [], [], []

    def block(th, row_ids, us):
        thetas.append(th)
        ids.append(row_ids)
        units.append(us)
        return sum(t.shape[0] for t in thetas[:-1])

    # gate-angle shifts: rows (b, e)
    th = np.repeat(theta[:, None, :], E, axis=1)  # (B, E, P)
    if E:
        th[:, np.arange(E), occ] += shift[None, :]
    block(th.reshape(B * E, plan.n_occurrences), np.repeat(np.arange(B), E), _repeat_u(U0, E))
    # PauliExp gates: rows (b, l, +-) with the gate's matrix U_b e^{+-i pi/4 P_l}
    pe_jobs = []
    for entry in info.pe:
        gi, words, cols, _ = entry
        ks = [k for k, c in enumerate(cols) if c >= 0 and selected[c]]
        if not ks:
            continue
        mq = len(words[0])
        L = 4**mq - 1
        omega = pauli_exp_shift_coefficients(words, torch.from_numpy(info.coefficients(entry, theta))).numpy()
        shifted = np.einsum("bij,lsjk->blsik", U0[gi], _half_turns(mq)).reshape(B * L * 2, 2**mq, 2**mq)
        us = _repeat_u(U0, 2 * L)
        us[gi] = shifted
        start = block(np.repeat(theta, 2 * L, axis=0), np.repeat(np.arange(B), 2 * L), us)
        pe_jobs.append((cols, ks, omega, L, start))
    aux = amp_start = None
    all_states = states if u is not None else None
    if amp:
        J = circuit.state_prep.n_features
        shifted_s, aux = shifted_states(u, J)
        amp_start = block(np.repeat(theta, J * 2, axis=0), B + np.arange(B * J * 2), _repeat_u(U0, 2 * J))
        all_states = np.concatenate([states, shifted_s])
    all_theta = np.concatenate(thetas, axis=0)
    all_ids = np.concatenate(ids) if u is not None else None
    all_u = None if U0 is None else {gi: np.concatenate([us[gi] for us in units]) for gi in U0}
    return all_theta, all_states, all_ids, all_u, (occ, coef, E, pe_jobs, amp, amp_start, aux)


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
        unitaries = info.unitaries(theta) if B else None
        rows = None
        if info.eager and B:
            # forward and every shifted point in one evaluation (one job per primitive per step)
            rows = _gradient_rows(info, theta, u, states, unitaries, bool(ctx.needs_input_grad[1]),
                                  bool(ctx.needs_input_grad[2]))
        ctx.shifted = None
        if rows is not None:
            g_theta, g_states, g_ids, g_u, meta = rows
            all_theta = np.concatenate([theta, g_theta], axis=0)
            all_ids = None if g_ids is None else np.concatenate([ids, g_ids])
            all_u = None if unitaries is None else {gi: np.concatenate([unitaries[gi], g_u[gi]]) for gi in unitaries}
            res = _check_output(info.owner, info.call(all_theta, g_states, all_ids, all_u), all_theta.shape[0], O)
            vals, ctx.shifted = res[:B], (res[B:], meta)
        else:
            vals = (_check_output(info.owner, info.call(theta, states, ids, unitaries), B, O) if B
                    else np.zeros((0, O)))
        ctx.info, ctx.theta, ctx.vals, ctx.unitaries = info, theta, vals, unitaries
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
        res = meta = None
        if ctx.shifted is not None:
            res, meta = ctx.shifted
        else:
            rows = _gradient_rows(info, theta, u, ctx.states, ctx.unitaries, need_x, need_w)
            if rows is not None:
                all_theta, states, all_ids, all_u, meta = rows
                res = _check_output(info.owner, info.call(all_theta, states, all_ids, all_u), all_theta.shape[0], O)
        if meta is not None:
            occ, coef, E, pe_jobs, amp, amp_start, aux = meta
            dtheta = np.zeros((B, plan.n_occurrences))
            if E:
                r = res[: B * E].reshape(B, E, O)
                contrib = np.einsum("beo,bo->be", r, g) * coef[None, :]  # (B, E)
                np.add.at(dtheta, (slice(None), occ), contrib)
            for cols, ks, omega, L, start in pe_jobs:
                r = res[start: start + B * L * 2].reshape(B, L, 2, O)
                d = np.einsum("blso,bo->bls", r, g)
                d = d[..., 0] - d[..., 1]  # (B, L)
                for k in ks:
                    dtheta[:, cols[k]] += (omega[:, k, :] * d).sum(-1)
            if E or pe_jobs:
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
                gx[:, sp.start: sp.start + J] += input_grad(res[amp_start:], aux, vals, ctx.m, g)
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
