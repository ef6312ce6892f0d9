"""The torch engine's exact matrix-product-state path (``mode="mps"``).

A shallow circuit on a product initial state holds little entanglement, and its ``<P>``
readouts need no ``2**n`` state at all.  This path keeps the state as a matrix product state
``A_w (b_w, D_l, 2, D_r)`` (one tensor per wire, ``b_w`` = 1 until an input-bound gate
touches the wire) and never truncates, so it is *exact*: the bond dimensions only grow.

* single-qubit gates: consecutive ones on a wire are multiplied into one 2x2 (a vector while
  the wire is still in a product state) and applied to that wire's tensor;
* a two-qubit gate ``G = sum_a L_a (x) R_a`` (its operator-Schmidt form: a controlled gate
  is ``|0><0| (x) 1 + |1><1| (x) V``, rank 2; ``SWAP = sum_ij |i><j| (x) |j><i|``, rank 4)
  applies ``L_a`` to the left wire and ``R_a`` to the right one and carries the index ``a``
  on every bond between them, so those bonds grow by the rank (a CNOT ring of range 1 gives
  bond dimension 2 on the chain and 4 with its wrap-around gate);
* exact compression: a bond wider than twice a neighbouring bond carries no more than that
  (a matrix's rank is at most its smaller side), so the two tensors are multiplied into one
  side and the other keeps an isometry: bonds never pass ``min(2**w, 2**(n - w))``, nothing
  is truncated, no SVD is needed;
* trailing gates that map ``Z`` words to signed ``Z`` words (X, Y, CNOT, SWAP:
  :meth:`MonoOp.fold_z`) or commute with them (Z, RZ, PhaseShift, CZ, CRZ) are folded into
  the readout and not run, like the state-vector paths' final permutation;
* the readout (Pauli words and ``probs`` projectors) shares work between words: each word is
  split at a bond into a prefix and a suffix, whose environments ``E (b, K, D_bra, D_ket)``
  grow as two tries from the ends, ``E' = sum E[l', l] A[l, s, r] P[s', s] conj(A[l', s',
  r'])`` per wire; a word is its two environments contracted at the split.  On the CPU with
  numba the readout and its backward run in two compiled calls (:mod:`._mps_kernel`, batch
  last), instead of ~130 batched products of tiny matrices that torch runs one BLAS call per
  sample; the torch readout (:meth:`MPSRunner._readout`'s other branch) is their reference.

The state's tensors are plain torch ops, differentiated by autograd.  The cost is polynomial
in ``n`` and in the bond dimensions (:attr:`MPSProgram.flops`; two strongly entangling layers
at 16 qubits: ~14k complex multiply-adds per sample, ~80x fewer than one state sweep per
wire), but at a few qubits its few hundred small ops cost more than a state vector; deep or
all-to-all circuits saturate the bonds.  The engine's ``auto`` weighs both.  The slow
references are the dense reference and the one-op-per-gate path (``tests/engines/test_mps.py``,
with either readout).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from qnn.circuit import Circuit
from qnn.engines import _mps_kernel
from qnn.engines._torch_plan import (
    CONST_MATS,
    CONTROLLED,
    MONOMIAL,
    AngleTable,
    MonoOp,
    ParamTable,
    is_per_sample,
    wire_mask,
)

__all__ = ["MPSProgram", "MPSRunner", "kernel_readout"]

TWO_QUBIT = {"CNOT", "CZ", "SWAP", "CRX", "CRY", "CRZ", "MCRY"}
# gates diagonal in the computational basis: they commute with every Z word
_DIAGONAL = {"Z", "RZ", "PhaseShift", "CZ", "CRZ"}
_LOCAL = {"I": CONST_MATS["I"], "X": CONST_MATS["X"], "Y": CONST_MATS["Y"], "Z": CONST_MATS["Z"],
          "0": np.diag([1.0, 0.0]), "1": np.diag([0.0, 1.0])}


def why_not(circuit: Circuit) -> str | None:
    """Why the MPS path cannot run ``circuit`` (None when it can)."""
    if circuit.state_prep is not None:
        return "an amplitude embedding (not a product state)"
    for g in circuit.gates:
        if g.name == "PauliExp" or len(g.wires) > 2 or (len(g.wires) == 2 and g.name not in TWO_QUBIT):
            return f"a {len(g.wires)}-wire {g.name} gate (only one- and two-qubit gates are supported)"
    if not circuit.measurements:
        return "no measurements"
    for m in circuit.measurements:
        if m.kind == "hermitian":
            return "a Hermitian observable (only Pauli words and probabilities are supported)"
    return None


def kernel_readout(device, use_kernel: bool = True) -> bool:
    """Whether an :class:`MPSRunner` on ``device`` runs its readout in the compiled kernels of
    :mod:`._mps_kernel`: on the CPU, with numba available and ``use_kernel``."""
    return bool(use_kernel) and torch.device(device).type == "cpu" and _mps_kernel.available()


class MPSProgram:
    """A circuit compiled for the MPS path (pure Python: no tensor is built).

    Attributes: ``steps`` (the gates that are run), ``words`` (per output, one Pauli letter per
    wire, after folding), ``signs``, ``bonds`` (the final bond dimensions), ``flops`` (complex
    multiply-adds per sample of one forward), ``items`` (tensor elements kept for the backward,
    per sample)."""

    def __init__(self, circuit: Circuit):
        reason = why_not(circuit)
        if reason is not None:
            raise ValueError(f"TorchEngine: mode 'mps' cannot run this circuit: it has {reason}")
        n = circuit.n_qubits
        self.n = n
        words = []  # per output, one operator per wire: I X Y Z, or 0 / 1 (a projector)
        for m in circuit.measurements:
            if m.kind == "probs":
                k = len(m.wires)
                for j in range(2**k):
                    w = ["I"] * n
                    for t, wire in enumerate(m.wires):
                        w[wire] = str(j >> (k - 1 - t) & 1)
                    words.append(w)
                continue
            w = ["I"] * n
            for wire, p in zip(m.wires, m.pauli):
                w[wire] = p
            words.append(w)
        signs = [1] * len(words)
        gates = list(circuit.gates)
        if all(set(w) <= {"I", "Z"} for w in words):
            # fold the trailing gates that keep Z words Z words: a diagonal gate commutes with
            # every Z word (dropped), a run of monomial ones maps each to a signed Z word
            k = len(gates)
            while k and (gates[k - 1].name in _DIAGONAL or gates[k - 1].name in MONOMIAL):
                k -= 1
            run = [g for g in gates[k:] if g.name in MONOMIAL]
            if run:
                op = MonoOp.of(run, n)
                folded = [op.fold_z(wire_mask([i for i, x in enumerate(w) if x == "Z"], n)) for w in words]
                words = [["Z" if m >> (n - 1 - i) & 1 else "I" for i in range(n)] for m, _ in folded]
                signs = [sg for _, sg in folded]
            gates = gates[:k]
        self.words, self.signs = ["".join(w) for w in words], signs
        self._readout_plan()
        # angles: one matrix group per (rotation, per-sample), registered group by group so
        # that each group is one contiguous slice of the shared / per-sample table
        self.table = ParamTable(circuit.n_inputs, circuit.n_weights)
        members: dict = {}
        self.steps = []  # ("1q", wire, slot) | ("2q", name, (first, second), slot or None)
        for g in gates:
            rot = g.name if len(g.wires) == 1 else CONTROLLED.get(g.name)
            slot = None
            if rot is not None and g.name not in CONST_MATS:
                key = (rot, is_per_sample(g))
                lst = members.setdefault(key, [])
                slot = (key, len(lst))
                lst.append(g)
            elif rot is not None:  # a constant single-qubit gate
                slot = (("const", g.name), 0)
            if len(g.wires) == 1:
                self.steps.append(("1q", g.wires[0], slot))
            else:
                self.steps.append(("2q", g.name, tuple(g.wires), slot))
        self.groups = {}  # key -> (start, stop, k, npar)
        for key, lst in members.items():
            start = stop = None
            for g in lst:
                s0, s1 = self.table.add(g.params, key[1])
                start = s0 if start is None else start
                stop = s1
            self.groups[key] = (start, stop, len(lst), len(lst[0].params))
        self._shapes()

    def _readout_plan(self):
        """Share the readout between words: each word is split at a bond ``w`` into a prefix
        (wires ``< w``) and a suffix; the left environments of all prefixes form a trie grown
        from the left end, the suffixes' one from the right, and a word is the contraction of
        its two environments at the split.  The splits are chosen to add few trie nodes: from
        two starts (each word's non-identity letters all in its prefix, or all in its suffix),
        each word in turn takes the split adding the fewest nodes to the others' (for the folded words of a CNOT ring, ``Z..ZI..I``, about
        ``3 n`` transfer steps instead of ``n`` per word)."""
        n = self.n
        words = self.words

        def nodes(wd, w):
            return {("L", wd[:d]) for d in range(1, w + 1)} | {("R", wd[n - d:]) for d in range(1, n - w + 1)}

        def total(sp):
            return len(set().union(*(nodes(wd, w) for wd, w in zip(words, sp))))

        def improve(sp):
            # coordinate descent: each word in turn takes the split adding the fewest nodes
            # to those of the other words
            for _ in range(4):
                changed = False
                for i, wd in enumerate(words):
                    others = set().union(*(nodes(x, w) for j, (x, w) in enumerate(zip(words, sp)) if j != i))
                    cost = [len(nodes(wd, w) - others) for w in range(n + 1)]
                    w = min(range(n + 1), key=lambda v: (cost[v], v != sp[i]))
                    changed |= w != sp[i]
                    sp[i] = w
                if not changed:
                    break
            return sp

        # start from the prefixes holding every non-identity letter, or the suffixes
        last = [max([i + 1 for i, x in enumerate(wd) if x != "I"], default=0) for wd in words]
        first = [min([i for i, x in enumerate(wd) if x != "I"], default=n) for wd in words]
        splits = min((improve(list(sp)) for sp in (last, first)), key=total)
        left, right = {""}, {""}
        for wd, w in zip(words, splits):
            left.update(wd[:d] for d in range(1, w + 1))
            right.update(wd[n - d:] for d in range(1, n - w + 1))

        def levels(nodes, key_parent, letter):
            out, index = [], {"": 0}
            for d in range(1, n + 1):
                cur = sorted(x for x in nodes if len(x) == d)
                if not cur:
                    break
                out.append(([index[key_parent(x)] for x in cur], [letter(x) for x in cur]))
                for i, x in enumerate(cur):
                    index[x] = i
            return out, index

        self.left_levels, li = levels(left, lambda x: x[:-1], lambda x: x[-1])
        self.right_levels, ri = levels(right, lambda x: x[1:], lambda x: x[0])
        self.pairs = [(w, li[wd[:w]], ri[wd[w:]]) for wd, w in zip(self.words, splits)]

    def _shapes(self):
        """Walk the steps with bond dimensions only: the compressions, final bonds, cost."""
        n = self.n
        D = [1] * (n + 1)  # D[w]: the bond left of wire w (D[0] = D[n] = 1)
        flops = items = 0

        def site(w):
            return 2 * D[w] * D[w + 1]

        steps = []
        for st in self.steps:
            if st[0] == "1q":
                steps.append(st)
                continue
            name, wires = st[1], st[2]
            lo, hi = min(wires), max(wires)
            r = 4 if name == "SWAP" else 2
            for w in range(lo, hi + 1):
                items += site(w)
            for b in range(lo + 1, hi + 1):
                D[b] *= r
            for w in range(lo, hi + 1):
                flops += 2 * site(w)
            # exact compression: a bond wider than twice a neighbouring bond carries no more
            # than that (the rank of a matrix is at most its smaller side); moving one site's
            # content into its neighbour (a product) leaves an isometry and the narrower bond
            reduce = []
            changed = True
            while changed:
                changed = False
                for b in range(lo + 1, hi + 1):
                    left, right = 2 * D[b - 1], 2 * D[b + 1]
                    if min(left, right) < D[b]:
                        side = "L" if left <= right else "R"
                        flops += D[b - 1] * 2 * D[b] * 2 * D[b + 1]
                        items += D[b - 1] * 4 * D[b + 1]
                        D[b] = min(left, right)
                        reduce.append((side, b))
                        changed = True
            steps.append(st + (tuple(reduce),))
        self.steps = steps
        self.bonds = D[1:n]
        # readout: per trie node, E A (D^2 2 D) and its product with conj(A) (D 2 D^2)
        for levels, sites in ((self.left_levels, range(n)), (self.right_levels, range(n - 1, -1, -1))):
            for (parents, _), w in zip(levels, sites):
                dl, dr, K = D[w], D[w + 1], len(parents)
                flops += K * (dl * dl * 2 * dr + dl * 2 * dr * dr + 4 * dl * dr)
                items += K * (dl * 2 * dr * dl + dr * dr)
        self.flops, self.items = flops, items + sum(2 * D[w] * D[w + 1] for w in range(n))

    @property
    def max_bond(self) -> int:
        return max(self.bonds, default=1)

    def memory_bytes(self, batch: int, itemsize: int) -> int:
        """Upper bound of one forward + backward: the kept tensors, their gradients and a
        temporary of each, for every sample."""
        return 4 * batch * self.items * itemsize + 4 * batch * len(self.words) * itemsize


class MPSRunner:
    """An :class:`MPSProgram`'s tensors on one device and dtype; :meth:`run` is the forward
    (autograd does the backward)."""

    #: run the readout in the compiled kernels of :mod:`._mps_kernel` on the CPU where numba is
    #: available (tests switch it off to run the torch readout, the reference)
    use_kernel = True

    def __init__(self, program: MPSProgram, device, cdtype, rdtype, mats_1q):
        self.p = program
        self.device, self.cdtype, self.rdtype = device, cdtype, rdtype
        self.mats_1q = mats_1q
        self.tab = AngleTable(program.table, device, rdtype)
        c = lambda a: torch.as_tensor(np.asarray(a), dtype=cdtype, device=device)  # noqa: E731
        self.const = {name: c(CONST_MATS[name]) for name in ("H", "X", "Y", "Z", "I")}
        P0, P1 = np.diag([1.0, 0.0]), np.diag([0.0, 1.0])
        self.proj = c(np.stack([P0, P1]))  # (2, 2, 2): the control's terms
        E = np.zeros((4, 2, 2))
        for i in range(2):
            for j in range(2):
                E[2 * i + j, i, j] = 1
        self.swap = (c(E), c(E[[0, 2, 1, 3]]))  # SWAP = sum_ij |i><j| (x) |j><i|
        # readout: per trie level, the parents' index and the nodes' operators: (K, 2, 1)
        # factors when all are diagonal (I, Z, projectors), else (K, 2, 2) matrices

        def level(parents, letters, before):
            same = parents == list(range(before))  # every node of the level before, in order
            idx = None if same else torch.tensor(parents, dtype=torch.long, device=device)
            if set(letters) == {"I"}:
                return idx, None, None
            if set(letters) <= {"I", "Z", "0", "1"}:
                d = np.stack([np.diag(_LOCAL[x]).real for x in letters])
                return idx, torch.as_tensor(d[:, None, :, None], dtype=rdtype, device=device), None
            return idx, None, c(np.stack([_LOCAL[x] for x in letters]))

        self.left, self.right = [
            [level(*lv, len(levels[i - 1][0]) if i else 1) for i, lv in enumerate(levels)]
            for levels in (program.left_levels, program.right_levels)]
        self.signs = torch.tensor(program.signs, dtype=rdtype, device=device)
        self._eyes: dict = {}
        self._table = None  # the kernels' node table, built from the first run's site shapes

    def run(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        p = self.p
        n = p.n
        B = inputs.shape[0]
        sh, ps = self.tab.angles(inputs, weights)
        mats = {}
        for key, (start, stop, k, npar) in p.groups.items():
            name, per_sample = key
            ang = ps[:, start:stop].reshape(B, k, npar) if per_sample else sh[start:stop].reshape(k, npar)
            mats[key] = self.mats_1q(name, ang, k, self.cdtype, self.rdtype, self.device, (B,) if per_sample else ())

        def mat(slot):
            key, j = slot
            if key[0] == "const":
                return self.const[key[1]]
            return mats[key][..., j, :, :]

        A: list = [None] * n  # None: still |0>
        vec: list = [None] * n  # a wire still in a product state: its vector (b?, 2); None: |0>
        pend: list = [None] * n  # a wire's pending single-qubit product (b?, 2, 2)

        def flush(w):
            if A[w] is None:
                v = vec[w]
                if v is None:
                    v = self.const["I"][:, 0]
                vec[w] = None
                A[w] = v.reshape(-1, 1, 2, 1)
                return
            M = pend[w]
            if M is not None:
                pend[w] = None
                A[w] = _mul_site(M, A[w])

        for st in p.steps:
            if st[0] == "1q":
                w, M = st[1], mat(st[2])
                if A[w] is None:  # still a vector: v <- M v
                    v = vec[w]
                    vec[w] = M[..., :, 0] if v is None else (M * v.unsqueeze(-2)).sum(-1)
                else:
                    P = pend[w]
                    pend[w] = M if P is None else (M.unsqueeze(-1) * P.unsqueeze(-3)).sum(-2)
                continue
            name, wires, slot = st[1], st[2], st[3]
            a, b = wires
            lo, hi = min(a, b), max(a, b)
            for w in range(lo, hi + 1):
                flush(w)
            if name in ("CNOT", "CZ"):  # |0><0| x 1 + |1><1| x (X or Z): no products needed
                r = 2
                ctrl, tgt = (A[a], A[b])
                ctrl = _project(ctrl, a < b)
                tgt = _controlled_target(tgt, name, a > b)
                A[a], A[b] = ctrl, tgt
            else:
                first, second = self._terms(name, slot, mats)  # (r, 2, 2) or (b, r, 2, 2) each
                left, right = (first, second) if a < b else (second, first)
                A[lo] = _apply_terms(left, A[lo], True)
                A[hi] = _apply_terms(right, A[hi], False)
                r = left.shape[-3]
            if hi - lo > 1:
                eye = self._eye(r)
                for w in range(lo + 1, hi):
                    T = A[w]
                    bw, dl, _, dr = T.shape
                    A[w] = (T[:, :, None, :, :, None] * eye[:, None, None, :]).reshape(bw, dl * r, 2, dr * r)
            for side, bd in st[4]:
                T1, T2 = A[bd - 1], A[bd]
                b1, dl, _, d = T1.shape
                b2, _, _, dr = T2.shape
                M = T1.reshape(b1, dl * 2, d) @ T2.reshape(b2, d, 2 * dr)  # (b, 2 Dl, 2 Dr)
                if side == "L":
                    A[bd - 1] = self._eye(dl * 2).reshape(1, dl, 2, dl * 2)
                    A[bd] = M.reshape(-1, dl * 2, 2, dr)
                else:
                    A[bd - 1] = M.reshape(-1, dl, 2, 2 * dr)
                    A[bd] = self._eye(2 * dr).reshape(1, 2 * dr, 2, dr)
        for w in range(n):
            flush(w)
        return self._readout(A, B)

    def _eye(self, d):
        hit = self._eyes.get(d)
        if hit is None:
            hit = self._eyes[d] = torch.eye(d, dtype=self.cdtype, device=self.device)
        return hit

    def _terms(self, name, slot, mats):
        """The operator-Schmidt terms of a SWAP or a controlled rotation, in gate-wire order
        (CNOT and CZ take the direct route of :func:`_project` / :func:`_controlled_target`)."""
        if name == "SWAP":
            return self.swap
        key, j = slot  # a controlled rotation: |0><0| x 1 + |1><1| x V
        V = mats[key][..., j, :, :]
        eye = self.const["I"].expand(V.shape)
        return self.proj, torch.stack([eye, V], -3)

    def _readout(self, A, B):
        """``(B, K)``: every word from its left and right environments (the tries of
        :meth:`MPSProgram._readout_plan`), ``E (b, K, D_bra, D_ket)``."""
        p = self.p
        n = p.n
        if kernel_readout(self.device, self.use_kernel):
            b = max(T.shape[0] for T in A)
            if self._table is None:
                self._table = self._kernel_table([T.shape[1:] for T in A])
            flat = torch.cat([T.reshape(T.shape[0], -1).expand(b, -1) for T in A], 1)
            out = _KernelReadout.apply(flat, self._table)
            return out.expand(B, -1) if b != B else out
        one = torch.ones(1, 1, 1, 1, dtype=self.cdtype, device=self.device)
        Ls = _sweep(one, A, self.left)
        Rs = _sweep(one, [T.permute(0, 3, 2, 1) for T in reversed(A)], self.right)
        cols = []
        for w, li, ri in p.pairs:
            L = Ls[w][:, li] if w else one[:, 0]
            R = Rs[n - w][:, ri] if n - w else one[:, 0]
            cols.append((L * R).sum((-1, -2)))
        out = torch.stack(cols, -1).real * self.signs
        return out.expand(B, -1) if out.shape[0] != B else out

    def _kernel_table(self, shapes):
        """The tries as :func:`._mps_kernel.node_table`'s tables, for sites of ``shapes``."""
        dims = [(int(dl), int(dr)) for dl, _, dr in shapes]

        def op(letter):
            if letter == "I":
                return 0, _LOCAL["I"]
            return (1 if letter in "Z01" else 2), _LOCAL[letter]

        nodes, ops, pairs, size = _mps_kernel.node_table(self.p.n, dims, self.p.left_levels, self.p.right_levels,
                                                        self.p.pairs, op)
        rd = np.dtype(str(self.rdtype).replace("torch.", ""))
        return nodes, ops.astype(rd), pairs, np.asarray(self.p.signs, dtype=rd), size


class _KernelReadout(torch.autograd.Function):
    """:meth:`MPSRunner._readout` in the compiled kernels: ``flat (b, S)`` (the sites packed
    one after the other) -> ``(b, K)``; the backward is the kernels' too (CPU)."""

    @staticmethod
    def forward(ctx, flat, table):
        nodes, ops, pairs, signs, size = table
        if flat.shape[1] != size:
            raise RuntimeError(f"MPS readout: the sites hold {flat.shape[1]} values; the kernels' table expects {size}")
        a = torch.view_as_real(flat.detach()).permute(2, 1, 0).contiguous().numpy()  # (2, S, b)
        out, Er, Ei = _mps_kernel.readout_forward(a[0], a[1], nodes, ops, pairs, signs)
        ctx.table, ctx.saved = table, (a, Er, Ei)
        return torch.from_numpy(out).T

    @staticmethod
    @once_differentiable
    def backward(ctx, G):
        nodes, ops, pairs, signs, _ = ctx.table
        a, Er, Ei = ctx.saved
        g = np.ascontiguousarray(G.detach().numpy().T)
        gr, gi = _mps_kernel.readout_backward(g, a[0], a[1], nodes, ops, pairs, signs, Er, Ei)
        return torch.complex(torch.from_numpy(gr), torch.from_numpy(gi)).T, None


def _sweep(E, A, levels):
    """Environments grown site by site: ``[E_0, E_1, ...]``, ``E_d (b, K_d, D, D)`` after the
    first ``d`` sites of ``A``, each level's nodes extending a parent of the level before with
    one operator."""
    out = [E]
    for (idx, diag, P), T in zip(levels, A):
        if idx is not None:
            E = E.index_select(1, idx)
        bt, dl, _, dr = T.shape
        K = E.shape[1]
        # X[b, k, l', s, r] = sum_l E[b, k, l', l] T[b, l, s, r]: one batched GEMM
        X = (E.reshape(E.shape[0], K * dl, dl) @ T.reshape(bt, dl, 2 * dr)).view(-1, K, dl, 2, dr)
        if diag is not None:  # I / Z / projectors: a factor per (word, s)
            X = X * diag
        elif P is not None:  # sum_s P_k[s', s] X[.., s, r]
            X = (P[:, None, :, :, None] * X.unsqueeze(-3)).sum(-2)
        # E'[b, k, r', r] = sum_{l', s} conj(T[b, l', s, r']) X[b, k, l', s, r]
        Tc = T.conj().reshape(bt, dl * 2, dr).transpose(-1, -2)
        if K == 1:
            E = (Tc @ X.reshape(X.shape[0], dl * 2, dr)).unsqueeze(1)
        else:
            E = Tc.unsqueeze(1) @ X.reshape(X.shape[0], K, dl * 2, dr)
        out.append(E)
    return out


def _mul_site(M, T):
    """``M (b?, 2, 2)`` on the physical index of ``T (b, Dl, 2, Dr)``."""
    if M.dim() == 2:
        M = M.unsqueeze(0)
    return (M[:, None, :, :, None] * T[:, :, None, :, :]).sum(3)


def _project(T, left: bool):
    """A control's terms ``|a><a|`` (a = 0, 1) on ``T``, the term index joined to the right
    bond (``left``) or to the left bond: ``T'[.., s, (r, a)] = delta(s, a) T[.., s, r]``."""
    b, dl, _, dr = T.shape
    Z = torch.zeros((), dtype=T.dtype, device=T.device).expand(b, dl, 1, dr)
    t0, t1 = T[:, :, :1], T[:, :, 1:]
    if left:  # (b, Dl, s, Dr, a)
        Y = torch.stack([torch.cat([t0, Z], 2), torch.cat([Z, t1], 2)], -1)
        return Y.reshape(b, dl, 2, dr * 2)
    Y = torch.stack([torch.cat([t0, Z], 2), torch.cat([Z, t1], 2)], 2)  # (b, Dl, a, s, Dr)
    return Y.reshape(b, dl * 2, 2, dr)


def _controlled_target(T, name: str, left: bool):
    """The target's terms ``1`` and ``X`` (CNOT) or ``Z`` (CZ) on ``T``, the term index joined
    to the right bond (``left``: the target is the left wire) or to the left bond."""
    b, dl, _, dr = T.shape
    if name == "CNOT":
        V = T.flip(2)
    else:
        V = torch.cat([T[:, :, :1], -T[:, :, 1:]], 2)
    if left:
        return torch.stack([T, V], -1).reshape(b, dl, 2, dr * 2)
    return torch.stack([T, V], 2).reshape(b, dl * 2, 2, dr)


def _apply_terms(ops, T, left: bool):
    """``ops (b?, r, 2, 2)`` on ``T (b, Dl, 2, Dr)``: the term index ``a`` joined to the right
    bond (``left`` wire: ``(b, Dl, 2, Dr * r)``) or to the left bond (``(b, Dl * r, 2, Dr)``)."""
    if ops.dim() == 3:
        ops = ops.unsqueeze(0)
    b, dl, _, dr = T.shape
    if left:  # Y[b, l, s', rr, a] = sum_s ops[b, a, s', s] T[b, l, s, rr]
        Y = (ops.permute(0, 2, 3, 1)[:, None, :, :, None, :] * T[:, :, None, :, :, None]).sum(3)
        return Y.reshape(Y.shape[0], dl, 2, dr * ops.shape[1])
    # Y[b, l, a, s', rr]
    Y = (ops[:, None, :, :, :, None] * T[:, :, None, None, :, :]).sum(4)
    return Y.reshape(Y.shape[0], dl * ops.shape[1], 2, dr)
