"""The small path's numpy twin (CPU): the closed-form (fused) variant of :mod:`._torch_small`
in numpy, with the batch as the last, contiguous axis, at a fraction of torch's per-op
overhead (a few microseconds per op is the whole cost at a few qubits).

The rotations and their copies with one angle shifted by ``pi`` (``dR/dt = R(t + pi) / 2``)
come from one fitted half-angle table (:class:`_RotTable`).  Two variants, chosen by
:class:`_NumpyFused` per call:

- **U** (``2**n < B``): each block of rotations is one Kronecker product applied to the
  identity, ``U (G, 2**n, 2**n)``, then the readout ``|U psi0|^2 S`` runs on the batch (the
  RY product state or the amplitude embedding built here too).  The backward carries
  ``dL/dU`` back block by block; for each block ``Gamma = dL/dU_out U_out^H`` traced onto
  each of its wires gives every angle's gradient, ``Re sum conj(rho) (dR/dt R^H)``.  A
  leading axis ``G`` runs copies of one circuit structure with their own weights and inputs
  in the same calls (:meth:`qnn.engines.torch_engine.TorchEngine.run_many`).
- **state** (``2**n >= B``): the plan's fused Kronecker blocks (and their derivative
  variants) are applied to the ``(2**n, B)`` states; the backward carries the states'
  cotangent back through the blocks to ``psi0``; a folded first layer acts on the product
  state's factors.

Where numba is available the U variant on a real embedded state (the RY product state, the
amplitude embedding) runs in the compiled kernels of :mod:`._small_kernel` instead: four or
five calls per pass instead of about seventy; :attr:`_NumpyFused.use_kernel` switches them off.

The slow reference is the ``gates`` path; ``tests/engines/test_torch_small.py`` checks both
variants and the torch-op version against each other and against it, and
``tests/engines/test_small_kernel.py`` the kernels against this module's numpy code.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from qnn.engines import _small_kernel
from qnn.engines._amplitude import amplitude_grad_np, amplitude_states_np
from qnn.engines._workspace import ArrayPool


def _np_rot(name: str, A: np.ndarray, cdtype) -> np.ndarray:
    """numpy twin of the torch engine's rotation matrices, batch last:
    ``A (npar, ...)`` -> ``(2, 2, ...)``."""
    M = np.empty((2, 2) + A.shape[1:], dtype=cdtype)
    if name == "Rot":
        phi, theta, omega = A[0], A[1], A[2]
        c, s = np.cos(theta / 2), np.sin(theta / 2)
        ea = np.exp(-0.5j * (phi + omega)).astype(cdtype)
        ed = np.exp(0.5j * (phi - omega)).astype(cdtype)
        np.multiply(c, ea, out=M[0, 0])
        np.multiply(-s, ed, out=M[0, 1])
        np.multiply(s, ed.conj(), out=M[1, 0])
        np.multiply(c, ea.conj(), out=M[1, 1])
        return M
    t = A[0] / 2
    c, s = np.cos(t), np.sin(t)
    if name == "RX":
        M[0, 0] = M[1, 1] = c
        M[0, 1] = M[1, 0] = -1j * s
    elif name == "RY":
        M[0, 0] = M[1, 1] = c
        M[0, 1] = -s
        M[1, 0] = s
    else:  # RZ
        e = np.exp(-1j * t).astype(cdtype)
        M[0, 0] = e
        M[1, 1] = e.conj()
        M[0, 1] = M[1, 0] = 0
    return M


class _RotTable:
    """A rotation's matrix and its ``npar`` copies with one angle shifted by ``pi``, for many
    angle sets in four numpy calls.  Every entry of ``RX``/``RY``/``RZ``/``Rot`` is a
    trigonometric polynomial of its angles with frequencies ``+-1/2`` per angle (``Rot``'s
    ``c e^{-i(phi+omega)/2}`` is ``(e^{i(-phi+theta-omega)/2} + e^{i(-phi-theta-omega)/2}) / 2``),
    so with the ``2**npar`` sign patterns ``S``: ``entries = C exp(i S t)``.  ``C`` is fitted
    once (least squares on random angles, residual checked) against :func:`_np_rot`, which
    stays the definition.

    ``table(A)``: ``A (npar, ...)`` -> ``(2, 2, 1 + npar, ...)``, as
    ``_np_rot(name, A[:, None] + shift)`` with ``shift[p, 1 + p] = pi``."""

    def __init__(self, name: str, npar: int, cdtype):
        E = 1 + npar
        m = 2**npar
        S = 0.5 * (1 - 2 * ((np.arange(m)[:, None] >> np.arange(npar)[None]) & 1))  # (m, npar)
        rng = np.random.default_rng(0)
        T = rng.uniform(-7, 7, size=(npar, 4 * m))
        shift = np.zeros((npar, E, 1))
        shift[np.arange(npar), 1 + np.arange(npar)] = np.pi
        R = _np_rot(name, T[:, None] + shift, np.complex128).reshape(4 * E, -1)  # (4E, samples)
        Z = np.exp(1j * (S @ T))  # (m, samples)
        C = np.linalg.lstsq(Z.T, R.T, rcond=None)[0].T  # (4E, m)
        if np.abs(C @ Z - R).max() > 1e-10:  # pragma: no cover - a gate outside the family
            raise ValueError(f"_RotTable: {name} is not a trigonometric polynomial of half angles")
        self.rdtype = np.float64 if cdtype == np.complex128 else np.float32
        self.S = S.astype(self.rdtype)
        self.C = np.ascontiguousarray(C.astype(cdtype))  # (4 E, m), rows in (2, 2, E) order
        self.E = E

    def __call__(self, A: np.ndarray) -> np.ndarray:
        Z = np.exp(1j * (self.S @ A.reshape(A.shape[0], -1)))
        return (self.C @ Z).reshape((2, 2, self.E) + A.shape[1:])


def _kron2(P: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Batched Kronecker product ``P (z, p, p) x R (z, r, r)`` -> ``(z, p r, p r)`` (``P``'s
    wires more significant)."""
    z, p, r = P.shape[0], P.shape[1], R.shape[1]
    return (P[:, :, None, :, None] * R[:, None, :, None, :]).reshape(z, p * r, p * r)


def _np_kron(F: np.ndarray) -> np.ndarray:
    """Kronecker product of ``F (k, 2, 2, *batch)`` -> ``(2**k, 2**k, *batch)`` (first = most
    significant), batch last so that every product runs over contiguous memory."""
    out = F[0]
    bs = F.shape[3:]
    for j in range(1, F.shape[0]):
        d = out.shape[0]
        out = (out[:, None, :, None] * F[j][None, :, None, :]).reshape(2 * d, 2 * d, *bs)
    return out


def _np_kron_vecs(V: np.ndarray) -> np.ndarray:
    """Product state of the per-wire factors ``V (k, 2, B)`` -> ``(2**k, B)`` (wire 0 most
    significant)."""
    psi = V[0]
    for i in range(1, V.shape[0]):
        psi = (psi[:, None, :] * V[i][None, :, :]).reshape(-1, V.shape[2])
    return psi


def _np_prod_env(T: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Environments of a product state's factors: ``env[i, :, b] = sum_x T[x, b] prod_{j != i}
    V[j, x_j, b]`` (the index ``x_i`` left open), ``T (2**k, B)``, ``V (k, 2, B)`` ->
    ``(k, 2, B)``; ``sum_x T dpsi_i = sum_c env[i, c] dV_i[c]`` for a change of factor ``i``.

    Contracted as a tree: ``T`` with the right half's product state leaves the left half's
    environment (and the other way round), so the cost is about two passes over ``T`` instead
    of ``k`` (one per factor)."""
    k = V.shape[0]
    if k == 1:
        return T[None]
    m = k // 2
    T3 = T.reshape(2**m, 2 ** (k - m), -1)
    left = (T3 * _np_kron_vecs(V[m:])[None]).sum(1)
    right = (T3 * _np_kron_vecs(V[:m])[:, None]).sum(0)
    return np.concatenate([_np_prod_env(left, V[:m]), _np_prod_env(right, V[m:])])


def _np_prod_grad(T: np.ndarray, V: np.ndarray, Vd: np.ndarray) -> np.ndarray:
    """``g[i, b] = sum_x T[x, b] dpsi_i[x, b]`` where ``psi = kron_i V[i]`` and ``dpsi_i`` has
    factor ``i`` replaced by ``Vd[i]``: ``(k, B)``.  Up to 5 factors the ``k`` derivative
    states are built in one Kronecker chain (``k 2**k`` values per sample, cheaper there than
    the tree's Python recursion), else contracted as a tree (:func:`_np_prod_env`)."""
    k = V.shape[0]
    if k > 5:
        return (_np_prod_env(T, V) * Vd).sum(1)
    F = np.broadcast_to(V, (k,) + V.shape).copy()  # variant i: factor i replaced by Vd[i]
    F[np.arange(k), np.arange(k)] = Vd
    D = F[:, 0]
    for j in range(1, k):
        D = (D[:, :, None, :] * F[:, j, None, :, :]).reshape(k, -1, V.shape[2])
    return (D * T[None]).sum(1)


class _NumpyFused:
    """The closed-form variant on CPU in numpy: the same arithmetic in the same dtype as the
    torch ops of :class:`_FusedFn`, with the batch as the last (contiguous) axis and at a
    fraction of their per-call overhead (a few microseconds per op is the whole cost at a
    few qubits).  Arrays carry a leading copies axis ``G`` (one circuit structure, ``G``
    sets of weights and inputs); the state variant runs one copy."""

    def __init__(self, small):
        runner = small.runner
        fz = small.fused
        self.small, self.fz = small, fz
        self.n = runner.plan.n
        self.cdtype = np.complex128 if runner.cdtype == torch.complex128 else np.complex64
        self.rdtype = np.float64 if self.cdtype == np.complex128 else np.float32
        c = lambda t: t.detach().cpu().numpy()  # noqa: E731
        self.sh_idx, self.sh_scale, self.sh_off = c(runner.sh_idx), c(runner.sh_scale), c(runner.sh_off)
        self.consts = c(runner.consts)
        self.n_weights = runner.plan.table.n_weights
        n_src = self.n_weights + len(self.consts)
        # gsrc = gsh @ sh_scatter: the shared angles' cotangent summed back onto their sources
        self.sh_scatter = np.zeros((len(self.sh_idx), n_src), dtype=self.rdtype)
        np.add.at(self.sh_scatter, (np.arange(len(self.sh_idx)), self.sh_idx), self.sh_scale)
        self.idx = {k: c(v) for k, v in fz.idx.items()}
        self.sel = {k: c(v) for k, v in fz.sel.items()}
        self.rot = _RotTable(fz.name, fz.npar, self.cdtype)  # the rotations and their shifted copies
        self.S = c(small.S)
        self.ST = np.ascontiguousarray(self.S.T)
        self.N = small.N
        self.pool = ArrayPool()  # the state variant's state-sized arrays, reused between calls
        self.mono = {}
        for op in fz.seq:
            if op[0] == "mono":
                self.mono[id(op[1])] = tuple(None if a is None else c(a) for a in runner.mono(op[1]))
        plan = runner.plan
        # the amplitude embedding's normalisation in numpy too (U variant)
        self.amp = (plan.state_prep, plan.n, plan.table.n_inputs) if plan.init == "amplitude" else None
        self.ry = None
        if small.ry_map is not None:
            idx, scale = small.ry_map
            self.ry = (c(idx), c(scale), c(small.ry_off))
            # gx = gt @ ry_scatter: each wire's angle cotangent onto its input column
            self.ry_scatter = np.zeros((len(self.ry[0]), runner.plan.table.n_inputs), dtype=self.rdtype)
            np.add.at(self.ry_scatter, (np.arange(len(self.ry[0])), self.ry[0]), self.ry[1])
            # d psi / d t_i = (J on wire i) psi / 2, J = [[0, -1], [1, 0]]: entry x of it is
            # flip_sign[i, x] psi[flip[i, x]] (wire 0 most significant)
            x = np.arange(self.N)
            m = 1 << (self.n - 1 - np.arange(self.n))[:, None]
            self.flip = x[None] ^ m  # (n, N)
            self.flip_sign = np.where(x[None] & m, 0.5, -0.5).astype(self.rdtype)[:, :, None]  # (n, N, 1)
        self._eyes: dict = {}  # G -> the identity broadcast to (G, N, N)
        # the U variant's backward takes the partial traces of every block's Gamma onto every
        # wire a block acts on (_ptrace); where each block's wires sit among them
        blocks = self.blocks = [op for op in fz.seq if op[0] == "block"]
        wires = sorted({op[3] + j for op in blocks for j in range(op[1])})
        self.block_wires = wires
        self._pt = None
        self.block_rho = {}  # k -> (block index, wire index) of each (row, j), for the gather
        for k in fz.idx:
            mine = [(b, op) for b, op in enumerate(blocks) if op[1] == k]
            bi = np.zeros((len(mine), k), dtype=np.int64)
            wi = np.zeros((len(mine), k), dtype=np.int64)
            for b, (_, _, row, start) in mine:
                bi[row] = b
                wi[row] = [wires.index(start + j) for j in range(k)]
            self.block_rho[k] = (bi, wi)
        # the compiled kernels' program (_small_kernel): one row per rotation (0, wire, gate)
        # or permutation (1, 0, index); gates numbered k-group by k-group as (row, wire), so
        # that their angles' gradients (gate, parameter) are the k-groups' ``idx`` in order
        gate_off, off = {}, 0
        for k, idx in self.idx.items():
            gate_off[k] = off
            off += len(idx) // fz.npar
        ops, perms, phases = [], [], []
        for op in fz.seq:
            if op[0] == "block":
                _, k, row, start = op
                ops += [(0, start + j, gate_off[k] + row * k + j) for j in range(k)]
            else:
                srci, phase, _, _ = self.mono[id(op[1])]
                ops.append((1, 0, len(perms)))
                perms.append(srci)
                phases.append(np.ones(self.N, self.cdtype) if phase is None else phase.astype(self.cdtype))
        self.k_ops = np.array(ops, dtype=np.int64).reshape(-1, 3)
        self.k_perms = np.array(perms, dtype=np.int64).reshape(-1, self.N)
        self.k_phases = np.array(phases, dtype=self.cdtype).reshape(-1, self.N)
        slot_sh = np.concatenate(list(self.idx.values())) if self.idx else np.zeros(0, np.int64)
        self.k_scatter = np.ascontiguousarray(self.sh_scatter[slot_sh, :self.n_weights])  # (slots, P)
        self.k_gidx = slot_sh.reshape(-1, fz.npar).astype(np.int64)  # gate j's angles: sh[k_gidx[j]]
        self.k_consts = np.ascontiguousarray(self.consts, dtype=self.rdtype).reshape(-1)
        self.k_xscatter = np.zeros((0, 0), self.rdtype) if self.ry is None else np.ascontiguousarray(self.ry_scatter)
        self.k_ry = None if self.ry is None else (  # half angles: idx, scale / 2, off / 2
            self.ry[0].astype(np.int64), *(np.ascontiguousarray(a * 0.5, dtype=self.rdtype) for a in self.ry[1:]))

    #: most values of the input gradient's derivative states built at once (U variant)
    GATHER_MAX = 1 << 22

    #: run the U variant in the compiled kernels where numba is available (tests switch it off
    #: to compare against the numpy code)
    use_kernel = True

    def kernel_ok(self, real: bool) -> bool:
        """Whether the U variant runs in :mod:`._small_kernel` for a real (``real``) embedded
        state: numba available and :attr:`use_kernel`."""
        return real and self.use_kernel and _small_kernel.available()

    def use_states(self, B: int) -> bool:
        """The state variant (ops on the ``(2**n, B)`` states) for batch ``B``, else U."""
        return self.N * self.small.state_ratio >= B

    # ------------------------------------------------------------------ U variant
    def forward_u(self, x, w, psi0):
        """``x (G, B, d)``, ``w (G, P)``, ``psi0 (G, B, N)`` or None (the RY product state or
        the amplitude embedding, built here) -> ``out (G, B, K)`` and what the backward needs."""
        if self.kernel_ok(psi0 is None or not np.iscomplexobj(psi0)):
            return self._forward_kernel(x, w, psi0)
        fz = self.fz
        N = self.N
        G = w.shape[0]
        src = np.concatenate([w, np.broadcast_to(self.consts, (G, len(self.consts)))], 1) if len(self.consts) else w
        sh = src[:, self.sh_idx] * self.sh_scale + self.sh_off  # (G, n_sh)
        R0, Rd, pref = {}, {}, {}
        for k, idx in self.idx.items():
            A = sh[:, idx].reshape(G, -1, k, fz.npar).transpose(3, 0, 1, 2)  # (npar, G, nb, k)
            nb = A.shape[2]
            R = self.rot(A)  # (2, 2, E, G, nb, k)
            F = np.ascontiguousarray(R[:, :, 0].transpose(2, 3, 4, 0, 1)).reshape(G * nb, k, 2, 2)
            R0[k] = F
            Rd[k] = R[:, :, 1:].reshape(2, 2, fz.npar, G * nb, k)  # 2 dR / d(angle p)
            # every block's Kronecker product, through its prefixes (kept for the backward)
            P = [F[:, 0]]
            for i in range(1, k):
                P.append(_kron2(P[-1], F[:, i]))
            pref[k] = P
        V = amp = None
        if psi0 is None and self.amp is not None:
            sp, n, _ = self.amp
            psi0, norms = amplitude_states_np("TorchEngine", sp, n, x)
            amp = (psi0, norms)
            psiT = psi0.transpose(0, 2, 1)
        elif psi0 is None:  # the RY product state, wire 0 most significant
            idx, scale, off = self.ry
            h = ((x[:, :, idx] * scale + off) * 0.5).transpose(0, 2, 1)  # (G, n, B)
            V = np.empty(h.shape[:2] + (2,) + h.shape[2:], dtype=h.dtype)  # (G, n, 2, B)
            np.cos(h, out=V[:, :, 0])
            np.sin(h, out=V[:, :, 1])
            psiT = V[:, 0]
            for i in range(1, self.n):
                psiT = (psiT[:, :, None] * V[:, i, None]).reshape(G, -1, psiT.shape[-1])
        else:
            psiT = psi0.transpose(0, 2, 1)  # (G, N, B)
        U, saved = self._u_blocks(G, pref)
        if not np.iscomplexobj(psiT):
            M = np.concatenate([U.real, U.imag], 1)  # (G, 2N, N)
            ph = M @ psiT  # (G, 2N, B): Re phi over Im phi
            p = np.square(ph[:, :N])
            p += np.square(ph[:, N:])
        else:
            M = U
            ph = U @ psiT
            p = np.square(ph.real) + np.square(ph.imag)
        out = (self.ST @ p).transpose(0, 2, 1)  # (G, B, K)
        return out, (psiT, V, amp, R0, Rd, pref, saved, M, ph)

    def _forward_kernel(self, x, w, psi0):
        """:meth:`forward_u` in the compiled kernels (a real embedded state)."""
        rot = self.rot
        gates = _small_kernel.gate_table(np.ascontiguousarray(w), self.k_consts, self.sh_idx, self.sh_scale,
                                         self.sh_off, self.k_gidx, rot.S, rot.C)
        amp = None
        if psi0 is None and self.amp is not None:
            sp, n, _ = self.amp
            psi, norms, bad = _small_kernel.amplitude_state(np.ascontiguousarray(x), sp.start, sp.n_features,
                                                            x.dtype.type(sp.pad), n)
            if bad >= 0:  # an all-zero vector: the numpy twin raises the error that names it
                amplitude_states_np("TorchEngine", sp, n, x)
                raise AssertionError(f"amplitude_state: vector {bad} is all zero but the numpy twin accepts it")
            amp = norms
        elif psi0 is None:  # the RY product state
            psi = _small_kernel.ry_state(np.ascontiguousarray(x), *self.k_ry, self.n)
        else:
            psi = np.ascontiguousarray(psi0.transpose(0, 2, 1))  # (G, N, B)
        out, *saved = _small_kernel.u_forward(gates, self.k_ops, self.k_perms, self.k_phases, self.S, psi)
        return out, ("kernel", gates, saved + [psi], amp)

    def _backward_kernel(self, Gout, st, need_x, need_w, need_psi):
        """:meth:`backward_u` for :meth:`_forward_kernel`."""
        _, gates, saved, amp = st
        ry_n = self.n if need_x and amp is None and self.ry is not None else 0
        want_psi = need_psi or (need_x and amp is not None)
        gw, gpsi, gx = _small_kernel.u_backward(np.ascontiguousarray(Gout), self.S, saved, gates, self.k_ops,
                                                self.k_perms, self.k_phases, self.k_scatter, self.k_xscatter, need_w,
                                                want_psi, ry_n)
        gw = gw if need_w else None
        gx = gx if ry_n else None
        gpsi0 = None
        if amp is not None and need_x:
            sp = self.amp[0]
            gx = _small_kernel.amplitude_grad(gpsi, saved[-1], amp, sp.start, sp.n_features, self.amp[2])
        if need_psi and amp is None:
            gpsi0 = gpsi.transpose(0, 2, 1)
        return gx, gw, gpsi0

    def _u_blocks(self, G, pref):
        """``U (G, N, N)``: the blocks and permutations applied to the identity, and each
        block's output (for the backward)."""
        N = self.N
        U = self._eyes.get(G)
        if U is None:
            U = self._eyes[G] = np.broadcast_to(np.eye(N, dtype=self.cdtype), (G, N, N))
        saved = []
        for op in self.fz.seq:
            if op[0] == "block":
                _, k, row, start = op
                K = pref[k][-1].reshape(G, -1, 2**k, 2**k)[:, row, None]  # (G, 1, 2**k, 2**k)
                U = (K @ U.reshape(G, 2**start, 2**k, -1)).reshape(G, N, N)
                saved.append(U)
            else:
                srci, phase, _, _ = self.mono[id(op[1])]
                U = U[:, srci]
                if phase is not None:
                    U *= phase[:, None]
        return U, saved

    #: largest partial-trace matrix (entries) for one product (else one einsum per wire)
    PTRACE_MAX = 1 << 20

    def _ptrace(self, Gam):
        """``rho (blocks, G, wires, 2, 2)``: ``Gam (blocks, G, N, N)`` traced over every wire
        but one, ``rho[a, b] = sum_{x, u} Gam[(x, a, u), (x, b, u)]``, for each wire some block
        acts on: one product with a 0/1 matrix built once while it is small, else one
        ``einsum`` per wire."""
        nb, G, N = Gam.shape[:3]
        n, wires = self.n, self.block_wires
        if len(wires) * 4 * N * N <= self.PTRACE_MAX:
            if self._pt is None:
                x = np.arange(N)
                pt = np.zeros((len(wires), 2, 2, N, N), dtype=self.cdtype)
                for wi, q in enumerate(wires):
                    bit = n - 1 - q
                    for a in range(2):
                        rows = x[((x >> bit) & 1) == a]  # i = (x, a, u); j = (x, b, u)
                        for b in range(2):
                            pt[wi, a, b, rows, rows ^ ((a ^ b) << bit)] = 1
                self._pt = np.ascontiguousarray(pt.reshape(len(wires) * 4, N * N).T)  # (N*N, 4 wires)
            return (Gam.reshape(nb * G, N * N) @ self._pt).reshape(nb, G, len(wires), 2, 2)
        rho = np.empty((nb, G, len(wires), 2, 2), dtype=Gam.dtype)
        for wi, q in enumerate(wires):
            A, C = 2**q, 2 ** (n - 1 - q)
            rho[:, :, wi] = np.einsum("zgxauxbu->zgab", Gam.reshape(nb, G, A, 2, C, A, 2, C))
        return rho

    def backward_u(self, Gout, st, need_x, need_w, need_psi):
        """``Gout (G, B, K)`` -> ``gx (G, B, d)``, ``gw (G, P)``, ``gpsi0 (G, B, N)`` (None where
        not needed)."""
        if isinstance(st[0], str):  # the compiled kernels ran the forward
            return self._backward_kernel(Gout, st, need_x, need_w, need_psi)
        fz = self.fz
        N = self.N
        psiT, V, amp, R0, Rd, pref, saved, M, ph = st
        G = M.shape[0]
        gp2 = (self.S @ Gout.transpose(0, 2, 1)) * 2  # (G, N, B)
        real = not np.iscomplexobj(psiT)
        want_psi = need_psi or ((V is not None or amp is not None) and need_x)
        gpsiT = gU = gx = gw = None
        if real:
            D = ph * np.concatenate([gp2, gp2], 1)  # dL/d(Re phi; Im phi), (G, 2N, B)
            if want_psi:
                gpsiT = M.transpose(0, 2, 1) @ D
            if need_w:
                gM = D @ psiT.transpose(0, 2, 1)
                gU = gM[:, :N] + 1j * gM[:, N:]
        else:
            lam = ph * gp2
            if want_psi:
                gpsiT = M.conj().transpose(0, 2, 1) @ lam
            if need_w:
                gU = lam @ psiT.conj().transpose(0, 2, 1)
        if need_w:
            # per block, Gamma = dL/dU_out U_out^H; a rotation R_i on wire q of the block then
            # has dL/dt = Re tr(Gamma^H (1 x dR_i/dt R_i^H x 1)) = Re sum conj(rho_q) (dR_i/dt R_i^H)
            # with rho_q Gamma's reduced 2 x 2 matrix on wire q (a partial trace)
            blocks = self.blocks
            Gam = np.empty((len(blocks), G, N, N), dtype=self.cdtype)
            si = len(saved)
            for op in reversed(self.fz.seq):
                if op[0] == "block":
                    si -= 1
                    _, k, row, start = op
                    Gam[si] = gU @ saved[si].conj().transpose(0, 2, 1)
                    if si > 0:
                        g = 2**k
                        K = pref[k][-1].reshape(G, -1, g, g)[:, row, None]
                        gU = (K.conj().transpose(0, 1, 3, 2) @ gU.reshape(G, 2**start, g, -1)).reshape(G, N, N)
                else:
                    _, _, inv, phase_inv = self.mono[id(op[1])]
                    gU = gU[:, inv]
                    if phase_inv is not None:
                        gU *= phase_inv.conj()[:, None]
            rho = self._ptrace(Gam)  # (blocks, G, wires, 2, 2)
            P = {k: rho[bi, :, wi].transpose(2, 0, 1, 3, 4) for k, (bi, wi) in self.block_rho.items()}  # (G, nb_k, k, 2, 2)
            gsh = np.zeros((G, len(self.sh_idx)), dtype=self.rdtype)
            for k, idx in self.idx.items():
                # Re sum_ab conj(rho)[a, b] (Rd R^H)[a, b] = Re sum_ay Rd[a, y] conj(rho R)[a, y]
                Y = (P[k].reshape(-1, k, 2, 2) @ R0[k]).conj()  # (z = G nb_k, k, 2, 2)
                gA = np.einsum("xypzk,zkxy->zkp", Rd[k], Y).real  # (z, k, npar)
                gsh[:, idx] = 0.5 * gA.reshape(G, -1)
            gw = (gsh @ self.sh_scatter)[:, :self.n_weights]
        if amp is not None:
            if need_x:
                gx = amplitude_grad_np(self.amp[0], self.amp[2], amp[0], amp[1], gpsiT.transpose(0, 2, 1))
            gpsiT = None
        if V is not None:
            if need_x:
                # dL/dt_i = sum_x gpsi[x] (d psi / d t_i)[x], the derivative states built for
                # a few wires at a time (at most GATHER_MAX values)
                B = psiT.shape[-1]
                gt = np.empty((G, self.n, B), dtype=self.rdtype)
                step = max(1, self.GATHER_MAX // (G * N * B))
                for lo in range(0, self.n, step):
                    Q = psiT[:, self.flip[lo:lo + step]]  # (G, s, N, B)
                    Q *= self.flip_sign[lo:lo + step]
                    Q *= gpsiT[:, None]
                    gt[:, lo:lo + step] = Q.sum(2)
                gx = gt.transpose(0, 2, 1) @ self.ry_scatter  # (G, B, d)
            gpsiT = None
        return gx, gw, None if gpsiT is None else gpsiT.transpose(0, 2, 1)

    # ------------------------------------------------------------------ state variant
    def forward_state(self, x, w, psi0):
        """One copy: ``x (B, d)``, ``w (P,)``, ``psi0 (B, N)`` or None (the RY product state,
        built here) -> ``out (B, K)`` and what the backward needs."""
        fz = self.fz
        src = np.concatenate([w, self.consts]) if len(self.consts) else w
        sh = src[self.sh_idx] * self.sh_scale + self.sh_off
        dpsi = None
        if psi0 is None:
            idx, scale, off = self.ry
            h = ((x[:, idx] * scale + off) * 0.5).T  # (n, B)
            c, sn = np.cos(h), np.sin(h)
            V = np.stack([c, sn], 1)  # (n, 2, B): wire i's factor [cos, sin](t_i / 2)
            psiT = None  # (N, B), built below unless the first layer is folded into V
            dpsi = (V, np.stack([-0.5 * sn, 0.5 * c], 1))  # the factors and their derivatives
        else:
            psiT = psi0.T
        mats, rots = {}, {}
        for k, idx in self.idx.items():
            A = sh[idx].reshape(-1, k, fz.npar).T  # (npar, k, nb)
            nb = A.shape[2]
            R = self.rot(A)  # (2, 2, E, k, nb)
            rots[k] = R
            F = R.reshape(2, 2, -1, nb)[:, :, self.sel[k]].reshape(2, 2, -1, k, nb).transpose(3, 0, 1, 2, 4)
            Kv = np.ascontiguousarray(_np_kron(F).transpose(2, 3, 0, 1))  # (V, nb, G, G)
            mats[k] = (Kv[0], Kv[1:].reshape(fz.npar * k, nb, -1))
        # the ops run on the (N, B) states themselves: cheaper than building U (N x N) and
        # reading it out with three N x N x B products once N is not small against B
        seq, fold = fz.seq, None
        if dpsi is not None and fz.n_pre:
            # the product state's trailing single-qubit gates (the first layer) act on each
            # wire's factor, u_i = R_i v_i, instead of as blocks on the whole state
            V = dpsi[0]
            Rw = np.empty((V.shape[0], 2, 2, 1 + fz.npar), dtype=self.cdtype)  # (n, 2, 2, E)
            for _, k, row, start in seq[:fz.n_pre]:
                Rw[start:start + k] = rots[k][..., row].transpose(3, 0, 1, 2)
            R0 = Rw[..., 0]
            u = R0 @ V  # (n, 2, B)
            psiT = _np_kron_vecs(u)
            seq, fold = seq[fz.n_pre:], (Rw, u)
        if psiT is None:
            psiT = _np_kron_vecs(dpsi[0])
        U = psiT.astype(self.cdtype, copy=False)
        saved = []
        pool = self.pool
        taken = []  # state-sized arrays from the pool (no fresh pages in a steady workload)
        for op in seq:
            nxt = pool.take(U.shape, self.cdtype)
            taken.append(nxt)
            if op[0] == "block":
                _, k, row, start = op
                saved.append(U)
                np.matmul(mats[k][0][row], U.reshape(2**start, 2**k, -1), out=nxt.reshape(2**start, 2**k, -1))
            else:
                srci, phase, _, _ = self.mono[id(op[1])]
                np.take(U, srci, axis=0, out=nxt)
                if phase is not None:
                    nxt *= phase[:, None]
            U = nxt
        p, t = pool.take(U.shape, self.rdtype), pool.take(U.shape, self.rdtype)
        np.multiply(U.real, U.real, out=p)
        p += np.multiply(U.imag, U.imag, out=t)
        out = (self.ST @ p).T
        pool.release(p, t, *taken)
        return out, (psiT, dpsi, mats, saved, U, seq, fold)

    def backward_state(self, G, st, need_x, need_w, need_psi):
        """``G (B, K)`` -> ``gx (B, d)``, ``gw (P,)``, ``gpsi0 (B, N)`` (None where not needed)."""
        fz = self.fz
        psiT, dpsi, mats, saved, ph, seq, fold = st
        pool = self.pool
        gp2 = pool.take(ph.shape, self.rdtype)
        np.matmul(self.S, G.T, out=gp2)
        gp2 *= 2  # (N, B)
        real = not np.iscomplexobj(psiT)
        gpsiT = gx = gw = None
        want_psi = need_psi or (dpsi is not None and need_x)
        # the final states' cotangent; the op loop below carries it back to psi0, in two
        # pooled arrays taken in turn
        bufs = [pool.take(ph.shape, self.cdtype), pool.take(ph.shape, self.cdtype)]
        gU = np.multiply(ph, gp2, out=bufs[0])
        cur = 0
        # carry the cotangent through the first op as well (a folded first layer's angles
        # need it too)
        to_psi = want_psi or (fold is not None and need_w)
        if need_w or to_psi:
            gK = {k: [np.zeros_like(K[0])] * K.shape[0] for k, (K, _) in mats.items()}
            si = len(saved)
            for op in reversed(seq):
                if op[0] == "block":
                    si -= 1
                    _, k, row, start = op
                    a, g = 2**start, 2**k
                    g3 = gU.reshape(a, g, -1)
                    if need_w:
                        gK[k][row] = (g3 @ saved[si].reshape(a, g, -1).conj().transpose(0, 2, 1)).sum(0)
                    if si > 0 or to_psi:
                        cur = 1 - cur
                        np.matmul(mats[k][0][row].conj().T, g3, out=bufs[cur].reshape(a, g, -1))
                        gU = bufs[cur]
                else:
                    _, _, inv, phase_inv = self.mono[id(op[1])]
                    cur = 1 - cur
                    gU = np.take(gU, inv, axis=0, out=bufs[cur])
                    if phase_inv is not None:
                        gU *= phase_inv.conj()[:, None]
            if to_psi:
                gpsiT = gU.real if real else gU
            env = None
            if fold is not None:  # dL/du_i: the cotangent contracted with the other factors
                env = _np_prod_env(gpsiT, fold[1].conj()).conj()  # (n, 2, B): for conj(gpsiT), by
                # conjugating the small factors instead of the state-sized cotangent
            if need_w:
                gsh = np.zeros(len(self.sh_idx), dtype=self.rdtype)
                for k, (_, dK2) in mats.items():
                    nb = dK2.shape[1]
                    gk = np.stack(gK[k]).reshape(nb, -1, 1).conj()
                    # (nb, npar * k, GG) @ (nb, GG, 1): Re sum conj(gK) dK / 2 per angle
                    gA = 0.5 * (dK2.transpose(1, 0, 2) @ gk)[..., 0].real  # (nb, npar * k), p-major
                    gsh[self.idx[k]] = gA.reshape(nb, fz.npar, k).transpose(0, 2, 1).reshape(-1)
                if env is not None:  # the folded gates: dL/da = Re sum env_i (dR_i/da) v_i
                    Rw = fold[0]
                    Wv = np.einsum("ixb,icb->ixc", env, dpsi[0])  # (n, 2, 2)
                    gang = 0.5 * np.einsum("ixc,ixcp->ip", Wv, Rw[..., 1:]).real  # (n, npar)
                    for _, k, row, start in fz.seq[:fz.n_pre]:
                        rows = self.idx[k].reshape(-1, k, fz.npar)[row]  # (k, npar) table rows
                        gsh[rows.reshape(-1)] = gang[start:start + k].reshape(-1)
                gw = (gsh @ self.sh_scatter)[:self.n_weights]
        if dpsi is not None:
            if need_x:
                if fold is None:
                    gt = _np_prod_grad(gpsiT, *dpsi)  # (n, B): dL/dt_i
                else:  # du_i/dt_i = R_i v_i'
                    gt = np.einsum("ixb,ixb->ib", env, fold[0][..., 0] @ dpsi[1]).real
                gx = gt.T @ self.ry_scatter
            gpsiT = None
        gpsi0 = None if gpsiT is None else np.ascontiguousarray(gpsiT.T)  # not a pooled array
        pool.release(gp2, *bufs)
        return gx, gw, gpsi0


_BLAS = []  # [threadpoolctl controller of numpy's BLAS, or None], looked up on first use


def _blas_threads(N: int, size: int):
    """A context for numpy's BLAS calls on ``N`` amplitudes x ``size`` elements: on
    ``torch.get_num_threads()`` threads for products large enough to be worth threading,
    else on one thread (OpenBLAS's idle workers spin after a threaded call and starve torch's
    own threads on a small machine: the digits demo ran 3x slower).  A no-op below 64
    amplitudes (products too small for OpenBLAS to thread) or without threadpoolctl."""
    if N < 64:
        return contextlib.nullcontext()
    if not _BLAS:
        try:
            import threadpoolctl

            _BLAS.append(threadpoolctl.ThreadpoolController().select(user_api="blas"))
        except Exception:  # pragma: no cover - threadpoolctl missing
            _BLAS.append(None)
    if _BLAS[0] is None:
        return contextlib.nullcontext()
    return _BLAS[0].limit(limits=torch.get_num_threads() if size >= 1 << 18 else 1)


class _NumpyFusedFn(torch.autograd.Function):
    """:class:`_FusedFn` computed by :class:`_NumpyFused` (CPU).  ``stacked``: ``x (G, B, d)``,
    ``w (G, P)``, ``psi0 (G, B, N)`` -> ``(G, B, K)`` (the U variant); else one copy, ``x (B, d)``,
    ``w (P,)``, ``psi0 (B, N)`` -> ``(B, K)`` (either variant)."""

    @staticmethod
    def forward(ctx, small, stacked, x, w, psi0):
        k = small.np_fused
        B = x.shape[-2]
        xn, wn = x.detach().numpy(), w.detach().numpy()
        pn = None if psi0 is None else psi0.detach().numpy()
        state = not stacked and k.use_states(B)
        G = w.shape[0] if stacked else 1
        size = (k.N, k.N * B * G)
        with _blas_threads(*size):
            if state:
                out, st = k.forward_state(xn, wn, pn)
            elif stacked:
                out, st = k.forward_u(xn, wn, pn)
            else:
                out, st = k.forward_u(xn[None], wn[None], None if pn is None else pn[None])
                out = out[0]
        ctx.k, ctx.st, ctx.size, ctx.variant = k, st, size, "state" if state else "stacked" if stacked else "u"
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, G):
        need_x, need_w, need_psi = ctx.needs_input_grad[2:5]
        g = G.detach().contiguous().numpy()
        with _blas_threads(*ctx.size):
            if ctx.variant == "state":
                grads = ctx.k.backward_state(g, ctx.st, need_x, need_w, need_psi)
            elif ctx.variant == "stacked":
                grads = ctx.k.backward_u(g, ctx.st, need_x, need_w, need_psi)
            else:
                grads = [None if a is None else a[0] for a in ctx.k.backward_u(g[None], ctx.st, need_x, need_w, need_psi)]
        t = lambda a, need: torch.from_numpy(np.ascontiguousarray(a)) if need and a is not None else None  # noqa: E731
        gx, gw, gpsi0 = grads
        return None, None, t(gx, need_x), t(gw, need_w), t(gpsi0, need_psi)
