"""The default exact engine: a batched state-vector simulator written in PyTorch.

Wire 0 is the most significant bit of a basis index (PennyLane's convention).  A circuit is
compiled once into a plan (cached per circuit structure, see :mod:`._torch_plan`) and run on
one of six paths, all exact and all differentiable by torch autograd w.r.t. inputs and
weights:

``"gates"``
    one matrix multiply per gate on a batch-first ``(B, 2**n)`` state, differentiated by the
    autograd tape; the simple reference path.
``"blocked"``
    leading single-qubit gates on untouched wires (an angle embedding, the first layer's
    rotations) build a Kronecker *product state*; every run of constant permutation gates
    (a CNOT ring) is one precomputed gather; the single-qubit gates between them are fused
    into Kronecker blocks of up to ``block_size`` wires applied as matrix multiplies; a
    controlled rotation applies its 2x2 to the slice where every control is 1; a final
    permutation before ``<Z>`` readouts is folded into the readout (each ``<Z>`` word maps to
    a signed ``<Z>`` word), and ``<Z>`` words are read from the reshaped probabilities.  The state is kept as
    ``(2**n, B)`` so every block is one (batched) GEMM with at least ``B`` columns and every
    permutation a gather of contiguous rows.  The ops run inside one custom
    ``autograd.Function`` that keeps each block's input state and has a hand-written backward.
``"unitary"``
    the blocked ops applied once to the identity to form the full ``2**n x 2**n`` unitary,
    then one GEMM for the batch.  Needs every gate after the product state to be shared by
    the batch (no input-bound gates there); pays off while ``2**n`` is small against ``B``.
``"adjoint"``
    like ``blocked`` but the backward un-computes the state op by op (adjoint
    differentiation), keeping O(1) states in memory.

``"small"``
    (:mod:`._torch_small`) for a few qubits, where per-operation overhead is the cost: the
    initial state in closed form, the shared gates fused into one ``2**n x 2**n`` unitary
    (one Kronecker product per block of rotations), and one fused ``|U psi|^2`` readout with
    a hand-written backward (on CPU in numpy, :mod:`._small_numpy`: the angle gradients from
    each block's ``dL/dU U^H`` traced onto its wires; once ``2**n >= B`` the fused
    ops run on the ``(2**n, B)`` states instead of on the identity).  Needs the ``unitary``
    path's structure and ``<Z>``-only readouts.  :meth:`TorchEngine.run_many` runs copies
    of one circuit (own weights, own inputs) in the same numpy calls.
``"mps"``
    (:mod:`._mps`) no state vector at all: the state as an exact matrix product state (one
    tensor per wire, bonds grown by each two-qubit gate's operator-Schmidt rank and never
    truncated, only contracted back to the exact bound ``min(2**w, 2**(n - w))``), trailing
    gates that keep ``Z`` words folded into the readout, and the Pauli-word / probability
    readouts contracted from shared left and right environments.  Polynomial in ``n`` for
    shallow circuits (two strongly entangling layers: bond dimension 4).  Needs a product
    initial state, one- and two-qubit gates, and Pauli-word or ``probs`` measurements.

State-sized buffers (from 16 MiB) come from a per-runner workspace kept between calls
(:mod:`._workspace`): glibc maps such blocks afresh on every allocation, and at 16 qubits the
page faults of a new state cost more than the multiply that fills it.
:meth:`TorchEngine.clear_cache` frees them.

``mode="auto"`` picks ``mps`` from ``mps_min_qubits = 10`` qubits when its bonds stay within
``mps_max_bond = 16`` and its time model (per-wire op overhead plus its arithmetic) beats one
state sweep per wire (two strongly entangling layers at B=256: from 12 qubits), then
``small`` where it applies (``n <= small_max_qubits = 8`` and ``2**n <= 2 B``), else
``unitary`` for small registers (``n <= 6`` and ``2**n <= B``),
``adjoint`` when the ``blocked`` path's memory estimate exceeds ``autograd_max_bytes`` (1.5 GiB)
or the memory limit, and ``blocked`` otherwise.  Matrices of the fused ops are built from
the angles with ordinary torch ops, so autograd carries their gradients to the weights and
inputs.

Example:
    >>> import torch, qnn
    >>> from qnn.engines.torch_engine import TorchEngine
    >>> c = qnn.Circuit(2)
    >>> _ = qnn.angle_embedding(c)
    >>> _ = qnn.strongly_entangling_layers(c, n_layers=1)
    >>> _ = c.measure_z()
    >>> out = TorchEngine().run(c, torch.zeros(3, 2), torch.zeros(c.n_weights))
    >>> out.shape
    torch.Size([3, 2])
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from qnn.circuit import Circuit
from qnn.engines import Engine
from qnn.engines._amplitude import amplitude_states
from qnn.engines._convert import validate_many_args, validate_run_args
from qnn.engines._mps import MPSProgram, MPSRunner, kernel_readout, why_not as _mps_why_not
from qnn.engines._torch_small import SmallRunner
from qnn.engines._workspace import Workspace
from qnn.pauli import pauli_exp_matrix
from qnn.engines._torch_plan import (
    AngleTable,
    CONST_MATS,
    CONTROLLED,
    BlockOp,
    Chains,
    GateOp,
    MonoOp,
    Plan,
    compile_circuit,
    sign_matrix,
)

__all__ = ["TorchEngine", "MemoryLimitError", "MODES"]

MODES = ("auto", "gates", "blocked", "unitary", "adjoint", "small", "mps")

# State-sized buffers alive at the peak, per path (autograd paths also keep one per op).
_ADJOINT_FACTOR = 6
_MAX_PLANS = 64  # compiled circuits kept per engine
_AUTOGRAD_BASE = 4


class MemoryLimitError(MemoryError, ValueError):
    """Raised before allocating when a simulation would not fit in the memory limit."""


def _complex_dtype(dtype: Any, inputs: torch.Tensor) -> torch.dtype:
    if dtype is None:
        return torch.complex128 if inputs.dtype == torch.float64 else torch.complex64
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.replace("torch.", ""), None)
    table = {torch.float32: torch.complex64, torch.float64: torch.complex128,
             torch.complex64: torch.complex64, torch.complex128: torch.complex128}
    if dtype not in table:
        raise ValueError(
            f"TorchEngine: dtype must be complex64/complex128 (or float32/float64); got {dtype!r}")
    return table[dtype]


def _real_of(cdtype: torch.dtype) -> torch.dtype:
    return torch.float64 if cdtype == torch.complex128 else torch.float32


#: a run whose paths need less than this is not re-checked against the available memory when
#: it repeats (TorchEngine._resolve)
_QUICK_BYTES = 32 * 2**20
_CPU_AVAILABLE: list = [-1.0, 0]  # (time.monotonic() of the reading, bytes)


def available_memory(device: torch.device) -> int:
    """Free memory on ``device`` in bytes (CUDA: free device memory; CPU: available RAM, read
    at most every 0.25 s: at a few qubits the reading would otherwise cost more than the run)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    now = time.monotonic()
    if now - _CPU_AVAILABLE[0] < 0.25:
        return _CPU_AVAILABLE[1]
    _CPU_AVAILABLE[:] = [now, _cpu_available()]
    return _CPU_AVAILABLE[1]


def _cpu_available() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil missing
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 1 << 62


# ---------------------------------------------------------------------- gate matrices
def _mats_1q(name: str, ang: torch.Tensor | None, k: int, cdtype, rdtype, device, batch_shape):
    """Matrices of ``k`` single-qubit gates of one kind: ``(*batch_shape, k, 2, 2)``."""
    if name in CONST_MATS:
        m = torch.as_tensor(CONST_MATS[name], dtype=cdtype, device=device)
        return m.expand(*batch_shape, k, 2, 2)
    t = ang[..., 0] if name != "Rot" else None
    if name == "RX":
        c, s = torch.cos(t / 2), torch.sin(t / 2)
        z = torch.zeros_like(c)
        re = torch.stack([c, z, z, c], -1)
        im = torch.stack([z, -s, -s, z], -1)
    elif name == "RY":
        c, s = torch.cos(t / 2), torch.sin(t / 2)
        z = torch.zeros_like(c)
        re = torch.stack([c, -s, s, c], -1)
        im = torch.stack([z, z, z, z], -1)
    elif name == "RZ":
        c, s = torch.cos(t / 2), torch.sin(t / 2)
        z = torch.zeros_like(c)
        re = torch.stack([c, z, z, c], -1)
        im = torch.stack([-s, z, z, s], -1)
    elif name == "PhaseShift":
        c, s = torch.cos(t), torch.sin(t)
        z = torch.zeros_like(c)
        re = torch.stack([z + 1, z, z, c], -1)
        im = torch.stack([z, z, z, s], -1)
    elif name == "Rot":
        phi, theta, omega = ang[..., 0], ang[..., 1], ang[..., 2]
        c, s = torch.cos(theta / 2), torch.sin(theta / 2)
        a, d = (phi + omega) / 2, (phi - omega) / 2
        ca, sa, cd, sd = torch.cos(a), torch.sin(a), torch.cos(d), torch.sin(d)
        re = torch.stack([c * ca, -s * cd, s * cd, c * ca], -1)
        im = torch.stack([-c * sa, -s * sd, -s * sd, c * sa], -1)
    else:  # pragma: no cover - guarded by the plan
        raise ValueError(f"TorchEngine: no single-qubit matrix for {name!r}")
    return torch.complex(re, im).reshape(*re.shape[:-1], 2, 2)


def _gate_matrix(op: GateOp, ang, cdtype, rdtype, device, batch_shape):
    """Matrix of one gate, in ascending-wire order: ``(*batch_shape, 2**k, 2**k)``; for a
    controlled rotation only its 2x2 rotation ``(*batch_shape, 2, 2)`` (applied to the
    controlled slice by :func:`_ctrl_apply`)."""
    g = op.gate
    k = len(g.wires)
    if g.name == "PauliExp":
        return _permute_to_ascending(pauli_exp_matrix(g.words, ang).to(cdtype), op.perm, k)
    if op.controlled:
        return _mats_1q(CONTROLLED[g.name], ang.unsqueeze(-2), 1, cdtype, rdtype, device, batch_shape)[..., 0, :, :]
    if g.name in CONST_MATS:
        m = torch.as_tensor(CONST_MATS[g.name], dtype=cdtype, device=device).expand(*batch_shape, 2**k, 2**k)
    else:
        m = _mats_1q(g.name, ang.unsqueeze(-2), 1, cdtype, rdtype, device, batch_shape)[..., 0, :, :]
    return _permute_to_ascending(m, op.perm, k)


def _permute_to_ascending(m: torch.Tensor, perm, k: int) -> torch.Tensor:
    """A ``k``-wire matrix ``(..., 2**k, 2**k)`` in gate-wire order re-ordered to ascending
    wires (``perm[j]``: the gate-wire position of the j-th smallest wire)."""
    if perm is None:
        return m
    lead = m.dim() - 2
    m = m.reshape(*m.shape[:lead], *([2] * (2 * k)))
    p = list(perm)
    axes = list(range(lead)) + [lead + i for i in p] + [lead + k + i for i in p]
    return m.permute(axes).reshape(*m.shape[:lead], 2**k, 2**k)


def _kron(mats: torch.Tensor) -> torch.Tensor:
    """Kronecker product of ``(..., k, 2, 2)`` -> ``(..., 2**k, 2**k)`` (first = most significant)."""
    k = mats.shape[-3]
    out = mats[..., 0, :, :]
    for j in range(1, k):
        m = mats[..., j, :, :]
        d = out.shape[-1]
        out = (out[..., :, None, :, None] * m[..., None, :, None, :]).reshape(*out.shape[:-2], 2 * d, 2 * d)
    return out


# ---------------------------------------------------------------------- applying ops
def _apply(psi: torch.Tensor, U: torch.Tensor, wires: tuple[int, ...], n: int) -> torch.Tensor:
    """``psi (B, 2**n)`` with ``U`` (``(G, G)`` shared or ``(B, G, G)``) on ascending ``wires``."""
    B = psi.shape[0]
    k = len(wires)
    G = 2**k
    batched = U.dim() == 3
    if wires == tuple(range(wires[0], wires[0] + k)):
        a = 2 ** wires[0]
        b = 2 ** (n - wires[0] - k)
        if not batched:
            if b == 1:
                return (psi.reshape(B * a, G) @ U.transpose(0, 1)).reshape(B, -1)
            return torch.matmul(U, psi.reshape(B * a, G, b)).reshape(B, -1)
        if b == 1:
            return torch.bmm(psi.reshape(B, a, G), U.transpose(1, 2)).reshape(B, -1)
        if a == 1:
            return torch.bmm(U, psi.reshape(B, G, b)).reshape(B, -1)
        return torch.matmul(U.unsqueeze(1), psi.reshape(B, a, G, b)).reshape(B, -1)
    x = psi.reshape(B, *([2] * n))
    src = [w + 1 for w in wires]
    dst = list(range(n + 1 - k, n + 1))
    x = torch.movedim(x, src, dst)
    shape = x.shape
    x = x.reshape(B, -1, G)
    x = x @ U.transpose(-1, -2) if not batched else torch.bmm(x, U.transpose(1, 2))
    return torch.movedim(x.reshape(shape), dst, src).reshape(B, -1)


# ------------------------------------------------------------ controlled rotations
# A controlled rotation acts with its 2x2 ``r`` on the target axis of the slice where every
# control is 1 and as the identity elsewhere; nothing of size 4**k is built.
def _ctrl_halves(x: torch.Tensor, gate, n: int, batch_first: bool):
    """Views ``(s0, s1)`` of the controlled slice of ``x`` (``(2**n, B)``, or ``(B, 2**n)``
    if ``batch_first``) with the target bit 0 and 1."""
    Bt = x.shape[0] if batch_first else x.shape[1]
    off = 1 if batch_first else 0
    v = x.view(Bt, *([2] * n)) if batch_first else x.view(*([2] * n), Bt)
    idx: list = [slice(None)] * (n + 1)
    for c in gate.wires[:-1]:
        idx[c + off] = 1
    t = gate.wires[-1] + off
    idx[t] = 0
    s0 = v[tuple(idx)]
    idx[t] = 1
    return s0, v[tuple(idx)]


def _coeffs(r: torch.Tensor, ndim: int, batch_first: bool):
    """The four entries of ``r`` (``(2, 2)`` or ``(B, 2, 2)``), shaped to broadcast against a
    slice of ``ndim`` dimensions (batch last, or first if ``batch_first``)."""
    if r.dim() == 2:
        return r[0, 0], r[0, 1], r[1, 0], r[1, 1]
    shape = (-1,) + (1,) * (ndim - 1) if batch_first else (-1,)
    return tuple(r[:, i, j].reshape(shape) for i in (0, 1) for j in (0, 1))


def _ctrl_apply(x: torch.Tensor, r: torch.Tensor, gate, n: int, batch_first: bool = False) -> torch.Tensor:
    """Out-of-place (differentiable by autograd): a copy of ``x`` with ``r`` applied to the
    controlled slice.  One state copy plus two half-slice temporaries."""
    out = x.clone()
    s0, s1 = _ctrl_halves(x, gate, n, batch_first)
    a, b, c, d = _coeffs(r, s0.dim(), batch_first)
    _ctrl_halves(out, gate, n, batch_first)[0].copy_(a * s0 + b * s1)
    _ctrl_halves(out, gate, n, batch_first)[1].copy_(c * s0 + d * s1)  # views taken after
    return out


def _ctrl_apply_(x: torch.Tensor, r: torch.Tensor, gate, n: int) -> torch.Tensor:
    """In place on a batch-last ``x`` (no autograd): ``r`` on the controlled slice; one
    half-slice temporary."""
    s0, s1 = _ctrl_halves(x, gate, n, False)
    a, b, c, d = _coeffs(r, s0.dim(), False)
    new0 = s0 * a
    new0.addcmul_(s1, b)
    s1.mul_(d).addcmul_(s0, c)
    s0.copy_(new0)
    return x


def _ctrl_grad_conj(Yb: torch.Tensor, X: torch.Tensor, gate, n: int, batched: bool) -> torch.Tensor:
    """``conj`` of the cotangent of ``r`` (``(2, 2)`` or ``(B, 2, 2)``) from the conjugated
    output cotangent ``Yb`` and the input ``X``: sums over the controlled slice only."""
    y = _ctrl_halves(Yb, gate, n, False)
    x = _ctrl_halves(X, gate, n, False)
    dims = tuple(range(y[0].dim() - 1)) if batched else tuple(range(y[0].dim()))
    g = [(y[i] * x[j]) for i in (0, 1) for j in (0, 1)]
    if dims:  # (an empty tuple would sum over every dimension)
        g = [t.sum(dims) for t in g]
    return torch.stack(g, -1).reshape(*g[0].shape, 2, 2)


# ------------------------------------------------------------ batch-last primitives
# The fast paths keep the state as (2**n, B): every block is then one (batched) GEMM with at
# least B columns, and a permutation is a gather of contiguous rows.
def _contig(wires) -> bool:
    return tuple(wires) == tuple(range(wires[0], wires[0] + len(wires)))


def _apply_bl(psi: torch.Tensor, U: torch.Tensor, wires: tuple[int, ...], n: int,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """``psi (2**n, B)`` with ``U`` (``(G, G)`` shared or ``(B, G, G)``) on ascending ``wires``.

    ``out`` (a ``(2**n, B)`` buffer not aliasing ``psi``) is used for shared ``U`` on
    contiguous wires, so that large states are not re-allocated (fresh pages cost more than
    the multiply at 16 qubits); the result tensor is returned either way."""
    D, Bt = psi.shape
    k = len(wires)
    G = 2**k
    if _contig(wires):
        a = 2 ** wires[0]
        if U.dim() == 2:
            if a == 1:
                if out is not None:
                    torch.mm(U, psi.reshape(G, -1), out=out.view(G, -1))
                    return out
                return (U @ psi.reshape(G, -1)).reshape(D, Bt)
            x = psi.reshape(a, G, -1)
            if out is not None:
                torch.bmm(U.expand(a, G, G), x, out=out.view(a, G, -1))
                return out
            return torch.bmm(U.expand(a, G, G), x).reshape(D, Bt)
        x = psi.reshape(a, G, -1, Bt)
        return torch.einsum("Bij,ajcB->aicB", U, x).reshape(D, Bt)
    x = torch.movedim(psi.reshape(*([2] * n), Bt), list(wires), list(range(k)))
    shape = x.shape
    if U.dim() == 2:
        x = U @ x.reshape(G, -1)
    else:
        x = torch.einsum("Bij,jrB->irB", U, x.reshape(G, -1, Bt))
    return torch.movedim(x.reshape(shape), list(range(k)), list(wires)).reshape(D, Bt)


#: state-sized tensors from this size on come from the runner's workspace (glibc mmaps
#: blocks above 32 MiB afresh on every allocation)
_POOL_BYTES = 16 * 2**20


class _PingPong:
    """Two state-sized scratch buffers, taken from the runner's :class:`Workspace` on first use
    (kept between calls), handed out alternately; :meth:`done` gives them back."""

    def __init__(self, like: torch.Tensor, ws: Workspace):
        self.like = like
        self.ws = ws
        self.bufs: list[torch.Tensor] = []

    def owns(self, t: torch.Tensor) -> bool:
        return any(b.data_ptr() == t.data_ptr() for b in self.bufs)

    def other(self, cur: torch.Tensor) -> torch.Tensor:
        for b in self.bufs:
            if b.data_ptr() != cur.data_ptr():
                return b
        b = self.ws.take(self.like.shape, self.like.dtype, self.like.device)
        self.bufs.append(b)
        return b

    def done(self) -> None:
        self.ws.release(*self.bufs)


class _Fresh(_PingPong):
    """A new buffer on every :meth:`other` (the checkpointing path keeps every op's input):
    from the workspace for large states, else a plain allocation."""

    def owns(self, t: torch.Tensor) -> bool:
        return False

    def other(self, cur: torch.Tensor) -> torch.Tensor:
        shape, dtype, device = self.like.shape, self.like.dtype, self.like.device
        if self.like.numel() * self.like.element_size() < _POOL_BYTES:
            return torch.empty(shape, dtype=dtype, device=device)
        b = self.ws.take(shape, dtype, device)
        self.bufs.append(b)
        return b


class _Rows(torch.autograd.Function):
    """``psi[src]`` (rows) for a permutation ``src``; the backward is the inverse gather."""

    @staticmethod
    def forward(ctx, psi, src, inv):
        ctx.save_for_backward(inv)
        return psi.index_select(0, src)

    @staticmethod
    def backward(ctx, g):
        (inv,) = ctx.saved_tensors
        return g.index_select(0, inv), None, None


class _Outer(torch.autograd.Function):
    """Kronecker product of batch-last vectors ``a (m, B)`` and ``b (k, B)`` -> ``(m * k, B)``.

    The backward contracts the cotangent with the conjugated (small) factors, so no
    conjugated full-size copy is made: ``ga = sum_j G[:, j] conj(b[j])``.  With a workspace ``ws`` (the
    top of a large product state) the product goes into a pooled buffer and the backward
    contracts in slices of ``a``'s rows, so nothing state-sized is allocated."""

    @staticmethod
    def forward(ctx, a, b, ws=None):
        ctx.save_for_backward(a, b)
        m, k = a.shape[0], b.shape[0]
        if ws is None or a.shape[-1] != b.shape[-1]:
            ctx.chunked = False
            return (a.unsqueeze(1) * b.unsqueeze(0)).reshape(m * k, -1)
        ctx.chunked = True
        out = ws.take((m * k, a.shape[-1]), a.dtype, a.device)
        try:
            torch.mul(a.unsqueeze(1), b.unsqueeze(0), out=out.view(m, k, -1))
            return out.view(out.shape)
        finally:
            ws.release(out)

    @staticmethod
    def backward(ctx, G):
        # ga = sum_j G[:, j] conj(b[j]), gb = sum_i G[i] conj(a[i]): the small factors are
        # conjugated, never the state-sized cotangent
        a, b = ctx.saved_tensors
        G3 = G.reshape(a.shape[0], b.shape[0], -1)
        ac, bc = a.conj(), b.conj()
        ga = gb = None
        if ctx.chunked:  # a slice of rows at a time: ~4 MB temporaries
            m = a.shape[0]
            step = max(1, min(m, (1 << 22) // max(1, b.shape[0] * b.shape[1] * G.element_size())))
            ga = torch.empty_like(a) if ctx.needs_input_grad[0] else None
            gb = torch.zeros_like(b) if ctx.needs_input_grad[1] else None
            for lo in range(0, m, step):
                blk = G3[lo:lo + step]
                if ga is not None:
                    torch.sum(blk * bc.unsqueeze(0), 1, out=ga[lo:lo + step])
                if gb is not None:
                    gb += (blk * ac[lo:lo + step].unsqueeze(1)).sum(0)
            return ga, gb, None
        if ctx.needs_input_grad[0]:
            ga = (G3 * bc.unsqueeze(0)).sum(1)
            if ga.shape[-1] != a.shape[-1]:
                ga = ga.sum(-1, keepdim=True)
        if ctx.needs_input_grad[1]:
            gb = (G3 * ac.unsqueeze(1)).sum(0)
            if gb.shape[-1] != b.shape[-1]:
                gb = gb.sum(-1, keepdim=True)
        return ga, gb, None


def _outer_bl(a: torch.Tensor, b: torch.Tensor, ws=None) -> torch.Tensor:
    """Kronecker product of batch-last vectors ``(m, B)`` and ``(k, B)`` -> ``(m * k, B)``."""
    return _Outer.apply(a, b, ws)


def _kron_vecs_bl(V: torch.Tensor, lo: int, hi: int, ws=None) -> torch.Tensor:
    """Kronecker product of ``V[lo:hi]`` (``V``: ``(n, 2, B)``) as a balanced tree; the top
    product goes into ``ws`` (when given)."""
    if hi - lo == 1:
        return V[lo]
    mid = (lo + hi + 1) // 2
    return _outer_bl(_kron_vecs_bl(V, lo, mid), _kron_vecs_bl(V, mid, hi), ws)


class _Abs2(torch.autograd.Function):
    """``|psi|**2`` (real) with the one-op backward ``2 * g * psi``."""

    @staticmethod
    def forward(ctx, psi):
        ctx.save_for_backward(psi)
        r = torch.view_as_real(psi)
        p = r[..., 0] * r[..., 0]
        return p.addcmul_(r[..., 1], r[..., 1])

    @staticmethod
    def backward(ctx, g):
        (psi,) = ctx.saved_tensors
        return (psi * g).mul_(2)


class _Runner:
    """Per (plan, device, dtype) tensors and the op executors."""

    def __init__(self, plan: Plan, device: torch.device, cdtype: torch.dtype):
        self.plan = plan
        self.device = device
        self.cdtype = cdtype
        self.rdtype = _real_of(cdtype)
        n = plan.n
        t = plan.table
        dev = device
        self.tab = AngleTable(t, dev, self.rdtype)
        self.sh_idx, self.sh_scale, self.sh_off = self.tab.sh_idx, self.tab.sh_scale, self.tab.sh_off
        self.consts = self.tab.consts
        self._mono: dict = {}  # id(MonoOp) -> (src, phase, inv, phase_inv), built on first use
        self.small = None  # the small path's tensors (SmallRunner), built on first use
        self.mps = None  # the MPS path's tensors (MPSRunner), built on first use
        self.ws = Workspace(12)  # state-sized scratch buffers reused between calls
        # measurements: <Z> words read from the probabilities (no 2**n x outputs matrix)
        self.z_only = [p for p, _ in plan.z_cols] == list(range(plan.n_outputs))
        self.exec_ops = list(plan.ops)
        # A final permutation before Z-only readouts is folded into the readout: each Z word
        # after a monomial op is a signed Z word before it, so the op is not run at all.
        self.fold = bool(self.z_only and plan.ops and isinstance(plan.ops[-1], MonoOp))
        masks = [m for _, m in plan.z_cols]
        self.zr = _ZReadout(masks, [1] * len(masks), n, dev, self.rdtype) if masks else None
        self.zr_fold = None
        if self.fold:
            last = plan.ops[-1]
            folded = [last.fold_z(m) for m in masks]
            self.zr_fold = _ZReadout([m for m, _ in folded], [sg for _, sg in folded], n, dev, self.rdtype)
            self.exec_ops = self.exec_ops[:-1]
        self.pauli = {}
        self.hermitian = {}
        for pos, kind, data in plan.other:
            if kind == "hermitian":
                wires, rows = data
                order = sorted(range(len(wires)), key=lambda i: wires[i])
                perm = None if order == list(range(len(wires))) else tuple(order)
                mat = _permute_to_ascending(torch.tensor(rows, dtype=cdtype, device=dev), perm, len(wires))
                self.hermitian[pos] = (tuple(sorted(wires)), mat)
            if kind == "pauli":
                xm, zm, k = data
                flip = [w for w in range(n) if xm >> (n - 1 - w) & 1]
                # Re(i**k conj(f) psi): k even -> +-(fr pr + fi pi), k odd -> +-(fi pr - fr pi)
                sign = -1 if k in (2, 3) else 1
                self.pauli[pos] = (flip, k % 2 == 1, _ZReadout([zm], [sign], n, dev, self.rdtype))

    def mono(self, op: MonoOp):
        """``(src, phase, inv, phase_inv)`` of ``op`` on the device (built on first use)."""
        hit = self._mono.get(id(op))
        if hit is None:
            npc = np.complex128 if self.cdtype == torch.complex128 else np.complex64
            arrs = op.arrays(npc)
            hit = tuple(None if a is None else torch.from_numpy(a).to(self.device) for a in arrs)
            self._mono[id(op)] = hit
        return hit

    # -------------------------------------------------------------- angles
    def angles(self, inputs, weights):
        return self.tab.angles(inputs, weights)

    def _group_angles(self, grp, sh, ps):
        if grp.stop == grp.start:
            return None
        if grp.per_sample:
            return ps[:, grp.start:grp.stop].reshape(ps.shape[0], grp.k, grp.npar)
        return sh[grp.start:grp.stop].reshape(grp.k, grp.npar)

    def chain_mats(self, ch: Chains, sh, ps, B):
        """Per-wire chain products ``(k, 2, 2)`` or ``(B, k, 2, 2)``."""
        M = None
        full = list(range(ch.k))
        for step in ch.steps:
            for grp, pos in step:
                bshape = (B,) if grp.per_sample else ()
                G = _mats_1q(grp.name, self._group_angles(grp, sh, ps), grp.k, self.cdtype,
                             self.rdtype, self.device, bshape)
                if M is None and pos == full:
                    M = G
                    continue
                if M is None:
                    M = torch.eye(2, dtype=self.cdtype, device=self.device).expand(ch.k, 2, 2)
                if pos == full:
                    M = G @ M
                else:
                    if G.dim() == 4 and M.dim() == 3:
                        M = M.expand(B, *M.shape)
                    idx = torch.tensor(pos, device=self.device)
                    sel = M.index_select(-3, idx)
                    if G.dim() == 3 and sel.dim() == 4:
                        new = G.unsqueeze(0) @ sel
                    else:
                        new = G @ sel
                    M = M.index_copy(-3, idx, new)
        if M is None:
            M = torch.eye(2, dtype=self.cdtype, device=self.device).expand(ch.k, 2, 2)
        return M

    # -------------------------------------------------------------- init states
    def init_state(self, inputs, sh, ps, B):
        plan = self.plan
        n = plan.n
        if plan.init == "amplitude":
            return self.amplitude(inputs, B).transpose(0, 1).contiguous()
        if plan.init == "product":
            V = self.chain_mats(plan.init_chains, sh, ps, B)[..., 0]  # (..., n, 2)
            V = V.permute(1, 2, 0) if V.dim() == 3 else V.unsqueeze(-1)  # (n, 2, B or 1)
            big = V.shape[-1] == B and 2**n * B * V.element_size() >= _POOL_BYTES
            psi = _kron_vecs_bl(V, 0, n, self.ws if big else None)
            if psi.shape[1] != B:
                psi = psi.expand(-1, B).contiguous()
            return psi
        psi = torch.zeros(2**n, B, dtype=self.cdtype, device=self.device)
        psi[0] = 1
        return psi

    def amplitude(self, inputs, B):
        return amplitude_states("TorchEngine", self.plan_state_prep, self.plan.n, inputs).to(self.cdtype)

    # -------------------------------------------------------------- op matrices
    def op_matrices(self, ops, sh, ps, B):
        mats = []
        for op in ops:
            if isinstance(op, BlockOp):
                M = self.chain_mats(op.chains, sh, ps, B)
                mats.append(_kron(M) if op.k > 1 else M[..., 0, :, :])
            elif isinstance(op, GateOp):
                if op.per_sample:
                    ang = ps[:, op.start:op.stop]
                    mats.append(_gate_matrix(op, ang, self.cdtype, self.rdtype, self.device, (B,)))
                else:
                    ang = sh[op.start:op.stop] if op.stop > op.start else None
                    mats.append(_gate_matrix(op, ang, self.cdtype, self.rdtype, self.device, ()))
            else:
                mats.append(None)
        return mats

    @staticmethod
    def op_wires(op):
        if isinstance(op, BlockOp):
            return tuple(range(op.start, op.start + op.k))
        return op.wires

    def apply_ops(self, psi, ops, mats, batch_last: bool = True):
        """Apply ``ops`` to ``psi``: ``(2**n, B)`` if ``batch_last`` else ``(B, 2**n)``."""
        n = self.plan.n
        for op, U in zip(ops, mats):
            if U is None:
                src, phase, inv, _ = self.mono(op)
                psi = _Rows.apply(psi, src, inv)
                if phase is not None:
                    psi = psi * phase.unsqueeze(1)
            elif isinstance(op, GateOp) and op.controlled:
                psi = _ctrl_apply(psi, U, op.gate, n, batch_first=not batch_last)
            elif batch_last:
                psi = _apply_bl(psi, U, self.op_wires(op), n)
            else:
                psi = _apply(psi, U, self.op_wires(op), n)
        return psi

    # -------------------------------------------------------------- measurements
    def measure(self, psi, fold: bool = False):
        """Outputs ``(B, n_outputs)`` from a batch-last state ``psi (2**n, B)``."""
        plan = self.plan
        n = plan.n
        if not psi.is_contiguous():
            psi = psi.contiguous()
        Bt = psi.shape[1]
        if self.z_only:
            return _ZMeasure.apply(psi, self.zr_fold if fold else self.zr, self.ws).transpose(0, 1)
        p = _Abs2.apply(psi)  # (2**n, B)
        cols = [None] * plan.n_outputs
        if plan.z_cols:
            z = self.zr(p).transpose(0, 1)
            for j, (pos, _) in enumerate(plan.z_cols):
                cols[pos] = z[:, j:j + 1]
        for pos, kind, data in plan.other:
            if kind == "pauli":
                flip, odd, zr = self.pauli[pos]
                f = psi.view(*([2] * n), Bt).flip(flip).view(2**n, Bt) if flip else psi
                fr, pr = torch.view_as_real(f), torch.view_as_real(psi)
                if odd:  # Im part: fi pr - fr pi
                    q = fr[..., 1] * pr[..., 0]
                    q = q.addcmul_(fr[..., 0], pr[..., 1], value=-1)
                else:
                    q = fr[..., 0] * pr[..., 0]
                    q = q.addcmul_(fr[..., 1], pr[..., 1])
                cols[pos] = zr(q).transpose(0, 1)
            elif kind == "hermitian":
                wires, mat = self.hermitian[pos]
                mpsi = _apply_bl(psi, mat, wires, n)  # M psi, (2**n, B)
                pr, mr = torch.view_as_real(psi), torch.view_as_real(mpsi)
                cols[pos] = (pr * mr).sum((0, 2)).unsqueeze(1)  # Re <psi|M|psi>
            else:
                wires = data
                x = p.reshape(*([2] * n), Bt)
                rest = [d for d in range(n) if d not in wires]
                if rest:
                    x = x.sum(rest)
                kept = sorted(wires)
                order = [kept.index(w) for w in wires]
                x = x.permute(*order, len(kept)).reshape(-1, Bt)
                cols[pos] = x.transpose(0, 1)
        return torch.cat([c for c in cols if c is not None], 1)


class _ZReadout:
    """``<Z_m>`` for index-bit masks ``m`` (times a sign each) from real weights
    ``p (2**n, B)``, without a ``2**n x words`` sign matrix.

    The index is split into its ``H = n // 2`` high and ``L = n - H`` low bits,
    ``p -> (2**H, 2**L, B)``.  Words on the high bits only are read from the marginal
    ``p.sum(1)`` with a ``(2**H, K)`` sign matrix, words on the low bits only from ``p.sum(0)``
    with a ``(2**L, K)`` one (``<Z_w>`` on every wire: two passes over ``p``); a word on both
    contracts the high axis with its high signs (one GEMM over ``p`` for all such words) and
    then the low axis with its low signs.  Differentiable by autograd; memory: the sign
    matrices (``(2**H + 2**L) x words``) and ``words x 2**L x B`` for mixed words."""

    def __init__(self, masks, signs, n: int, device, rdtype):
        self.n, self.H = n, n // 2
        self.L = n - self.H
        L, H = self.L, self.H
        lo_all = (1 << L) - 1
        groups: dict = {"hi": [], "lo": [], "both": []}
        for j, (m, sg) in enumerate(zip(masks, signs)):
            mh, ml = m >> L, m & lo_all
            key = "lo" if mh == 0 and ml else ("both" if ml else "hi")
            groups[key].append((j, mh, ml, sg))
        self.order = [j for key in ("hi", "lo", "both") for j, *_ in groups[key]]
        self.perm = None
        if self.order != list(range(len(masks))):
            inv = [0] * len(masks)
            for i, j in enumerate(self.order):
                inv[j] = i
            self.perm = torch.tensor(inv, device=device)
            self.order_idx = torch.tensor(self.order, device=device)  # out -> group order

        def signs_of(bits: int, ms, sgs):
            return sign_matrix(ms, sgs, bits, device, rdtype)

        g = groups
        self.S_hi = signs_of(H, [mh for _, mh, _, _ in g["hi"]], [sg for *_, sg in g["hi"]]) if g["hi"] else None
        self.S_lo = signs_of(L, [ml for _, _, ml, _ in g["lo"]], [sg for *_, sg in g["lo"]]) if g["lo"] else None
        self.S_bh = self.S_bl = None
        if g["both"]:
            self.S_bh = signs_of(H, [mh for _, mh, _, _ in g["both"]], [sg for *_, sg in g["both"]])
            self.S_bl = signs_of(L, [ml for _, _, ml, _ in g["both"]], [1] * len(g["both"]))

    @staticmethod
    def nbytes(masks, n: int, batch: int, item: int) -> int:
        """Bytes of the sign matrices and intermediates (with their gradients)."""
        H = n // 2
        L = n - H
        K = len(masks)
        both = sum(1 for m in masks if m >> L and m & ((1 << L) - 1))
        return item * (K * (2**H + 2**L) * 2 + 2 * (2**H + 2**L) * batch + 4 * K * batch
                       + 3 * both * 2**L * batch)

    def groups(self, G: torch.Tensor):
        """The rows of a ``(words, B)`` cotangent per group: ``(hi, lo, both)`` (None if empty)."""
        if self.perm is not None:
            G = G.index_select(0, self.order_idx)
        out, i = [], 0
        for S in (self.S_hi, self.S_lo, self.S_bh):
            k = 0 if S is None else S.shape[1]
            out.append(G[i:i + k] if k else None)
            i += k
        return out

    def abs2_grad(self, psi: torch.Tensor, G: torch.Tensor, out: torch.Tensor, tmp=None) -> torch.Tensor:
        """The cotangent of ``psi (2**n, B)`` for ``self(|psi|**2)`` with output cotangent ``G
        (words, B)``, written into ``out`` (like ``psi``): ``2 psi * dL/dp`` with ``dL/dp[h, l]
        = A[h] + C[l] (+ the mixed words' S_bh G S_bl^T)``, never building ``dL/dp`` for the
        one-sided words.  ``tmp``: a real ``(2**n, B)`` buffer for mixed words."""
        Bt = psi.shape[1]
        H, L = 2**self.H, 2**self.L
        g_hi, g_lo, g_both = self.groups(G)
        p3, o3 = psi.view(H, L, Bt), out.view(H, L, Bt)
        started = False
        if g_hi is not None:
            torch.mul(p3, (self.S_hi @ g_hi).unsqueeze(1), out=o3)
            started = True
        if g_lo is not None:
            c = (self.S_lo @ g_lo).unsqueeze(0)
            if started:
                o3.addcmul_(p3, c)
            else:
                torch.mul(p3, c, out=o3)
                started = True
        if g_both is not None:
            K = g_both.shape[0]
            T = (g_both.unsqueeze(1) * self.S_bl.transpose(0, 1).unsqueeze(-1)).reshape(K, -1)  # (K, L B)
            gp = torch.mm(self.S_bh, T, out=tmp.view(H, -1)) if tmp is not None else self.S_bh @ T
            if started:
                out.addcmul_(psi, gp.view(-1, Bt))
            else:
                torch.mul(psi, gp.view(-1, Bt), out=out)
                started = True
        if not started:
            out.zero_()
        return out.mul_(2)

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        """``(words, B)``."""
        Bt = p.shape[1]
        p3 = p.view(2**self.H, 2**self.L, Bt)
        parts = []
        if self.S_hi is not None:
            parts.append(self.S_hi.transpose(0, 1) @ p3.sum(1))
        if self.S_lo is not None:
            parts.append(self.S_lo.transpose(0, 1) @ p3.sum(0))
        if self.S_bh is not None:
            T = (self.S_bh.transpose(0, 1) @ p.view(2**self.H, -1)).view(-1, 2**self.L, Bt)
            parts.append((T * self.S_bl.transpose(0, 1).unsqueeze(-1)).sum(1))
        out = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
        return out if self.perm is None else out.index_select(0, self.perm)


class _ZMeasure(torch.autograd.Function):
    """``<Z>`` words ``(words, B)`` of a batch-last state through a :class:`_ZReadout`, with the
    probabilities and the state's cotangent in the runner's pooled buffers (at 16 qubits a
    fresh state-sized tensor costs more in page faults than the arithmetic that fills it)."""

    @staticmethod
    def forward(ctx, psi, zr, ws):
        r = torch.view_as_real(psi)
        p = ws.take(psi.shape, r.dtype, psi.device)
        try:
            torch.mul(r[..., 0], r[..., 0], out=p).addcmul_(r[..., 1], r[..., 1])
            out = zr(p)
        finally:
            ws.release(p)
        ctx.zr, ctx.ws = zr, ws
        ctx.save_for_backward(psi)
        return out

    @staticmethod
    def backward(ctx, G):
        (psi,) = ctx.saved_tensors
        ws, zr = ctx.ws, ctx.zr
        out = ws.take(psi.shape, psi.dtype, psi.device)
        tmp = ws.take(psi.shape, psi.real.dtype, psi.device) if zr.S_bh is not None else None
        try:
            return zr.abs2_grad(psi, G.contiguous(), out, tmp).view(out.shape), None, None
        finally:
            ws.release(out, tmp)


def _grad_u_conj(Yb: torch.Tensor, X: torch.Tensor, wires, n: int, batched: bool) -> torch.Tensor:
    """``conj`` of the cotangent of ``U`` for ``out = U X`` (batch-last), from the *conjugated*
    output cotangent ``Yb``: ``sum Yb X^T``.  Working with ``conj(G)`` avoids materialising a
    conjugated copy of the state for every block."""
    D, Bt = X.shape
    k = len(wires)
    G = 2**k
    if _contig(wires):
        a = 2 ** wires[0]
        if not batched:
            if a == 1:
                return Yb.reshape(G, -1) @ X.reshape(G, -1).transpose(0, 1)
            return torch.bmm(Yb.reshape(a, G, -1), X.reshape(a, G, -1).transpose(1, 2)).sum(0)
        return torch.einsum("aicB,ajcB->Bij", Yb.reshape(a, G, -1, Bt), X.reshape(a, G, -1, Bt))
    y = torch.movedim(Yb.reshape(*([2] * n), Bt), list(wires), list(range(k))).reshape(G, -1, Bt)
    x = torch.movedim(X.reshape(*([2] * n), Bt), list(wires), list(range(k))).reshape(G, -1, Bt)
    if not batched:
        return y.reshape(G, -1) @ x.reshape(G, -1).transpose(0, 1)
    return torch.einsum("irB,jrB->Bij", y, x)


def _small_ok(plan: Plan) -> bool:
    """Whether the ``small`` path can run ``plan``: shared gates after the initial state and
    ``<Z>``-only readouts."""
    return bool(plan.unitary_ok and plan.z_cols and [p for p, _ in plan.z_cols] == list(range(plan.n_outputs)))


class _PlanFn(torch.autograd.Function):
    """Runs the plan's ops without an autograd tape, with a hand-written backward.

    ``checkpoint=True`` (path ``blocked``) keeps the input state of every matrix op;
    ``checkpoint=False`` (path ``adjoint``) keeps only the final state and un-computes the
    state op by op in the backward (adjoint differentiation, O(1) states).  The backward
    carries the conjugated cotangent ``conj(G)`` so that no conjugated state copies are made.
    """

    @staticmethod
    def forward(ctx, runner, checkpoint, psi0, *mats):
        ops = runner.exec_ops
        n = runner.plan.n
        saved = []
        psi = psi0
        buf = _Fresh(psi0, runner.ws) if checkpoint else _PingPong(psi0, runner.ws)
        try:
            with torch.no_grad():
                psi = _PlanFn._run(runner, ops, mats, psi, buf, saved, checkpoint, n)
            ctx.runner = runner
            ctx.checkpoint = checkpoint
            ctx.none_mask = [m is None for m in mats]
            ctx.n_states = len(saved) if checkpoint else 1
            ctx.save_for_backward(*(saved if checkpoint else [psi]), *[m for m in mats if m is not None])
            # a pooled buffer is returned as a view: autograd attaches its history to the view,
            # and the view (like the saved state) keeps the buffer referenced, hence not reused,
            # while it lives; both are made before the buffers are given back
            return psi.view(psi.shape)
        finally:
            buf.done()

    @staticmethod
    def _run(runner, ops, mats, psi, buf, saved, checkpoint, n):
        """Apply ``ops``; each op writes into ``buf.other(psi)`` (checkpoint: a new buffer
        per op, since its input is kept)."""
        for op, U in zip(ops, mats):
            if U is None:
                src, phase, inv, _ = runner.mono(op)
                psi = torch.index_select(psi, 0, src, out=buf.other(psi))
                if phase is not None:
                    psi.mul_(phase.unsqueeze(1))
            elif isinstance(op, GateOp) and op.controlled:
                if checkpoint:
                    saved.append(psi)
                    psi = _ctrl_apply_(buf.other(psi).copy_(psi), U, op.gate, n)
                else:
                    if not buf.owns(psi):
                        psi = buf.other(psi).copy_(psi)
                    psi = _ctrl_apply_(psi, U, op.gate, n)
            else:
                if checkpoint:
                    saved.append(psi)
                psi = _apply_bl(psi, U, runner.op_wires(op), n, buf.other(psi))
        return psi

    @staticmethod
    def backward(ctx, G):
        runner = ctx.runner
        n = runner.plan.n
        saved = ctx.saved_tensors
        states = list(saved[:ctx.n_states])
        it = iter(saved[ctx.n_states:])
        mats = [None if none else next(it) for none in ctx.none_mask]
        grads: list = [None] * len(mats)
        need = ctx.needs_input_grad[3:]
        ybuf = _PingPong(G, runner.ws)
        psi = None if ctx.checkpoint else states[0]
        pbuf = None if ctx.checkpoint else _PingPong(psi, runner.ws)
        try:
            return _PlanFn._back(ctx, runner, n, G, ybuf, psi, pbuf, states, mats, grads, need)
        finally:
            ybuf.done()
            if pbuf is not None:
                pbuf.done()

    @staticmethod
    def _back(ctx, runner, n, G, ybuf, psi, pbuf, states, mats, grads, need):
        # the conjugated cotangent, materialised once (a lazily conjugated state would be
        # resolved again by every multiply that reads it)
        Yb = torch.conj_physical(G, out=ybuf.other(G)) if G.is_contiguous() else G.conj()
        for i in range(len(mats) - 1, -1, -1):
            op, U = runner.exec_ops[i], mats[i]
            if U is None:
                src, phase, inv, phase_inv = runner.mono(op)
                Yb = torch.index_select(Yb, 0, inv, out=ybuf.other(Yb))
                if psi is not None:
                    psi = torch.index_select(psi, 0, inv, out=pbuf.other(psi))
                if phase is not None:
                    ph = phase_inv.unsqueeze(1)
                    Yb.mul_(ph)
                    if psi is not None:
                        psi.mul_(ph.conj())
                continue
            if isinstance(op, GateOp) and op.controlled:
                # identity off the controlled slice; r^H un-computes, r^T carries Yb
                if ctx.checkpoint:
                    X = states.pop()
                else:
                    if not pbuf.owns(psi):
                        psi = pbuf.other(psi).copy_(psi)
                    psi = _ctrl_apply_(psi, U.conj().transpose(-1, -2), op.gate, n)
                    X = psi
                if need[i]:
                    grads[i] = _ctrl_grad_conj(Yb, X, op.gate, n, U.dim() == 3).conj()
                if not ybuf.owns(Yb):
                    Yb = ybuf.other(Yb).copy_(Yb)
                Yb = _ctrl_apply_(Yb, U.transpose(-1, -2), op.gate, n)
                continue
            wires = runner.op_wires(op)
            if ctx.checkpoint:
                X = states.pop()
            else:
                psi = _apply_bl(psi, U.conj().transpose(-1, -2), wires, n, pbuf.other(psi))
                X = psi
            if need[i]:
                grads[i] = _grad_u_conj(Yb, X, wires, n, U.dim() == 3).conj()
            Yb = _apply_bl(Yb, U.transpose(-1, -2), wires, n, ybuf.other(Yb))
        if ybuf.owns(Yb):  # conjugated in place (autograd would resolve a conjugated view into a new tensor)
            return (None, None, Yb.conj_physical_().view(Yb.shape), *grads)
        return (None, None, Yb.conj(), *grads)


# ---------------------------------------------------------------------- engine
class TorchEngine(Engine):
    """Exact batched state-vector engine in PyTorch (the default engine).

    Args:
        dtype: complex dtype of the state (``torch.complex64``/``torch.complex128``, or the
            matching float dtype).  Default: complex64 for float32 inputs, complex128 for
            float64 inputs.  Outputs have the input's float dtype.
        device: run on this device instead of the input's; outputs are moved back to the
            input's device.
        mode: ``"auto"`` (default), ``"gates"``, ``"blocked"``, ``"unitary"``, ``"adjoint"``, ``"small"`` or ``"mps"``
            (see the module docstring).  A forced mode the circuit cannot use raises ValueError.
        max_memory_bytes: memory limit for the pre-allocation check; default: available RAM
            (CPU) or free device memory (CUDA).
        block_size: most wires per fused single-qubit block (default: 4, or all wires up to 5;
            measured best on a 2-core CPU for 8-16 qubits).
        unitary_max_qubits: largest register for the automatic unitary path (default 6; it
            is also only taken when ``2**n <= B``).
        autograd_max_bytes: ``auto`` takes the autograd ``blocked`` path while its estimated
            memory stays below this and the memory limit, else ``adjoint`` (default 1.5 GiB:
            at B=256 that is ``blocked`` up to 16 qubits for two strongly entangling layers
            (estimate 1.27 GiB, peak RSS measured 1.26 GB) and ``adjoint`` beyond).

    Performance notes:
        Threads follow ``torch.set_num_threads``.  At 14+ qubits on CPU, fresh pages for
        each new state-sized tensor cost about as much as the arithmetic; starting Python with
        ``THP_MEM_ALLOC_ENABLE=1`` (PyTorch's transparent-huge-page allocation, read when
        torch is first imported) made a 16-qubit, batch-256 pass about 1.8x faster here.

    Attributes:
        last_mode: the path the last :meth:`run` took.

    Raises:
        MemoryLimitError: (a MemoryError and ValueError) when the estimated memory exceeds
            the limit; the message states both numbers.

    Example:
        >>> import torch, qnn
        >>> from qnn.engines.torch_engine import TorchEngine
        >>> c = qnn.Circuit(1)
        >>> _ = c.add("RX", 0, [qnn.Param.input(c.new_inputs(1)[0])])
        >>> _ = c.measure_z()
        >>> TorchEngine().run(c, torch.tensor([[0.0], [3.14159265]]), torch.zeros(0)).round()
        tensor([[ 1.],
                [-1.]])
    """

    name = "torch"
    #: largest register for the automatic ``small`` path (also only taken when ``2**n <= 2 B``;
    #: measured on 2 CPU cores: 3x faster than ``blocked`` at 4-6 qubits, 1.5x at 7, slower at 8);
    #: set it on an instance (0 turns the path off)
    small_max_qubits = 8
    #: largest register for the small path's state variant (CPU, ``2**n >= B``)
    small_state_max_qubits = 12
    #: smallest register for the automatic ``mps`` path, which also needs its time model to
    #: beat the state vector's (two strongly entangling layers, B=256, one CPU core, readout in
    #: the compiled kernels: ~4x slower than ``small`` at 8 qubits, 1.3x at 10, 1.3x faster at
    #: 11, 2.1x at 12 (``bench/bench_modes_ab.py --n 12 --modes auto small mps``); 13-15x faster
    #: than ``blocked`` at 16 with the torch readout, bench/README.md rounds 3, 4 and 6); 0 turns it off
    mps_min_qubits = 10
    #: widest bond for the automatic ``mps`` path
    mps_max_bond = 16

    def __init__(self, dtype=None, device=None, mode: str = "auto", max_memory_bytes: int | None = None,
                 block_size: int | None = None, unitary_max_qubits: int = 6,
                 autograd_max_bytes: int = 3 * 2**29):
        if mode not in MODES:
            raise ValueError(f"TorchEngine: mode must be one of {list(MODES)}; got {mode!r}")
        if isinstance(dtype, str):  # from config(): "complex128"
            if not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise ValueError(f"TorchEngine: dtype must be a torch dtype or its name; got {dtype!r}")
            dtype = getattr(torch, dtype)
        if dtype is not None:
            _complex_dtype(dtype, torch.zeros(0))
        if max_memory_bytes is not None and (not isinstance(max_memory_bytes, (int, float)) or max_memory_bytes <= 0):
            raise ValueError(f"TorchEngine: max_memory_bytes must be a positive number; got {max_memory_bytes!r}")
        if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
            raise ValueError(f"TorchEngine: block_size must be a positive int; got {block_size!r}")
        if isinstance(unitary_max_qubits, bool) or not isinstance(unitary_max_qubits, int) or unitary_max_qubits < 0:
            raise ValueError(f"TorchEngine: unitary_max_qubits must be an int >= 0; got {unitary_max_qubits!r}")
        if isinstance(autograd_max_bytes, bool) or not isinstance(autograd_max_bytes, (int, float)) \
                or not autograd_max_bytes >= 0:
            raise ValueError(f"TorchEngine: autograd_max_bytes must be a number >= 0; got {autograd_max_bytes!r}")
        self.dtype = dtype
        self.device = None if device is None else torch.device(device)
        self.mode = mode
        self.max_memory_bytes = max_memory_bytes
        self.block_size = block_size
        self.unitary_max_qubits = unitary_max_qubits
        self.autograd_max_bytes = autograd_max_bytes
        self._plans: dict = {}
        self._spare: tuple | None = None  # (circuit, fingerprint, plan) compiled for an estimate
        self._runners: dict = {}
        self._fused_ok: dict = {}  # id(plan) -> (plan, the small path's fused variant applies)
        self._estimates: dict = {}  # (id(plan), batch, mode, dtype) -> (plan, bytes)
        self._resolved: dict = {}  # run's checked (plan, mode, runner) per call signature (_resolve)
        self.last_mode: str | None = None

    def __repr__(self) -> str:
        return f"TorchEngine(mode={self.mode!r}, dtype={self.dtype}, device={self.device})"

    def _options(self) -> dict:
        return {"dtype": None if self.dtype is None else str(self.dtype).replace("torch.", ""),
                "device": None if self.device is None else str(self.device), "mode": self.mode,
                "max_memory_bytes": self.max_memory_bytes, "block_size": self.block_size,
                "unitary_max_qubits": self.unitary_max_qubits, "autograd_max_bytes": self.autograd_max_bytes}

    # ------------------------------------------------------------------ plans
    @staticmethod
    def _fingerprint(circuit: Circuit) -> tuple:
        return (circuit.n_qubits, len(circuit.gates), len(circuit.measurements), circuit.n_inputs,
                circuit.n_weights, circuit.state_prep)

    def _block_size(self, n: int) -> int:
        return self.block_size or (n if n <= 5 else 4)

    def _compile(self, circuit: Circuit) -> Plan:
        bs = self._block_size(circuit.n_qubits)
        plan = compile_circuit(circuit, bs)  # pure Python: nothing of size 2**n
        plan.state_prep = circuit.state_prep
        return plan

    def _lookup(self, circuit: Circuit):
        """``(fingerprint, cache entry or None, plan or None, whether the plan is the spare)``."""
        fp = self._fingerprint(circuit)
        hit = self._plans.get(id(circuit))
        if hit is not None and hit[0] is circuit and hit[1] == fp:
            return fp, hit, hit[2], False
        spare = self._spare
        if spare is not None and spare[0] is circuit and spare[1] == fp:
            return fp, hit, spare[2], True
        return fp, hit, None, False

    def _peek_plan(self, circuit: Circuit) -> Plan:
        """The plan for an estimate: the cached one, or one compiled but not cached (kept
        aside for :meth:`plan`), so a refused run leaves the cache untouched."""
        fp, _, plan, _ = self._lookup(circuit)
        if plan is None:
            plan = self._compile(circuit)
            self._spare = (circuit, fp, plan)
        return plan

    def plan(self, circuit: Circuit) -> Plan:
        """The compiled plan of ``circuit`` (cached; recompiled when the circuit grows)."""
        fp, hit, plan, spare = self._lookup(circuit)
        if plan is not None and not spare:
            return plan
        if plan is None:
            plan = self._compile(circuit)
        self._spare = None
        if hit is not None:
            self._drop(hit[2])
        while len(self._plans) >= _MAX_PLANS:  # bounded cache: drop the oldest circuit
            self._drop(self._plans.pop(next(iter(self._plans)))[2])
        self._plans[id(circuit)] = (circuit, fp, plan)
        return plan

    def clear_cache(self) -> None:
        """Free the state-sized scratch buffers the engine keeps between calls (its
        workspaces; at 16 qubits and batch 256 each buffer is 134 MB).  Buffers still in use
        (a state saved for a pending backward) stay.  Plans stay compiled."""
        for r in self._runners.values():
            r.ws.clear()
            if r.small is not None and r.small.np_fused is not None:
                r.small.np_fused.pool.clear()

    def workspace_bytes(self) -> int:
        """Bytes of scratch buffers the engine holds now (see :meth:`clear_cache`)."""
        return sum(r.ws.nbytes() + (r.small.np_fused.pool.nbytes() if r.small is not None and r.small.np_fused
                                    is not None else 0) for r in self._runners.values())

    def _drop(self, plan: Plan) -> None:
        for key in [k for k in self._runners if k[0] == id(plan)]:
            del self._runners[key]

    def _runner(self, plan: Plan, device, cdtype) -> _Runner:
        key = (id(plan), str(device), cdtype)
        r = self._runners.get(key)
        if r is None or r.plan is not plan:
            r = _Runner(plan, device, cdtype)
            r.plan_state_prep = plan.state_prep
            self._runners[key] = r
        return r

    # ------------------------------------------------------------------ memory
    def estimate_bytes(self, circuit: Circuit, batch: int, mode: str, cdtype=torch.complex64) -> int:
        """Upper bound of the bytes one forward+backward on ``mode`` (not ``"auto"``) allocates:
        the sum of :meth:`memory_parts`.  With ``S = batch * 2**n * itemsize`` (one state),
        ``R = S / 2`` (its probabilities) and ``Q = 4**n * itemsize`` (one unitary):

        * ``states``: ``6 S`` for ``adjoint``, ``(5 + matrix ops) S`` for ``blocked``,
          ``(5 + 3 * gates) S`` for ``gates``, ``(4 + 2 * ops) Q + 4 S`` for ``unitary``
          (``ops``: the ops run, a final permutation folded into the readout excluded);
        * ``transient``: the largest temporary of one op (``3 S`` for an op with per-sample
          matrices, the controlled slice for a controlled rotation, ``2**start * 4**k`` items
          for a shared block);
        * ``matrices``: every op's matrices, 4 times (build, autograd, gradient):
          ``4**k`` items per block, ``batch * 4**k`` when per-sample, 4 for a controlled rotation;
        * ``plan``: the monomial ops' index arrays (two int32 arrays of ``2**n``) and, with a
          phase gate, two phase arrays and three byte arrays of ``2**n``;
        * ``readout``: ``2 R`` (probabilities and their gradient), the ``<Z>`` sign matrices,
          ``2 S + 2 R`` per Pauli word with X/Y plus ``3 S`` for its backward, and
          ``4 * batch * 2**k`` reals per ``probs`` of ``k`` wires;
        * ``init``: what the initial state needs beyond one state (the product state's factors,
          the amplitude embedding's copies);
        * ``angles``: the per-sample angle tables and the outputs.

        Nothing of size ``2**n`` is built to compute it."""
        plan = self._peek_plan(circuit)
        key = (id(plan), batch, mode, cdtype)
        hit = self._estimates.get(key)
        if hit is not None and hit[0] is plan:
            return hit[1]
        need = sum(self.memory_parts(circuit, batch, mode, cdtype).values())
        if len(self._estimates) >= 256:
            self._estimates.clear()
        self._estimates[key] = (plan, need)
        return need

    def memory_parts(self, circuit: Circuit, batch: int, mode: str, cdtype=torch.complex64) -> dict:
        """The terms of :meth:`estimate_bytes`, in bytes, by name."""
        if mode not in MODES or mode == "auto":
            raise ValueError(f"TorchEngine: mode must be one of {list(MODES[1:])}; got {mode!r}")
        item = torch.empty((), dtype=cdtype).element_size()
        ritem = item // 2
        plan = self._peek_plan(circuit)
        if mode == "mps":
            prog = self._mps_program(circuit, plan)
            if prog is None:  # not runnable: run() raises; the bound of the blocked path
                return self.memory_parts(circuit, batch, "blocked", cdtype)
            return {"tensors": prog.memory_bytes(batch, item),
                    "angles": 4 * ritem * batch * (len(prog.table.ps_idx) + circuit.n_inputs + 2 * circuit.n_outputs)}
        if mode == "small":
            if 2**plan.n >= batch and self._small_fused(plan):
                # the state variant (CPU): each block's input state kept, the final state, its
                # cotangent and two temporaries; probabilities and their cotangent; the
                # per-wire factors and their environments (n x 2 x B, with a margin)
                S = batch * 2**plan.n * item
                n_ops = len(plan.ops) + 1
                return {"states": (n_ops + 4) * S, "readout": 2 * S // 2,
                        "init": 8 * plan.n * 2 * batch * item}
            mode = "unitary"  # a unitary and a few batch-sized tensors: the unitary path's bound
        n = plan.n
        N = 2**n
        B = batch
        S = B * N * item
        R = B * N * ritem
        z_only = [p for p, _ in plan.z_cols] == list(range(plan.n_outputs))
        if mode == "gates":
            ops = list(plan.gate_ops)
        else:
            ops = list(plan.ops)
            if z_only and ops and isinstance(ops[-1], MonoOp):
                ops = ops[:-1]  # folded into the readout
        cols = N if mode == "unitary" else B  # columns the ops act on
        Q = N * N * item
        parts = {}
        if mode == "adjoint":
            parts["states"] = _ADJOINT_FACTOR * S
        elif mode == "blocked":  # the input of every matrix op is kept for the backward
            parts["states"] = (_AUTOGRAD_BASE + 1 + sum(not isinstance(op, MonoOp) for op in ops)) * S
        elif mode == "gates":
            parts["states"] = (_AUTOGRAD_BASE + 1 + 3 * len(ops)) * S
        else:
            parts["states"] = (_AUTOGRAD_BASE + 2 * len(ops)) * Q + _AUTOGRAD_BASE * S
        state_u = cols * N * item  # one state of the ops (a unitary on the unitary path)
        transient = 0
        matrices = 0
        plan_bytes = 0
        for op in ops:
            if isinstance(op, MonoOp):
                idx = np.dtype(op.index_dtype()).itemsize
                plan_bytes += 2 * idx * N
                if op.has_phase:
                    plan_bytes += 2 * item * N + 3 * N + (1 << 20) * (8 + item)
                    transient = max(transient, state_u)  # the phase product
                continue
            per = B if op.per_sample else 1
            if isinstance(op, GateOp) and op.controlled:
                matrices += 4 * 4 * item * per
                transient = max(transient, 2 * state_u // 2 ** (len(op.gate.wires) - 1))
                continue
            wires = op.wires if isinstance(op, GateOp) else tuple(range(op.start, op.start + op.k))
            k = len(wires)
            matrices += 4 * (4**k + 4 * k) * item * per
            if op.per_sample or tuple(wires) != tuple(range(wires[0], wires[0] + k)):
                transient = max(transient, 3 * state_u)
            else:
                transient = max(transient, 2 * 2 ** wires[0] * 4**k * item)
        parts["transient"] = transient
        parts["matrices"] = matrices
        parts["plan"] = plan_bytes
        masks = [m for _, m in plan.z_cols]
        readout = 2 * R + (_ZReadout.nbytes(masks, n, B, ritem) if masks else 0)
        n_pauli = 0
        for _, kind, data in plan.other:
            if kind == "pauli":
                n_pauli += 1
                readout += (2 * S + 2 * R if data[0] else R) + _ZReadout.nbytes([data[1]], n, B, ritem)
            elif kind == "hermitian":  # M psi, its backward, and the matrix
                readout += 4 * S + 2 * 4 ** len(data[0]) * item
            else:
                readout += 4 * B * 2 ** len(data) * ritem
        if n_pauli:
            readout += 3 * S
        parts["readout"] = readout
        if plan.init == "amplitude":
            init = 2 * S + 3 * R
        elif plan.init == "product":
            init = N * item  # the shared product state before its expansion to the batch
            if plan.init_chains.per_sample:  # the Kronecker tree's factors and their gradients
                def tree(lo, hi):
                    if hi - lo == 1:
                        return 0
                    mid = (lo + hi + 1) // 2
                    return 2 ** (mid - lo) + 2 ** (hi - mid) + tree(lo, mid) + tree(mid, hi)
                init = 2 * tree(0, n) * B * item
            init += 4 * n * 4 * item * B  # chain matrices
        else:
            init = 0
        parts["init"] = init
        t = plan.table
        parts["angles"] = 4 * ritem * B * (len(t.ps_idx) + circuit.n_inputs + circuit.n_weights + len(t.consts)
                                          + 2 * plan.n_outputs)
        return parts

    def _limit(self, device) -> int:
        return int(self.max_memory_bytes) if self.max_memory_bytes is not None else available_memory(device)

    def choose_mode(self, circuit: Circuit, batch: int, device=torch.device("cpu"), cdtype=torch.complex64) -> str:
        """The path ``mode="auto"`` takes for this circuit and batch size."""
        plan = self._peek_plan(circuit)
        n = plan.n
        if self.mps_min_qubits and n >= self.mps_min_qubits:
            prog = self._mps_program(circuit, plan)
            # the MPS path while its bonds stay narrow (deep or all-to-all circuits saturate
            # them) and its time model beats a state vector's: per wire ~1.3 ms of op overhead
            # (forward + backward; 2.5 ms with the readout in torch instead of the compiled
            # kernels) plus its arithmetic, against one state sweep per wire, both at ~5 ns per
            # complex multiply-add (fitted on one CPU core to n = 10-16 at B=256 and n = 10 at
            # B=2048, bench/bench_modes_ab.py)
            if prog is not None and prog.max_bond <= self.mps_max_bond:
                per_wire = 1.3e-3 if kernel_readout(device, MPSRunner.use_kernel) else 2.5e-3
                if (per_wire * n + 5e-9 * batch * prog.flops < 5e-9 * batch * n * 2**n
                        and self.estimate_bytes(circuit, batch, "mps", cdtype) <= self._limit(device)):
                    return "mps"
        if _small_ok(plan) and n <= self.small_max_qubits and 2**n <= 2 * batch:
            return "small"
        # larger registers: the small path's numpy twin on the states (CPU, 2**n >= B, the
        # closed-form variant), ahead of the blocked path up to small_state_max_qubits
        if (_small_ok(plan) and device.type == "cpu" and n <= self.small_state_max_qubits
                and 2**n >= batch and self._small_fused(plan)
                and self.estimate_bytes(circuit, batch, "small", cdtype) <= self._limit(device)):
            return "small"
        if plan.unitary_ok and n <= self.unitary_max_qubits and 2**n <= batch:
            return "unitary"
        need = self.estimate_bytes(circuit, batch, "blocked", cdtype)
        if need > min(self._limit(device), self.autograd_max_bytes):
            return "adjoint"
        return "blocked"

    def _mps_program(self, circuit: Circuit, plan: Plan) -> MPSProgram | None:
        """The MPS path's program for ``plan`` (compiled once, pure Python), None where the
        path cannot run the circuit."""
        if plan.mps is None:
            plan.mps = MPSProgram(circuit) if _mps_why_not(circuit) is None else False
        return plan.mps or None

    def _small_runner(self, runner: _Runner) -> SmallRunner:
        return SmallRunner(runner, _PlanFn, _mats_1q, _kron, self._block_size(runner.plan.n))

    def _small_fused(self, plan: Plan) -> bool:
        """Whether the small path takes its closed-form (fused) variant for ``plan`` (a
        structure test; builds only the per-wire tables)."""
        hit = self._fused_ok.get(id(plan))
        if hit is None or hit[0] is not plan:
            runner = _Runner(plan, torch.device("cpu"), torch.complex64)
            runner.plan_state_prep = plan.state_prep
            small = self._small_runner(runner)
            if len(self._fused_ok) >= 256:
                self._fused_ok.clear()
            hit = self._fused_ok[id(plan)] = (plan, small.fused is not None and small.ry_map is not None)
        return hit[1]

    def check_memory(self, circuit: Circuit, batch: int, mode: str, device, cdtype, copies: int = 1) -> None:
        need = copies * self.estimate_bytes(circuit, batch, mode, cdtype)
        limit = self._limit(device)
        if need > limit:
            src = "max_memory_bytes" if self.max_memory_bytes is not None else f"available memory on {device}"
            of = f"{copies} copies of " if copies > 1 else ""
            raise MemoryLimitError(
                f"TorchEngine: simulating {of}{circuit.n_qubits} qubits with batch {batch} on path "
                f"{mode!r} needs about {need:,} bytes ({need / 2**30:.2f} GiB) but the limit "
                f"({src}) is {limit:,} bytes ({limit / 2**30:.2f} GiB); use fewer qubits or a "
                f"smaller batch")

    # ------------------------------------------------------------------ run
    def _prepare(self, inputs: torch.Tensor, weights: torch.Tensor):
        """Device, complex and real dtypes, batch size, and inputs / weights on that device in
        the real dtype (the prologue of :meth:`run` and :meth:`state`)."""
        device = self.device or inputs.device
        cdtype = _complex_dtype(self.dtype, inputs)
        rdtype = _real_of(cdtype)
        return (device, cdtype, rdtype, inputs.shape[0], inputs.to(device=device, dtype=rdtype),
                weights.to(device=device, dtype=rdtype))

    def _resolve(self, circuit: Circuit, B: int, device, cdtype):
        """``(plan, mode, runner)`` for a run, after the checks that must come before anything
        of size ``2**n`` is allocated.  Repeated calls with the same circuit, batch, device,
        dtype and settings whose paths need little memory (< ``_QUICK_BYTES``) reuse the
        answer: at a few qubits the checks cost as much as the run."""
        key = (id(circuit), self._fingerprint(circuit), B, str(device), cdtype, self.mode, self.max_memory_bytes,
               self.small_max_qubits, self.small_state_max_qubits, self.mps_min_qubits, self.mps_max_bond,
               self.unitary_max_qubits, self.autograd_max_bytes, self.block_size)
        hit = self._resolved.get(key)
        if hit is not None and hit[0] is circuit:
            cached = self._plans.get(id(circuit))
            if cached is not None and cached[2] is hit[1] and self._runners.get(hit[4]) is hit[3]:
                return hit[1], hit[2], hit[3]
        # the forced path (auto: its fallback, adjoint, unless it chose the MPS path, which has
        # nothing of size 2**n) must fit before anything of size 2**n is allocated (the
        # estimate compiles a plan without arrays and caches nothing)
        mode = self.mode
        if mode == "auto":
            mode = self.choose_mode(circuit, B, device, cdtype)
        first = "mps" if mode == "mps" else self.mode if self.mode != "auto" else "adjoint"
        self.check_memory(circuit, B, first, device, cdtype)
        plan = self.plan(circuit)
        if mode == "small" and not _small_ok(plan):
            raise ValueError(
                "TorchEngine: mode 'small' needs every gate after the initial state to be independent "
                "of the inputs and only <Z> readouts; this circuit has input-bound gates there or "
                "other measurements")
        if mode == "unitary" and not plan.unitary_ok:
            raise ValueError(
                "TorchEngine: mode 'unitary' needs every gate after the product-state embedding "
                "to be independent of the inputs; this circuit has input-bound gates there")
        if mode == "mps" and self._mps_program(circuit, plan) is None:
            raise ValueError(f"TorchEngine: mode 'mps' cannot run this circuit: it has {_mps_why_not(circuit)}")
        if mode != first:
            self.check_memory(circuit, B, mode, device, cdtype)
        runner = self._runner(plan, device, cdtype)
        if max(self.estimate_bytes(circuit, B, m, cdtype) for m in {first, mode}) < _QUICK_BYTES:
            if len(self._resolved) >= 256:
                self._resolved.clear()
            self._resolved[key] = (circuit, plan, mode, runner, (id(plan), str(device), cdtype))
        return plan, mode, runner

    def run(self, circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Run ``circuit``: ``inputs (B, n_inputs)``, ``weights (n_weights,)`` -> ``(B, n_outputs)``."""
        validate_run_args("TorchEngine", circuit, inputs, weights)
        out_device, out_dtype = inputs.device, inputs.dtype
        device, cdtype, rdtype, B, x, w = self._prepare(inputs, weights)
        if B == 0:
            out = x.new_zeros((0, circuit.n_outputs)) + 0.0 * w.sum()
            return out.to(device=out_device, dtype=out_dtype)
        plan, mode, runner = self._resolve(circuit, B, device, cdtype)
        self.last_mode = mode
        if mode == "mps":
            if runner.mps is None:
                runner.mps = MPSRunner(plan.mps, device, cdtype, rdtype, _mats_1q)
            out = runner.mps.run(x, w)
            t = plan.mps.table
            if not (t.sh_idx or t.ps_idx):  # every angle folded away: keep weights in the graph
                out = out + 0.0 * w.sum()
            return out.to(device=out_device, dtype=out_dtype)
        if mode == "small":
            small = runner.small
            if small is None:
                small = runner.small = self._small_runner(runner)
            return small.run(x, w, B).to(device=out_device, dtype=out_dtype)
        sh, ps = runner.angles(x, w)
        if mode == "gates":
            if plan.init == "amplitude":
                psi = runner.amplitude(x, B)
            else:
                psi = torch.zeros(B, 2**plan.n, dtype=cdtype, device=device)
                psi[:, 0] = 1
            mats = runner.op_matrices(plan.gate_ops, sh, ps, B)
            psi = runner.apply_ops(psi, plan.gate_ops, mats, batch_last=False).transpose(0, 1)
        else:
            ops = runner.exec_ops
            psi = runner.init_state(x, sh, ps, B)
            mats = runner.op_matrices(ops, sh, ps, B)
            if mode == "blocked":
                if ops:
                    psi = _PlanFn.apply(runner, True, psi, *mats)
            elif mode == "unitary":
                if ops:
                    eye = torch.eye(2**plan.n, dtype=cdtype, device=device)
                    U = runner.apply_ops(eye, ops, mats)  # columns U e_j
                    psi = U @ psi
            elif mode == "adjoint":
                if ops:
                    psi = _PlanFn.apply(runner, False, psi, *mats)
            else:  # pragma: no cover
                raise ValueError(mode)
        out = runner.measure(psi, fold=mode != "gates" and runner.fold)
        return out.to(device=out_device, dtype=out_dtype)

    def run_many(self, circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Copies of ``circuit`` with their own inputs and weights: ``inputs (copies, B,
        n_inputs)``, ``weights (copies, n_weights)`` -> ``(copies, B, n_outputs)``, copy ``g``
        equal to ``run(circuit, inputs[g], weights[g])``.  Where the path for one copy is the
        small path's numpy U variant (CPU, a few qubits, ``2**n < B``), all copies run in its
        calls at once (KACQ-DCNN's three 4-qubit circuits: one call instead of three); else
        one :meth:`run` per copy."""
        validate_many_args("TorchEngine", circuit, inputs, weights)
        G, B = inputs.shape[:2]
        out_device, out_dtype = inputs.device, inputs.dtype
        device, cdtype, rdtype, _, x, w = self._prepare(inputs, weights)
        if B > 0:
            plan, mode, runner = self._resolve(circuit, B, device, cdtype)
            if mode == "small":
                small = runner.small
                if small is None:
                    small = runner.small = self._small_runner(runner)
                if small.can_run_many() and not small.np_fused.use_states(B):
                    self.check_memory(circuit, B, "small", device, cdtype, copies=G)
                    self.last_mode = mode
                    return small.run_many(x, w).to(device=out_device, dtype=out_dtype)
        return torch.stack([self.run(circuit, inputs[g], weights[g]) for g in range(G)])

    def state(self, circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The final state vectors ``(B, 2**n)`` (complex, qnn basis order: wire 0 most
        significant) of ``circuit``'s gates on ``inputs (B, n_inputs)``, ``weights
        (n_weights,)``; differentiable by autograd.  Measurements are ignored (none needed).
        Runs the fused ops of the ``blocked`` path under plain autograd."""
        validate_run_args("TorchEngine.state", circuit, inputs, weights, need_measurements=False)
        out_device = inputs.device
        device, cdtype, rdtype, B, x, w = self._prepare(inputs, weights)
        self.check_memory(circuit, max(B, 1), "blocked", device, cdtype)
        plan = self.plan(circuit)
        runner = self._runner(plan, device, cdtype)
        sh, ps = runner.angles(x, w)
        psi = runner.init_state(x, sh, ps, B)
        mats = runner.op_matrices(plan.ops, sh, ps, B)
        psi = runner.apply_ops(psi, plan.ops, mats)
        return psi.transpose(0, 1).to(out_device)
