"""Reference simulations of the QRNN, independent of the fast path (used by tests and the benchmark).

* :func:`explicit_forward` simulates the *circuit* of spec §1-2 literally: ``ord`` ancilla lanes,
  one multi-controlled ``Ry(phi_T)`` per monomial, the fixed ``Ry(pi/2)`` and trainable ``Ry(theta)``,
  ``cmiY`` gates, nested inverse blocks, postselection of every ancilla (global
  renormalisation), X gates writing and un-writing the input, projection of the inout lanes.
  In ``unitary`` mode each neuron is the uniformly controlled ``Ry(2 q(x))`` built from one fully
  (positively and negatively) controlled rotation per source basis state.
* :func:`per_sample_forward` is a straightforward per-sample simulation without ancillas
  (one state vector per sequence, angles recomputed from a boolean subset matrix at every neuron
  application, renormalised after every neuron) — the baseline of ``bench/bench_qrnn.py``.

Both read the parameters of a :class:`~qnn.qrnn.QRNN` (or its cell) so values and gradients can
be compared with the fast path.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

__all__ = ["explicit_forward", "per_sample_forward", "explicit_neuron"]


# ----------------------------------------------------------------------------- gate primitives
def _bits(n: int, lane: int, device) -> Tensor:
    return (torch.arange(1 << n, device=device) >> (n - 1 - lane)) & 1


def _apply_1q(state: Tensor, U: Tensor, target: int, n: int, controls=(), values=None) -> Tensor:
    """Apply the 2x2 matrix ``U`` on ``target``, controlled on ``controls`` having ``values`` (default 1)."""
    B = state.shape[0]
    v = state.reshape(B, 1 << target, 2, 1 << (n - 1 - target))
    applied = torch.einsum("ij,bajc->baic", U.to(state.dtype), v).reshape(B, -1)
    if not controls:
        return applied
    mask = torch.ones(1 << n, dtype=torch.bool, device=state.device)
    values = values if values is not None else [1] * len(controls)
    for c, val in zip(controls, values):
        mask &= _bits(n, c, state.device) == val
    return torch.where(mask, applied, state)


def _ry(angle) -> Tensor:
    a = torch.as_tensor(angle)
    c, s = torch.cos(a / 2), torch.sin(a / 2)
    return torch.stack((torch.stack((c, -s)), torch.stack((s, c))))


_X = torch.tensor([[0.0, 1.0], [1.0, 0.0]])


def _postselect(state: Tensor, lane: int, n: int, value: int = 0):
    keep = _bits(n, lane, state.device) == value
    proj = state * keep
    p = proj.pow(2).sum(-1)
    return proj / torch.sqrt(p).unsqueeze(-1), p


# ----------------------------------------------------------------------------- neuron
def _param_block(state, neuron, sources, anc, n, inverse: bool):
    """P (or P^dagger): multi-controlled Ry(phi_T) on ``anc``, then Ry(pi/2) and Ry(theta)."""
    gates = []
    subsets = [c for j in range(1, neuron.degree + 1) for c in itertools.combinations(sources, j)]
    for T, ph in zip(subsets, neuron.phi):
        gates.append((ph, tuple(T)))
    gates.append((torch.tensor(math.pi / 2, dtype=state.dtype), ()))
    gates.append((neuron.theta, ()))
    if inverse:
        gates = [(-a, T) for a, T in reversed(gates)]
    for a, T in gates:
        state = _apply_1q(state, _ry(a), anc, n, T)
    return state


def _block(state, neuron, sources, ancillas, n, k, target, dagger, probs):
    """Order-``k`` RUS block writing onto ``target`` (``dagger``: cmiY replaced by its inverse)."""
    a = ancillas[k - 1]
    pi = torch.tensor(math.pi, dtype=state.dtype)
    if k == 1:
        state = _param_block(state, neuron, sources, a, n, inverse=False)
        state = _apply_1q(state, _ry(-pi if dagger else pi), target, n, (a,))
        state = _param_block(state, neuron, sources, a, n, inverse=True)
    else:
        state = _block(state, neuron, sources, ancillas, n, k - 1, a, False, probs)
        state = _apply_1q(state, _ry(-pi if dagger else pi), target, n, (a,))
        state = _block(state, neuron, sources, ancillas, n, k - 1, a, True, probs)
    state, p = _postselect(state, a, n)
    probs.append(p)
    return state


def explicit_neuron(state: Tensor, neuron, n_system: int, mode: str = "postselect"):
    """Apply ``neuron`` (a :class:`~qnn.qrnn.QuantumNeuron` on ``n_system`` lanes) to ``state`` of shape
    ``(B, 2**(n_system + order))`` whose last ``order`` lanes are ancillas in ``|0>``.

    Returns ``(state, success_prob)`` where ``success_prob`` is the product of all postselection
    probabilities (``1`` in unitary mode).
    """
    k = neuron.order
    n = n_system + k
    sources = [i for i in range(n_system) if i != neuron.out]
    ancillas = list(range(n_system, n))
    if mode == "unitary":
        # uniformly controlled Ry(2 q(x)): one fully controlled rotation per source basis state
        poly_subsets = [c for j in range(1, neuron.degree + 1) for c in itertools.combinations(sources, j)]
        for xs in itertools.product((0, 1), repeat=len(sources)):
            val = dict(zip(sources, xs))
            eta = neuron.theta + math.pi / 2
            for T, ph in zip(poly_subsets, neuron.phi):
                if all(val[i] for i in T):
                    eta = eta + ph
            q = torch.atan(torch.tan(eta / 2) ** (1 << k))
            state = _apply_1q(state, _ry(2 * q), neuron.out, n, tuple(sources), list(xs))
        return state, torch.ones(state.shape[0], dtype=state.dtype)
    probs = []
    state = _block(state, neuron, sources, ancillas, n, k, neuron.out, False, probs)
    return state, torch.stack(probs).prod(0)


# ----------------------------------------------------------------------------- whole QRNN
def _cell_of(model):
    return getattr(model, "cell", model)


def explicit_forward(model, inputs: Tensor, words: Tensor, hx: Tensor | None = None):
    """Explicit-ancilla simulation of a QRNN run that measures ``words[:, t+1]`` at step ``t``.

    Args:
        model: a :class:`~qnn.qrnn.QRNN` or :class:`~qnn.qrnn.QRNNCell`.
        inputs: ``(B, L)`` input words.
        words: ``(B, L)`` words to postselect the output lanes onto (teacher forcing).
        hx: optional initial workspace state ``(B, 2**W)``.

    Returns:
        dict with ``probs`` ``(B, 2**I, L-1)``, ``postsel_probs`` ``(B, L-1)``, ``hx`` ``(B, 2**W)``,
        ``success_prob`` ``(B, L-1)`` (product of all ancilla postselection probabilities per step),
        and ``state`` (final full state including inout lanes and ancillas).
    """
    cell = _cell_of(model)
    I, W, S, k = cell.input_size, cell.hidden_size, cell.stages, cell.order
    N = I + W
    n = N + k
    B, L = inputs.shape
    dtype = cell.unitary_theta.dtype
    state = torch.zeros(B, 1 << I, 1 << W, 1 << k, dtype=dtype)
    if hx is None:
        state[:, 0, 0, 0] = 1.0
    else:
        state[:, 0, :, 0] = hx.to(dtype)
    state = state.reshape(B, -1)
    mode = cell.mode if cell.mode != "sampled" else "postselect"
    X = _X.to(dtype)
    probs_l, psel_l, succ_l = [], [], []
    neurons = list(cell.neurons)
    for t in range(L - 1):
        succ = torch.ones(B, dtype=dtype)

        def write(st, word):
            # X on every inout lane whose bit is 1 (per batch row)
            out = []
            for b in range(B):
                row = st[b : b + 1]
                for i in range(I):
                    if (int(word[b]) >> (I - 1 - i)) & 1:
                        row = _apply_1q(row, X, i, n)
                out.append(row)
            return torch.cat(out, 0)

        state = write(state, inputs[:, t])
        ni = 0
        for stage in range(S + 1):
            if stage > 0:
                for j in range(W):
                    state = _apply_1q(state, _ry(cell.unitary_theta[stage - 1, j]), I + j, n)
            for j in range(W):
                state, p = explicit_neuron(state, neurons[ni], N, mode)
                succ = succ * p
                ni += 1
        state = write(state, inputs[:, t])
        for o in range(I):
            state, p = explicit_neuron(state, neurons[ni], N, mode)
            succ = succ * p
            ni += 1
        # marginal over the inout lanes (ancillas are |0> now)
        probs = state.pow(2).view(B, 1 << I, -1).sum(-1)
        probs = probs / probs.sum(-1, keepdim=True)
        m = words[:, t + 1]
        keep = (torch.arange(1 << I).view(1, -1) == m.view(-1, 1)).to(dtype)  # (B, 2^I)
        proj = (state.view(B, 1 << I, -1) * keep.unsqueeze(-1)).reshape(B, -1)
        ps = probs[torch.arange(B), m]
        state = proj / torch.sqrt(proj.pow(2).sum(-1, keepdim=True))
        state = write(state, m)  # reset the inout lanes with X
        probs_l.append(probs)
        psel_l.append(ps)
        succ_l.append(succ)
    hx_out = state.view(B, 1 << I, 1 << W, 1 << k)[:, 0, :, 0]
    return {
        "probs": torch.stack(probs_l, -1),
        "postsel_probs": torch.stack(psel_l, -1),
        "success_prob": torch.stack(succ_l, -1),
        "hx": hx_out,
        "state": state,
    }


def _subset_matrix(N: int, out: int, degree: int) -> Tensor:
    sources = [i for i in range(N) if i != out]
    subsets = [c for j in range(1, degree + 1) for c in itertools.combinations(sources, j)]
    idx = torch.arange(1 << N)
    cols = []
    for T in subsets:
        col = torch.ones(1 << N, dtype=torch.bool)
        for i in T:
            col &= ((idx >> (N - 1 - i)) & 1).bool()
        cols.append(col)
    return torch.stack(cols, 1)


def per_sample_forward(model, inputs: Tensor, words: Tensor):
    """Straightforward per-sample simulation (no ancillas, no batching) of a teacher-forced run.

    Each sequence is simulated on its own full ``2**(W+I)`` state; every neuron application
    recomputes its angles with a boolean-subset-matrix product, mixes the out-lane pair and
    renormalises (postselect mode only).  Returns ``probs`` ``(B, 2**I, L-1)`` and ``postsel_probs``.
    """
    cell = _cell_of(model)
    if cell.mode == "unitary":
        raise ValueError("per_sample_forward: only postselect/sampled semantics are implemented")
    I, W, S, k, d = cell.input_size, cell.hidden_size, cell.stages, cell.order, cell.degree
    N = I + W
    dtype = cell.unitary_theta.dtype
    mats = {o: _subset_matrix(N, o, d).to(dtype) for o in range(N)}
    neurons = list(cell.neurons)
    B, L = inputs.shape
    idx = torch.arange(1 << N)
    probs_all, ps_all = [], []
    for b in range(B):
        psi = torch.zeros(1 << N, dtype=dtype)
        psi[0] = 1.0
        pr_b, ps_b = [], []
        for t in range(L - 1):
            xw = int(inputs[b, t])
            psi = psi[idx ^ (xw << W)]  # X gates as an index permutation
            ni = 0
            for stage in range(S + 1):
                for j in range(W):
                    lane = I + j
                    if stage > 0:
                        th = cell.unitary_theta[stage - 1, j]
                        v = psi.view(1 << lane, 2, -1)
                        c, s = torch.cos(th / 2), torch.sin(th / 2)
                        psi = torch.stack((c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]), 1).reshape(-1)
                for j in range(W):
                    psi = _neuron_naive(psi, neurons[ni], mats[I + j], I + j, N, k)
                    ni += 1
            psi = psi[idx ^ (xw << W)]
            for o in range(I):
                psi = _neuron_naive(psi, neurons[ni], mats[o], o, N, k)
                ni += 1
            pw = psi.pow(2).view(1 << I, -1).sum(-1)
            m = int(words[b, t + 1])
            pr_b.append(pw)
            ps_b.append(pw[m])
            v = psi.view(1 << I, -1)[m]
            psi = torch.zeros(1 << I, 1 << W, dtype=dtype).index_put((torch.tensor([m]),), (v / torch.sqrt(pw[m])).unsqueeze(0))
            psi = psi.reshape(-1)[idx ^ (m << W)]
        probs_all.append(torch.stack(pr_b, -1))
        ps_all.append(torch.stack(ps_b))
    return {"probs": torch.stack(probs_all), "postsel_probs": torch.stack(ps_all)}


def _neuron_naive(psi, neuron, M, out, N, k):
    eta = M @ neuron.phi + neuron.theta + math.pi / 2
    c = torch.cos(eta / 2) ** (1 << k)
    s = torch.sin(eta / 2) ** (1 << k)
    v = psi.view(1 << out, 2, -1)
    cv = c.view(1 << out, 2, -1)[:, 0]
    sv = s.view(1 << out, 2, -1)[:, 0]
    new = torch.stack((cv * v[:, 0] - sv * v[:, 1], cv * v[:, 1] + sv * v[:, 0]), 1).reshape(-1)
    return new / new.norm()
