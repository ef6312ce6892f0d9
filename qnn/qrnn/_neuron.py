"""The quantum neuron of Cao et al. / Bausch (QRNN), simulated without ancillas.

Conventions (spec ``qrnn.md`` §1): lane 0 is the most significant bit of a basis index,
``Ry(eta) = exp(-i eta Y / 2)``, amplitudes are real.

A neuron with out-lane ``o``, source lanes ``S_1..S_n``, degree ``d`` and order ``k``
rotates an ancilla by ``eta(x) = pi/2 + theta + sum_{|T|<=d} phi_T prod_{i in T} x_i``
and, after the nested repeat-until-success construction with ``k`` ancillas, applies on
branch ``x`` the (unnormalised) operator ``c I + s (-iY)`` to the out-lane with
``c = cos^{2^k}(eta/2)`` and ``s = sin^{2^k}(eta/2)``, i.e. ``sqrt(c^2+s^2) Ry(2 q_k)``
with ``q_k = arctan(tan^{2^k}(eta/2))``.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "MODES",
    "QuantumNeuron",
    "NeuronOutput",
    "subset_masks",
    "subset_sum",
    "num_subsets",
    "activation",
    "branch_coefficients",
    "source_index",
]

MODES = ("postselect", "unitary", "sampled")


def num_subsets(n_sources: int, degree: int) -> int:
    """Number of monomials ``1 <= |T| <= degree`` over ``n_sources`` variables."""
    return sum(math.comb(n_sources, j) for j in range(1, min(degree, n_sources) + 1))


@lru_cache(maxsize=None)
def _subset_masks(n_sources: int, degree: int) -> tuple[int, ...]:
    masks = []
    for j in range(1, min(degree, n_sources) + 1):
        for comb in itertools.combinations(range(n_sources), j):
            # source position p is bit (n_sources - 1 - p) of the source index (MSB first)
            masks.append(sum(1 << (n_sources - 1 - p) for p in comb))
    return tuple(masks)


def subset_masks(n_sources: int, degree: int) -> list[int]:
    """Bit masks (over the source index, MSB = first source) of all subsets with 1..degree elements.

    Ordered by size, then lexicographically by source position; this is the order of
    :attr:`QuantumNeuron.phi`.

    Example:
        >>> subset_masks(3, 2)
        [4, 2, 1, 6, 5, 3]
    """
    return list(_subset_masks(int(n_sources), int(degree)))


def subset_sum(phi: Tensor, n_sources: int, degree: int) -> Tensor:
    """Polynomial value ``sum_T phi_T prod_{i in T} x_i`` for every source basis state.

    Uses the subset-sum (zeta) transform in ``O(n 2^n)`` instead of a ``2^n x #subsets``
    matrix product; differentiable.

    Args:
        phi (Tensor): coefficients, shape ``(*, num_subsets(n_sources, degree))``.
        n_sources (int): number of source lanes ``n``.
        degree (int): maximal monomial degree.

    Returns:
        Tensor of shape ``(*, 2**n_sources)``.

    Example:
        >>> subset_sum(torch.tensor([1.0, 2.0, 10.0]), 2, 2).tolist()
        [0.0, 2.0, 1.0, 13.0]
    """
    masks = _subset_masks(n_sources, degree)
    if phi.shape[-1] != len(masks):
        raise ValueError(
            f"subset_sum: phi must have last dimension {len(masks)}; got {phi.shape[-1]}"
        )
    batch = phi.shape[:-1]
    f = phi.new_zeros(*batch, 1 << n_sources)
    idx = torch.tensor(masks, device=phi.device)
    f = f.index_copy(-1, idx, phi)
    f = f.reshape(-1, 1 << n_sources)
    for p in range(n_sources):
        v = f.view(f.shape[0], 1 << p, 2, 1 << (n_sources - 1 - p))
        f = torch.stack((v[:, :, 0], v[:, :, 0] + v[:, :, 1]), dim=2).reshape(f.shape)
    return f.reshape(*batch, 1 << n_sources)


@lru_cache(maxsize=None)
def _source_index(n_qubits: int, out: int) -> tuple[int, ...]:
    sh = n_qubits - 1 - out  # position of the out bit counted from the LSB
    low = (1 << sh) - 1
    return tuple(((x >> (sh + 1)) << sh) | (x & low) for x in range(1 << n_qubits))


def source_index(n_qubits: int, out: int, device=None) -> Tensor:
    """For every basis index of ``n_qubits`` lanes, the index with the bit of lane ``out`` removed."""
    return torch.tensor(_source_index(n_qubits, out), device=device, dtype=torch.long)


def activation(eta: Tensor, order: int) -> Tensor:
    """``q_k(eta/2) = arctan(tan^{2^k}(eta/2))``, the rotation half-angle a neuron applies.

    Example:
        >>> round(float(torch.sin(activation(torch.tensor(2.0), 1)) ** 2), 4)
        0.8547
    """
    c, s = branch_coefficients(eta, order)
    return torch.atan2(s, c)


def branch_coefficients(eta: Tensor, order: int, unitary: bool = False) -> tuple[Tensor, Tensor]:
    """``(c, s) = (cos^{2^k}(eta/2), sin^{2^k}(eta/2))``; normalised to ``c^2+s^2=1`` if ``unitary``."""
    p = 1 << order
    c = torch.cos(eta / 2) ** p
    s = torch.sin(eta / 2) ** p
    if unitary:
        r = torch.sqrt(c * c + s * s)
        c, s = c / r, s / r
    return c, s


class NeuronOutput(NamedTuple):
    """Result of one neuron application.

    Attributes:
        state: the new state, shape ``(B, 2**n_qubits)`` (normalised in every mode).
        success_prob: probability that one pass of the postselected circuit succeeds, ``(B,)``.
        aa_rounds: estimated amplitude-amplification rounds ``1/sqrt(success_prob)``, ``(B,)``.
        attempts: in ``sampled`` mode, the number of RUS attempts used per batch row, else ``None``.
    """

    state: Tensor
    success_prob: Tensor
    aa_rounds: Tensor
    attempts: Tensor | None = None


class QuantumNeuron(nn.Module):
    r"""Quantum neuron: a degree-``d`` polynomial of its source qubits, activated at order ``ord``.

    On every source basis state ``x`` the neuron rotates its out-lane by ``Ry(2 q(x))`` with
    ``q = arctan(tan^{2^ord}(eta/2))`` and ``eta = pi/2 + theta + sum_T phi_T prod_{i in T} x_i``
    (the ``pi/2`` bias is a fixed buffer, ``theta`` a trainable offset).

    Modes:
        * ``"postselect"`` (default; the authors' semantics): the unnormalised operator
          ``c I + s (-iY)`` per branch, then a *global* renormalisation (exact postselection of all
          ancillas).  Nonlinear in the state: branches are re-weighted by ``sqrt(c^2+s^2)``.
        * ``"unitary"``: ideal per-branch fixed-point oblivious amplitude amplification, i.e. the
          uniformly controlled ``Ry(2 q(x))``; norm preserved with no renormalisation.
        * ``"sampled"``: repeat-until-success trajectories.  Each batch row is one trajectory; each
          attempt succeeds with the row's success probability ``p`` (Bernoulli), a failed attempt is
          assumed undone by the known failure correction (exact for basis-state inputs at order 1,
          [Cao]), and the successful outcome is the postselected state.  At most ``max_attempts``
          attempts; rows that exhaust the budget are reported (``attempts > max_attempts``) and
          continue with the postselected state.

    Args:
        n_qubits (int): number of lanes of the state it acts on.
        out (int): out-lane index (0 = most significant bit).
        degree (int): maximal monomial degree ``d`` (>= 1).
        order (int): RUS order ``ord`` (>= 1); uses ``ord`` ancillas in hardware.
        mode (str): ``"postselect"``, ``"unitary"`` or ``"sampled"``.
        max_attempts (int): retry budget in ``sampled`` mode.
        device, dtype: factory kwargs.

    Shape:
        Input ``(B, 2**n_qubits)`` or ``(2**n_qubits,)`` real; output state of the same shape.

    Attributes:
        phi: ``(num_subsets,)`` polynomial coefficients, init ``N(0, 0.01)``.
        theta: ``()`` trainable bias offset, init ``N(0, 0.1)``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> qn = QuantumNeuron(3, out=2, degree=2, order=2)
        >>> psi = torch.zeros(8); psi[0] = 1
        >>> res = qn(psi)
        >>> res.state.shape, bool(abs(res.state.norm() - 1) < 1e-6)
        (torch.Size([8]), True)
    """

    def __init__(
        self,
        n_qubits: int,
        out: int,
        *,
        degree: int = 2,
        order: int = 2,
        mode: str = "postselect",
        max_attempts: int = 100,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if not isinstance(n_qubits, int) or n_qubits < 2:
            raise ValueError(f"QuantumNeuron: n_qubits must be an int >= 2; got {n_qubits!r}")
        if not isinstance(out, int) or not 0 <= out < n_qubits:
            raise ValueError(f"QuantumNeuron: out must be an int in [0, {n_qubits}); got {out!r}")
        if not isinstance(degree, int) or degree < 1:
            raise ValueError(f"QuantumNeuron: degree must be an int >= 1; got {degree!r}")
        if not isinstance(order, int) or order < 1:
            raise ValueError(f"QuantumNeuron: order must be an int >= 1; got {order!r}")
        if mode not in MODES:
            raise ValueError(f"QuantumNeuron: mode must be one of {list(MODES)}; got {mode!r}")
        self.n_qubits = n_qubits
        self.out = out
        self.degree = degree
        self.order = order
        self.mode = mode
        self.max_attempts = int(max_attempts)
        fk = {"device": device, "dtype": dtype}
        self.phi = nn.Parameter(torch.empty(num_subsets(n_qubits - 1, degree), **fk))
        self.theta = nn.Parameter(torch.empty((), **fk))
        self.register_buffer("bias", torch.tensor(math.pi / 2, **fk))
        self.reset_parameters()

    @property
    def sources(self) -> list[int]:
        """Source lanes: every lane except ``out``, ascending."""
        return [i for i in range(self.n_qubits) if i != self.out]

    def reset_parameters(self, theta_std: float = 0.1, phi_std: float = 0.01) -> None:
        """``theta ~ N(0, theta_std)``, ``phi ~ N(0, phi_std)`` (spread 0 means constant 0)."""
        with torch.no_grad():
            self.theta.normal_(0.0, theta_std) if theta_std > 0 else self.theta.zero_()
            self.phi.normal_(0.0, phi_std) if phi_std > 0 else self.phi.zero_()

    def extra_repr(self) -> str:
        s = f"n_qubits={self.n_qubits}, out={self.out}, degree={self.degree}, order={self.order}"
        if self.mode != "postselect":
            s += f", mode={self.mode!r}"
        return s + f" | {self.phi.numel() + 1} weights"

    def angles(self) -> Tensor:
        """``eta`` for every basis state of the ``n_qubits`` lanes, shape ``(2**n_qubits,)``."""
        poly = subset_sum(self.phi, self.n_qubits - 1, self.degree)
        idx = source_index(self.n_qubits, self.out, device=poly.device)
        return poly[idx] + self.theta + self.bias

    def forward(self, state: Tensor) -> NeuronOutput:
        dim = 1 << self.n_qubits
        if not isinstance(state, Tensor):
            raise TypeError(f"QuantumNeuron: state must be a torch.Tensor; got {type(state).__name__}")
        if state.dim() not in (1, 2) or state.shape[-1] != dim:
            raise ValueError(
                f"QuantumNeuron: Expected state of shape (B, {dim}) or ({dim},); got {tuple(state.shape)}"
            )
        unbatched = state.dim() == 1
        psi = state.unsqueeze(0) if unbatched else state
        c, s = branch_coefficients(self.angles().to(psi.dtype), self.order, self.mode == "unitary")
        res = apply_neuron(psi, c, s, self.n_qubits, self.out)
        p = res.pow(2).sum(-1) / psi.pow(2).sum(-1)
        attempts = None
        if self.mode != "unitary":  # global renormalisation (exact postselection)
            res = res * (psi.norm(dim=-1, keepdim=True) / res.norm(dim=-1, keepdim=True))
        if self.mode == "sampled":
            attempts = sample_attempts(p.detach(), self.max_attempts)
        rounds = 1.0 / torch.sqrt(p)
        if unbatched:
            res, p, rounds = res[0], p[0], rounds[0]
            attempts = None if attempts is None else attempts[0]
        return NeuronOutput(res, p, rounds, attempts)


def sample_attempts(p: Tensor, max_attempts: int, generator=None) -> Tensor:
    """Number of RUS attempts until the first success (Geometric(p)), capped at ``max_attempts+1``.

    A value ``max_attempts + 1`` means the retry budget was exhausted.
    """
    u = torch.rand(p.shape, device=p.device, dtype=p.dtype, generator=generator)
    pc = p.clamp(min=1e-30, max=1.0)
    # inverse-CDF sampling of the geometric distribution on {1, 2, ...}
    k = torch.where(pc >= 1.0, torch.ones_like(u), torch.ceil(torch.log1p(-u) / torch.log1p(-pc)))
    k = k.clamp(min=1.0, max=float(max_attempts + 1))
    return k.to(torch.long)


def apply_neuron(psi: Tensor, c: Tensor, s: Tensor, n_qubits: int, out: int) -> Tensor:
    """Apply ``c I + s (-iY)`` on lane ``out`` branch-wise, unnormalised.

    ``psi``: ``(B, 2**n)``; ``c``, ``s``: ``(2**n,)`` or ``(B, 2**n)`` tables over the full basis
    (their value must not depend on the out bit).
    """
    B = psi.shape[0]
    a, b = 1 << out, 1 << (n_qubits - 1 - out)
    v = psi.reshape(B, a, 2, b)
    flipped = v.flip(2).reshape(psi.shape)
    sign = torch.tensor([-1.0, 1.0], dtype=psi.dtype, device=psi.device).view(1, 2, 1)
    s_signed = (s.reshape(*s.shape[:-1], a, 2, b) * sign).reshape(s.shape)
    return c * psi + s_signed * flipped
