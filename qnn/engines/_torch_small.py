"""The torch engine's small-register path (``mode="small"``): a circuit in a handful of fused ops.

For a few qubits the cost of the other paths is per-operation overhead (PyTorch dispatch and
autograd nodes), not arithmetic.  This path needs every gate after the initial state to be
shared by the batch (``plan.unitary_ok``) and a ``<Z>``-only readout; it runs

1. the initial state ``psi0 (B, 2**n)``: the amplitude embedding, the zero state, or the
   product state of the leading single-qubit gates, built in closed form when every wire
   starts with one ``RY`` (then it is real: ``kron_i [cos(t_i / 2), sin(t_i / 2)]``);
2. the weight-only ops applied once to the identity (the plan's fused Kronecker blocks and
   permutations, with the blocked path's hand-written backward), giving ``U (2**n, 2**n)``;
3. one fused readout ``out = |psi0 U^T|^2 S`` with ``S`` the ``2**n x words`` sign matrix of
   the ``<Z>`` words (a final permutation folded into it), whose backward is written out:
   with ``gp = G S^T`` and ``L = gp * phi``, ``d psi0 = 2 L conj(U)`` and ``d U = 2 L^T
   conj(psi0)`` (for a real ``psi0``: one real GEMM each on ``U``'s interleaved real/imag view).

On CPU the closed-form variant runs in numpy (:class:`_NumpyFused`), and once ``2**n >= B``
(``state_ratio``) it applies the same fused blocks to the ``(2**n, B)`` states instead of the
identity: the readout is then ``|psi|^2 S`` and the backward carries the states' cotangent
back through the blocks (saved inputs) to ``psi0``; the RY product state's input gradient is
contracted as a tree (:func:`_np_prod_grad`) instead of building ``n`` derivative states.

Exact (the same arithmetic as the other paths, in the requested dtype).  The slow reference is
the ``gates`` path (one op per gate, autograd), see ``tests/engines/test_torch_small.py``.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from qnn.engines._amplitude import amplitude_states
from qnn.engines._torch_plan import Chains, Group, sign_matrix

# rotations whose every angle enters as exp(-i t P / 2): dR/dt = R(t + pi) / 2 exactly
_SHIFTABLE = {"RX", "RY", "RZ", "Rot"}


class _FusedReadout(torch.autograd.Function):
    """``out (B, K) = |psi0 @ U^T|^2 @ S`` with a hand-written backward.

    ``psi0 (B, N)`` real or complex, ``U (N, N)`` complex, ``S (N, K)`` real (constant)."""

    @staticmethod
    def forward(ctx, psi0, U, S):
        out, aux = _readout_fwd(psi0, U, S)
        ctx.aux = aux
        ctx.save_for_backward(psi0, S)
        return out

    @staticmethod
    def backward(ctx, G):
        psi0, S = ctx.saved_tensors
        gpsi0, gU = _readout_bwd(G, psi0, ctx.aux, S, ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return gpsi0, gU, None


class _Fused:
    """The closed-form variant's plan: every op after the initial state is a permutation
    (``MonoOp``) or a Kronecker block whose per-wire chain is one rotation, all of one kind
    (``Rot`` for ``StronglyEntanglingLayers``, ``RX``/``RY``/``RZ`` for basic layers).

    Each block's matrix *and its derivative w.r.t. every angle* come from one batched
    Kronecker product: a rotation's derivative is ``dR/dt = R(t + pi) / 2`` exactly, so
    ``dK/dt`` is the kron with that one factor shifted.  With ``V = 1 + npar * k`` variants per
    block (the block itself, then each (parameter, wire) shifted) the forward builds
    ``(V, blocks, 2**k, 2**k)`` in ``k - 1`` batched steps, and the backward only contracts each
    block's cotangent with its derivative matrices."""

    def __init__(self, runner, ops, mats_1q, kron, pre_chunks=()):
        self.mats_1q, self.kron = mats_1q, kron
        self.name = None
        self.seq = []  # ("block", k, row in the k-stack, start wire) | ("mono", MonoOp)
        self.n_pre = len(pre_chunks)  # the first n_pre blocks: the product state's trailing gates
        idx: dict = {}  # k -> angle rows (shared table), (block, wire, param) order
        items = [(start, ch) for start, ch in pre_chunks] + [None if op.__class__.__name__ == "MonoOp" else op
                                                              for op in ops]
        for it in items:
            if it is not None and not isinstance(it, tuple) and it.__class__.__name__ != "BlockOp":
                raise ValueError("not fusable")
            if it is None:
                continue
            start, ch = it if isinstance(it, tuple) else (it.start, it.chains)
            if ch.per_sample or len(ch.steps) != 1 or len(ch.steps[0]) != 1:
                raise ValueError("not fusable")
            grp, pos = ch.steps[0][0]
            if grp.name not in _SHIFTABLE or pos != list(range(ch.k)) or grp.per_sample or grp.npar == 0:
                raise ValueError("not fusable")
            if self.name not in (None, grp.name):
                raise ValueError("not fusable")
            self.name, self.npar = grp.name, grp.npar
        if self.name is None:
            raise ValueError("not fusable")
        for it, op in zip(items, [None] * len(pre_chunks) + list(ops)):
            if it is None:
                self.seq.append(("mono", op))
                continue
            start, ch = it if isinstance(it, tuple) else (it.start, it.chains)
            grp = ch.steps[0][0][0]
            rows = idx.setdefault(ch.k, [])
            self.seq.append(("block", ch.k, len(rows) // (ch.k * self.npar), start))
            rows.extend(range(grp.start, grp.stop))
        dev = runner.device
        E = 1 + self.npar
        self.idx, self.sel = {}, {}
        for k, rows in idx.items():
            self.idx[k] = torch.tensor(rows, dtype=torch.long, device=dev)
            # variant v's factor on wire i: row sel[v, i] * k + i of the (E * k) rotations
            sel = np.zeros((1 + self.npar * k, k), dtype=np.int64)
            for p in range(self.npar):
                for i in range(k):
                    sel[1 + p * k + i, i] = 1 + p
            self.sel[k] = torch.as_tensor((sel * k + np.arange(k)).reshape(-1), device=dev)
        shift = torch.zeros(E, 1, 1, self.npar, dtype=runner.rdtype, device=dev)
        for p in range(self.npar):
            shift[1 + p, 0, 0, p] = math.pi
        self.shift = shift

    def matrices(self, sh, cdtype, rdtype, device):
        """``{k: (K (blocks, 2**k, 2**k), 2 dK (npar, k, blocks, 2**k, 2**k))}``."""
        out = {}
        for k, idx in self.idx.items():
            A = sh.index_select(0, idx).view(-1, k, self.npar).transpose(0, 1)  # (k, nb, npar)
            nb = A.shape[1]
            R = self.mats_1q(self.name, A + self.shift, nb, cdtype, rdtype, device, (1 + self.npar, k))
            F = R.reshape(-1, nb, 2, 2).index_select(0, self.sel[k]).view(-1, k, nb, 2, 2)
            Kv = self.kron(F.transpose(1, 2))  # (V, nb, 2**k, 2**k)
            out[k] = (Kv[0], Kv[1:].view(self.npar, k, nb, 2**k, 2**k))
        return out


def _apply_rows(U: torch.Tensor, K: torch.Tensor, start: int, k: int) -> torch.Tensor:
    """``U (N, M)`` with the ``2**k`` block ``K`` on wires ``[start, start + k)`` (rows)."""
    a, G = 2**start, 2**k
    if a == 1:
        return (K @ U.view(G, -1)).view(U.shape)
    return torch.bmm(K.expand(a, G, G), U.view(a, G, -1)).view(U.shape)


def _grad_rows(G: torch.Tensor, X: torch.Tensor, start: int, k: int) -> torch.Tensor:
    """Cotangent of ``K`` for ``Y = (I x K x I) X``: ``sum G X^H`` over the other indices."""
    a, g = 2**start, 2**k
    if a == 1:
        return G.view(g, -1) @ X.view(g, -1).conj().transpose(0, 1)
    return torch.bmm(G.view(a, g, -1), X.view(a, g, -1).conj().transpose(1, 2)).sum(0)


class _FusedFn(torch.autograd.Function):
    """The whole weight part and the readout in one node: shared angles ``sh`` and the
    initial state ``psi0 (B, N)`` -> ``out (B, K)``, with the backward written out."""

    @staticmethod
    def forward(ctx, small, x, w, psi0):
        runner = small.runner
        fz = small.fused
        with torch.no_grad():
            src = torch.cat([w, runner.consts]) if len(runner.consts) else w
            sh = src.index_select(0, runner.sh_idx) * runner.sh_scale + runner.sh_off
            dpsi = None
            if psi0 is None:  # RY product state and its derivatives, in closed form
                psi0, dpsi = small.ry_states(x)
            mats = fz.matrices(sh, runner.cdtype, runner.rdtype, runner.device)
            U = small.eye
            saved = []
            for op in fz.seq:
                if op[0] == "block":
                    _, k, row, start = op
                    saved.append(U)
                    U = _apply_rows(U, mats[k][0][row], start, k)
                else:
                    src_i, phase, _, _ = runner.mono(op[1])
                    U = U.index_select(0, src_i)
                    if phase is not None:
                        U = U * phase.unsqueeze(1)
            out, aux = _readout_fwd(psi0, U, small.S)
        ctx.small, ctx.mats, ctx.saved, ctx.aux, ctx.dpsi = small, mats, saved, aux, dpsi
        ctx.n_src, ctx.xshape = src.shape[0], x.shape
        ctx.save_for_backward(psi0)
        return out

    @staticmethod
    def backward(ctx, G):
        small = ctx.small
        runner = small.runner
        fz = small.fused
        (psi0,) = ctx.saved_tensors
        need_x, need_w, need_psi = ctx.needs_input_grad[1:4]
        need_psi0 = need_psi or (ctx.dpsi is not None and need_x)
        gpsi0, gU = _readout_bwd(G, psi0, ctx.aux, small.S, need_psi0, need_w)
        gx = gw = None
        if ctx.dpsi is not None:
            if need_x:
                lo_idx, scale = small.ry_map
                gt = (ctx.dpsi * gpsi0).sum(-1)  # (n, B): dL/dt_i
                gx = torch.zeros(ctx.xshape, dtype=runner.rdtype, device=runner.device)
                gx.index_add_(1, lo_idx, (gt * scale.unsqueeze(1)).transpose(0, 1))
            gpsi0 = None
        if need_w:
            mats = ctx.mats
            gK = {k: [None] * K.shape[0] for k, (K, _) in mats.items()}
            saved = ctx.saved
            si = len(saved)
            for op in reversed(fz.seq):
                if op[0] == "block":
                    si -= 1
                    _, k, row, start = op
                    gK[k][row] = _grad_rows(gU, saved[si], start, k)
                    if si > 0:
                        gU = _apply_rows(gU, mats[k][0][row].conj().transpose(0, 1), start, k)
                else:
                    _, _, inv, phase_inv = runner.mono(op[1])
                    gU = gU.index_select(0, inv)
                    if phase_inv is not None:
                        gU = gU * phase_inv.conj().unsqueeze(1)
            gsh = torch.zeros(len(runner.sh_idx), dtype=runner.rdtype, device=runner.device)
            for k, (_, dK2) in mats.items():
                # dL/dt = Re sum conj(gK) dK/dt, with dK/dt = dK2 / 2
                g = torch.stack(gK[k]).conj()
                gA = (dK2 * g).real.sum((-1, -2)).mul_(0.5)  # (npar, k, nb)
                gsh.index_add_(0, fz.idx[k], gA.permute(2, 1, 0).reshape(-1))
            gsrc = torch.zeros(ctx.n_src, dtype=runner.rdtype, device=runner.device)
            gsrc.index_add_(0, runner.sh_idx, gsh * runner.sh_scale)
            gw = gsrc[:runner.plan.table.n_weights]
        return None, gx, gw, gpsi0


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
    few qubits)."""

    def __init__(self, small):
        runner = small.runner
        fz = small.fused
        self.small, self.fz = small, fz
        self.cdtype = np.complex128 if runner.cdtype == torch.complex128 else np.complex64
        self.rdtype = np.float64 if self.cdtype == np.complex128 else np.float32
        c = lambda t: t.detach().cpu().numpy()  # noqa: E731
        self.sh_idx, self.sh_scale, self.sh_off = c(runner.sh_idx), c(runner.sh_scale), c(runner.sh_off)
        self.consts = c(runner.consts)
        self.n_weights = runner.plan.table.n_weights
        self.idx = {k: c(v) for k, v in fz.idx.items()}
        self.sel = {k: c(v) for k, v in fz.sel.items()}
        self.shift = c(fz.shift).reshape(1 + fz.npar, fz.npar).T.reshape(fz.npar, 1 + fz.npar, 1, 1)
        self.S = c(small.S)
        self.ST = np.ascontiguousarray(self.S.T)
        self.N = small.N
        self._eye = None
        self.mono = {}
        for op in fz.seq:
            if op[0] == "mono":
                self.mono[id(op[1])] = tuple(None if a is None else c(a) for a in runner.mono(op[1]))
        self.ry = None
        if small.ry_map is not None:
            idx, scale = small.ry_map
            self.ry = (c(idx), c(scale), c(small.ry_off), c(small.ry_sel))

    def forward(self, x, w, psi0):
        """``psi0``: ``(B, N)`` or None (the RY product state, built here)."""
        fz = self.fz
        N = self.N
        src = np.concatenate([w, self.consts]) if len(self.consts) else w
        sh = src[self.sh_idx] * self.sh_scale + self.sh_off
        dpsi = None
        if psi0 is None:
            idx, scale, off, _ = self.ry
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
            R = _np_rot(fz.name, A[:, None] + self.shift, self.cdtype)  # (2, 2, E, k, nb)
            rots[k] = R
            F = R.reshape(2, 2, -1, nb)[:, :, self.sel[k]].reshape(2, 2, -1, k, nb).transpose(3, 0, 1, 2, 4)
            Kv = np.ascontiguousarray(_np_kron(F).transpose(2, 3, 0, 1))  # (V, nb, G, G)
            mats[k] = (Kv[0], Kv[1:].reshape(fz.npar * k, nb, -1))
        # the state variant runs the ops on the (N, B) states themselves: cheaper than building
        # U (N x N) and reading it out with three N x N x B products once N is not small
        # against B
        state = N * self.small.state_ratio >= x.shape[0]  # ops on the states, else on U
        seq, fold = fz.seq, None
        if state and dpsi is not None and fz.n_pre:
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
        if not state and self._eye is None:
            self._eye = np.eye(N, dtype=self.cdtype)
        U = psiT.astype(self.cdtype, copy=False) if state else self._eye
        saved = []
        for op in seq:
            if op[0] == "block":
                _, k, row, start = op
                saved.append(U)
                U = (mats[k][0][row] @ U.reshape(2**start, 2**k, -1)).reshape(U.shape)
            else:
                srci, phase, _, _ = self.mono[id(op[1])]
                U = U[srci]
                if phase is not None:
                    U *= phase[:, None]
        if state:
            M, ph = None, U
            p = np.square(U.real) + np.square(U.imag)
        elif not np.iscomplexobj(psiT):
            M = np.concatenate([U.real, U.imag])  # (2N, N)
            ph = M @ psiT  # (2N, B): Re phi over Im phi
            p = np.square(ph[:N])
            p += np.square(ph[N:])
        else:
            M = U
            ph = U @ psiT
            p = np.square(ph.real) + np.square(ph.imag)
        out = (self.ST @ p).T
        return out, (psiT, dpsi, mats, saved, M, ph, src.shape[0], x.shape, state, seq, fold)

    def backward(self, G, st, need_x, need_w, need_psi):
        fz = self.fz
        N = self.N
        psiT, dpsi, mats, saved, M, ph, n_src, xshape, state, seq, fold = st
        gp2 = (self.S @ G.T) * 2  # (N, B)
        real = not np.iscomplexobj(psiT)
        gpsiT = gU = gx = gw = None
        want_psi = need_psi or (dpsi is not None and need_x)
        if state:  # the final states' cotangent; the op loop below carries it back to psi0
            gU = ph * gp2
        elif real:
            D = ph * np.concatenate([gp2, gp2])  # dL/d(Re phi; Im phi), (2N, B)
            if want_psi:
                gpsiT = M.T @ D
            if need_w:
                gM = D @ psiT.T
                gU = gM[:N] + 1j * gM[N:]
        else:
            lam = ph * gp2
            if want_psi:
                gpsiT = M.conj().T @ lam
            if need_w:
                gU = lam @ psiT.conj().T
        # carry the cotangent through the first op as well (a folded first layer's angles
        # need it too)
        to_psi = state and (want_psi or (fold is not None and need_w))
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
                        gU = (mats[k][0][row].conj().T @ g3).reshape(gU.shape)
                else:
                    _, _, inv, phase_inv = self.mono[id(op[1])]
                    gU = gU[inv]
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
                gsrc = np.bincount(self.sh_idx, weights=gsh * self.sh_scale, minlength=n_src).astype(self.rdtype)
                gw = gsrc[:self.n_weights]
        if dpsi is not None:
            if need_x:
                idx, scale, _, _ = self.ry
                if fold is None:
                    gt = _np_prod_grad(gpsiT, *dpsi)  # (n, B): dL/dt_i
                else:  # du_i/dt_i = R_i v_i'
                    gt = np.einsum("ixb,ixb->ib", env, fold[0][..., 0] @ dpsi[1]).real
                gx = np.zeros(xshape, dtype=self.rdtype)
                np.add.at(gx, (slice(None), idx), (gt * scale[:, None]).T)
            gpsiT = None
        return gx, gw, None if gpsiT is None else gpsiT.T


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
    """:class:`_FusedFn` computed by :class:`_NumpyFused` (CPU)."""

    @staticmethod
    def forward(ctx, small, x, w, psi0):
        k = small.np_fused
        with _blas_threads(k.N, k.N * x.shape[0]):
            out, st = k.forward(x.detach().numpy(), w.detach().numpy(),
                                None if psi0 is None else psi0.detach().numpy())
        ctx.k, ctx.st, ctx.size = k, st, (k.N, k.N * x.shape[0])
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, G):
        need_x, need_w, need_psi = ctx.needs_input_grad[1:4]
        with _blas_threads(*ctx.size):
            gx, gw, gpsi0 = ctx.k.backward(G.detach().contiguous().numpy(), ctx.st, need_x, need_w, need_psi)
        t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        return None, t(gx) if need_x else None, t(gw) if need_w else None, t(gpsi0) if need_psi else None


def _readout_fwd(psi0, U, S):
    B, N = psi0.shape
    if not psi0.is_complex():
        W = torch.view_as_real(U.transpose(0, 1).contiguous()).reshape(N, 2 * N)
        phi = (psi0 @ W).view(B, N, 2)
        return phi.square().sum(-1) @ S, (True, W, phi)
    phi = psi0 @ U.transpose(0, 1)
    return torch.view_as_real(phi).square().sum(-1) @ S, (False, U, phi)


def _readout_bwd(G, psi0, aux, S, need_psi, need_u):
    real, M, phi = aux
    gp2 = (G @ S.transpose(0, 1)).mul_(2)  # 2 dL/dp, (B, N)
    gpsi0 = gU = None
    if real:
        B, N = psi0.shape
        D = (phi * gp2.unsqueeze(-1)).view(B, 2 * N)  # dL/d(Re phi, Im phi), interleaved
        if need_psi:
            gpsi0 = D @ M.transpose(0, 1)
        if need_u:
            gU = torch.view_as_complex((psi0.transpose(0, 1) @ D).view(N, N, 2)).transpose(0, 1)
    else:
        lam = phi * gp2  # torch's convention: grad = 2 dL/d conj(z)
        if need_psi:
            gpsi0 = lam @ M.conj()
        if need_u:
            gU = lam.transpose(0, 1) @ psi0.conj()
    return gpsi0, gU


class SmallRunner:
    """The small path's constant tensors for one (plan, device, dtype) runner."""

    def __init__(self, runner, plan_fn, mats_1q, kron, block_size: int):
        plan = runner.plan
        n = plan.n
        self.runner = runner
        self.plan_fn = plan_fn
        self.ops = runner.exec_ops
        masks = [m for _, m in plan.z_cols]
        if runner.fold:  # the final permutation, not in exec_ops, folded into the signs
            folded = [plan.ops[-1].fold_z(m) for m in masks]
            masks, signs = [m for m, _ in folded], [sg for _, sg in folded]
        else:
            signs = [1] * len(masks)
        self.S = sign_matrix(masks, signs, n, runner.device, runner.rdtype)
        self.N = 2**n
        self._eye = None  # the identity (U variant), built on first use
        # closed-form real product state when every wire starts with one RY (a following shared
        # single-gate step on every wire, e.g. the first layer's Rot, goes into U instead)
        self.ry_cols = None
        pre = None
        if plan.init == "product":
            ch = plan.init_chains
            first = ch.steps[0] if ch.steps else []
            if (len(first) == 1 and first[0][0].name == "RY" and first[0][0].per_sample
                    and first[0][1] == list(range(n))):
                rest = ch.steps[1:]
                if len(rest) <= 1:
                    self.ry_cols = (first[0][0].start, first[0][0].stop)
                    if rest:
                        pre = Chains(n, rest, False)
        try:
            chunks = []
            if pre is not None:  # split like the plan's blocks
                grp = pre.steps[0][0][0] if len(pre.steps[0]) == 1 else None
                if grp is None:
                    raise ValueError("not fusable")
                for lo in range(0, n, block_size):
                    k = min(block_size, n - lo)
                    g = Group(grp.name, False, grp.start + lo * grp.npar, grp.start + (lo + k) * grp.npar, k)
                    chunks.append((lo, Chains(k, [[(g, list(range(k)))]], False)))
            self.fused = _Fused(runner, self.ops, mats_1q, kron, chunks) if (self.ops or chunks) else None
        except ValueError:
            self.fused = None
        if self.fused is None and pre is not None:
            self.ry_cols = None  # the generic variant takes the full product state
        # the RY angles read straight from the inputs: closed-form state and derivatives
        self.ry_map = None
        self.np_fused = None
        self.use_numpy = True  # CPU: the numpy twin of the fused ops (tests compare both)
        self.state_ratio = 1  # numpy twin: ops on the states when 2**n >= B (tests force both)
        if self.fused is not None and self.ry_cols is not None:
            t = plan.table
            lo, hi = self.ry_cols
            idx = t.ps_idx[lo:hi]
            if all(i < t.n_inputs for i in idx):
                dev = runner.device
                self.ry_map = (torch.tensor(idx, dtype=torch.long, device=dev),
                               torch.tensor(t.ps_scale[lo:hi], dtype=runner.rdtype, device=dev))
                self.ry_off = torch.tensor(t.ps_off[lo:hi], dtype=runner.rdtype, device=dev)
                sel = np.zeros((1 + n, n), dtype=np.int64)
                for i in range(n):
                    sel[1 + i, i] = 1
                self.ry_sel = torch.as_tensor((sel * n + np.arange(n)).reshape(-1), device=dev)

    @property
    def eye(self) -> torch.Tensor:
        if self._eye is None:
            self._eye = torch.eye(self.N, dtype=self.runner.cdtype, device=self.runner.device)
        return self._eye

    def ry_states(self, x):
        """The RY product state ``(B, 2**n)`` and its derivatives w.r.t. each wire's angle
        ``(n, B, 2**n)``: variant ``1 + i`` has wire ``i``'s factor ``[cos, sin](t / 2)`` replaced
        by its derivative ``[cos, sin]((t + pi) / 2) / 2``."""
        idx, scale = self.ry_map
        B = x.shape[0]
        n = idx.shape[0]
        h = ((x.index_select(1, idx) * scale + self.ry_off) * 0.5).transpose(0, 1)  # (n, B)
        h2 = torch.stack([h, h + (math.pi / 2)])  # (2, n, B)
        V = torch.stack([torch.cos(h2), torch.sin(h2)], -1)  # (2, n, B, 2)
        V[1] *= 0.5
        F = V.view(2 * n, B, 2).index_select(0, self.ry_sel).view(1 + n, n, B, 2)
        psi = F[:, 0]
        for i in range(1, n):
            psi = (psi.unsqueeze(-1) * F[:, i].unsqueeze(-2)).view(1 + n, B, -1)
        return psi[0], psi[1:]

    def init_state(self, inputs, sh, ps, B):
        """``psi0 (B, 2**n)``: real for the amplitude embedding, the zero state and an RY product."""
        runner = self.runner
        plan = runner.plan
        n = plan.n
        if plan.init == "amplitude":
            return amplitude_states("TorchEngine", runner.plan_state_prep, n, inputs).to(runner.rdtype)
        if plan.init == "zero":
            psi = torch.zeros(1, self.N, dtype=runner.rdtype, device=runner.device)
            psi[0, 0] = 1
            return psi.expand(B, -1)
        if self.ry_cols is not None:
            lo, hi = self.ry_cols
            t = ps[:, lo:hi] * 0.5
            V = torch.stack([torch.cos(t), torch.sin(t)], -1)  # (B, n, 2)
            psi = V[:, 0]
            for i in range(1, n):
                psi = (psi.unsqueeze(-1) * V[:, i].unsqueeze(1)).reshape(B, -1)
            return psi
        return runner.init_state(inputs, sh, ps, B).transpose(0, 1)

    def run(self, inputs, weights, B):
        """``(B, n_outputs)`` for real ``inputs (B, n_inputs)`` and ``weights``."""
        runner = self.runner
        fn = _FusedFn
        if self.fused is not None and runner.device.type == "cpu" and self.use_numpy:
            if self.np_fused is None:
                self.np_fused = _NumpyFused(self)
            fn = _NumpyFusedFn
        if self.fused is not None and self.ry_map is not None:
            return fn.apply(self, inputs, weights, None)
        if self.fused is not None and runner.plan.init in ("amplitude", "zero"):
            return fn.apply(self, inputs, weights, self.init_state(inputs, None, None, B))
        sh, ps = runner.angles(inputs, weights)
        psi0 = self.init_state(inputs, sh, ps, B)
        if self.fused is not None:
            return fn.apply(self, inputs, weights, psi0)
        if self.ops:
            mats = runner.op_matrices(self.ops, sh, ps, B)
            U = self.plan_fn.apply(runner, True, self.eye, *mats)
        else:
            U = self.eye
        return _FusedReadout.apply(psi0, U, self.S)
