"""Amplitude embedding, computed once for every engine: padding, robust normalisation, and the
exact input gradient for engines that cannot differentiate a state preparation.

Normalisation divides each padded row by its largest magnitude *before* squaring, so rows of
``1e20`` in float32 (whose squares overflow) and of ``1e-30`` (whose squares underflow) give
the same state as a row of ones; only a row whose every entry is exactly zero is refused.

The input gradient (:func:`shifted_states`, :func:`input_grad`): every output of an
amplitude-embedded circuit is ``F(v) = v^T M v / |v|^2`` for the padded real feature vector
``v`` and a real symmetric ``M`` (an observable conjugated by the circuit's unitary).  ``F`` is
scale invariant, so the rule is applied to ``u = v / max|v|`` and the gradient divided by
``max|v|`` at the end.  With ``g(u) = |u|^2 F(u)`` polarisation gives ``M u`` exactly from two
evaluations per feature, ``(M u)_j = [g(u + t e_j) - g(u - t e_j)] / (4 t)`` with
``t = |u| / 2`` (both shifted vectors stay non-zero), and ``dF/du_j = 2 [(M u)_j - F u_j] / |u|^2``.

Example:
    >>> import torch, qnn
    >>> from qnn.engines._amplitude import amplitude_states
    >>> c = qnn.Circuit(1); _ = qnn.amplitude_embedding(c); _ = c.measure_z()
    >>> amplitude_states("demo", c.state_prep, c.n_qubits, torch.tensor([[3e20, 4e20]]))
    tensor([[0.6000, 0.8000]])
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["scaled_features", "normalised", "amplitude_states", "amplitude_states_np", "amplitude_grad_np",
           "shifted_states", "input_grad"]


def scaled_features(owner: str, state_prep, n_qubits: int, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u, m)``: the features ``state_prep`` (a :class:`qnn.circuit.StatePrep`) embeds from
    ``inputs (B, n_inputs)``, padded to ``2**n_qubits`` with its ``pad``, divided by ``m (B, 1)``,
    each row's largest magnitude (detached: the normalised state does not depend on it).

    Raises:
        ValueError: a padded row is exactly zero (it names the first such sample).
    """
    sp = state_prep
    dim = 2**n_qubits
    feats = inputs[:, sp.start: sp.start + sp.n_features]
    if sp.n_features < dim:
        feats = torch.cat([feats, feats.new_full((inputs.shape[0], dim - sp.n_features), sp.pad)], dim=1)
    m = feats.detach().abs().amax(dim=1, keepdim=True) if feats.shape[0] else feats.new_ones((0, 1))
    bad = (m[:, 0] == 0).nonzero().flatten()
    if bad.numel():
        more = f" (and {bad.numel() - 1} more)" if bad.numel() > 1 else ""
        raise ValueError(
            f"{owner}: amplitude embedding of sample {int(bad[0])}{more} is the all-zero vector "
            f"(after padding with {sp.pad}); it cannot be normalised")
    return feats / m, m


def normalised(u: torch.Tensor) -> torch.Tensor:
    """Rows of ``u`` (scaled features, largest magnitude 1) divided by their L2 norm."""
    return u / torch.linalg.vector_norm(u, dim=1, keepdim=True)


def amplitude_states(owner: str, state_prep, n_qubits: int, inputs: torch.Tensor) -> torch.Tensor:
    """The normalised states ``(B, 2**n_qubits)`` (qnn basis order) that ``state_prep``
    prepares from ``inputs``, in the inputs' dtype and differentiable."""
    return normalised(scaled_features(owner, state_prep, n_qubits, inputs)[0])


def amplitude_states_np(owner: str, state_prep, n_qubits: int, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy twin of :func:`amplitude_states` for ``inputs (B, n_inputs)`` or ``(G, B, n_inputs)``
    (``G`` copies): ``(states (..., 2**n_qubits), norms (..., 1))``, ``norms`` the L2 norms of
    the padded features (for :func:`amplitude_grad_np`).  Same padding, scaling and all-zero
    refusal (naming the sample, and its copy when there are several)."""
    sp = state_prep
    dim = 2**n_qubits
    feats = inputs[..., sp.start: sp.start + sp.n_features]
    if sp.n_features < dim:
        feats = np.concatenate([feats, np.full(feats.shape[:-1] + (dim - sp.n_features,), sp.pad, feats.dtype)], -1)
    m = np.abs(feats).max(-1, keepdims=True) if feats.shape[-2] else np.ones(feats.shape[:-1] + (1,), feats.dtype)
    if not m.all():
        bad = np.argwhere(m[..., 0] == 0)
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        where = f"sample {bad[0][-1]}" + (f" of copy {bad[0][0]}" if inputs.ndim == 3 and inputs.shape[0] > 1 else "")
        raise ValueError(
            f"{owner}: amplitude embedding of {where}{more} is the all-zero vector "
            f"(after padding with {sp.pad}); it cannot be normalised")
    u = feats / m
    nu = np.sqrt(np.einsum("...i,...i->...", u, u))[..., None]
    return u / nu, nu * m


def amplitude_grad_np(state_prep, n_inputs: int, states: np.ndarray, norms: np.ndarray, grad_states: np.ndarray):
    """``dL/dinputs (..., n_inputs)`` from the states' cotangent ``grad_states`` (real, shaped as
    ``states``): ``d psi / d v = (1 - psi psi^T) / |v|`` for the padded features ``v``."""
    sp = state_prep
    gv = (grad_states - states * np.einsum("...i,...i->...", states, grad_states)[..., None]) / norms
    gx = np.zeros(states.shape[:-1] + (n_inputs,), dtype=states.dtype)
    gx[..., sp.start: sp.start + sp.n_features] = gv[..., :sp.n_features]
    return gx


def shifted_states(u: np.ndarray, n_features: int):
    """The ``2 * n_features`` polarisation states of each row of ``u (B, D)`` (scaled features,
    float64): ``(states (B * n_features * 2, D), aux)``, rows ordered (sample, feature, sign);
    ``aux`` goes to :func:`input_grad` with the engine's outputs on these states."""
    B, D = u.shape
    J = n_features
    norm2 = np.sum(u * u, axis=1)
    t = 0.5 * np.sqrt(norm2)
    eye = np.eye(D)[:J]
    shifted = np.stack([u[:, None, :] + t[:, None, None] * eye[None],
                        u[:, None, :] - t[:, None, None] * eye[None]], axis=2)  # (B, J, 2, D)
    sn2 = np.sum(shifted * shifted, axis=-1)  # (B, J, 2)
    states = (shifted / np.sqrt(sn2)[..., None]).reshape(B * J * 2, D)
    return states, (u, norm2, t, sn2)


def input_grad(shifted_values: np.ndarray, aux, values: np.ndarray, m: np.ndarray,
               grad_out: np.ndarray) -> np.ndarray:
    """``dL/dx (B, n_features)`` of the embedded features from the outputs on the shifted
    states ``(B * n_features * 2, O)``, the outputs ``values (B, O)`` on the embedded states,
    the row scales ``m (B, 1)`` and the output cotangent ``grad_out (B, O)``."""
    u, norm2, t, sn2 = aux
    B, O = values.shape
    J = sn2.shape[1]
    fa = shifted_values.reshape(B, J, 2, O)
    mu = (sn2[..., 0, None] * fa[:, :, 0] - sn2[..., 1, None] * fa[:, :, 1]) / (4 * t[:, None, None])
    dF = 2 * (mu - values[:, None, :] * u[:, :J, None]) / norm2[:, None, None]  # (B, J, O)
    return np.einsum("bjo,bo->bj", dF, grad_out) / m
