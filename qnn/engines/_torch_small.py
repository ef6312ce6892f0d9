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

On CPU the closed-form variant runs in numpy (:mod:`._small_numpy`): on ``U`` (one Kronecker
product per block) while ``2**n < B``, on the ``(2**n, B)`` states once ``2**n >= B``
(``state_ratio``).
:meth:`SmallRunner.run_many` runs ``G`` copies of the circuit (their own weights and inputs)
in the numpy U variant's calls at once.

Exact (the same arithmetic as the other paths, in the requested dtype).  The slow reference is
the ``gates`` path (one op per gate, autograd), see ``tests/engines/test_torch_small.py``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from qnn.engines._amplitude import amplitude_states
from qnn.engines._small_numpy import _NumpyFused, _NumpyFusedFn
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

    def _numpy(self) -> bool:
        """Whether the closed-form variant runs in numpy here (CPU), building its tables."""
        if self.fused is None or self.runner.device.type != "cpu" or not self.use_numpy:
            return False
        if self.np_fused is None:
            self.np_fused = _NumpyFused(self)
        return True

    def run(self, inputs, weights, B):
        """``(B, n_outputs)`` for real ``inputs (B, n_inputs)`` and ``weights``."""
        runner = self.runner
        numpy = self._numpy()
        if numpy:
            fn = lambda *a: _NumpyFusedFn.apply(self, False, *a)  # noqa: E731
        else:
            fn = lambda *a: _FusedFn.apply(self, *a)  # noqa: E731
        if self.fused is not None and self.ry_map is not None:
            return fn(inputs, weights, None)
        if self.fused is not None and runner.plan.init in ("amplitude", "zero"):
            if runner.plan.init == "amplitude" and numpy and not self.np_fused.use_states(B):
                return fn(inputs, weights, None)  # the numpy U variant embeds the inputs itself
            return fn(inputs, weights, self.init_state(inputs, None, None, B))
        sh, ps = runner.angles(inputs, weights)
        psi0 = self.init_state(inputs, sh, ps, B)
        if self.fused is not None:
            return fn(inputs, weights, psi0)
        if self.ops:
            mats = runner.op_matrices(self.ops, sh, ps, B)
            U = self.plan_fn.apply(runner, True, self.eye, *mats)
        else:
            U = self.eye
        return _FusedReadout.apply(psi0, U, self.S)

    def can_run_many(self) -> bool:
        """Whether :meth:`run_many` runs here: the closed-form variant in numpy (CPU)."""
        return self._numpy()

    def run_many(self, inputs, weights):
        """``G`` copies at once in the numpy U variant: ``inputs (G, B, n_inputs)``, ``weights
        (G, n_weights)`` -> ``(G, B, n_outputs)`` (only where :meth:`can_run_many`)."""
        G, B = inputs.shape[:2]
        psi0 = None
        if self.ry_map is not None or self.runner.plan.init == "amplitude":
            pass  # the RY product state or the amplitude embedding is built in numpy
        elif self.runner.plan.init == "zero":
            psi0 = self.init_state(inputs.reshape(G * B, -1), None, None, G * B).reshape(G, B, self.N)
        else:  # a product state of other gates: torch ops per copy
            psi0 = torch.stack([self.init_state(inputs[g], *self.runner.angles(inputs[g], weights[g]), B)
                                for g in range(G)])
        return _NumpyFusedFn.apply(self, True, inputs, weights, psi0)
