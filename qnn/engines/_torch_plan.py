"""Compilation of a :class:`qnn.Circuit` into an execution plan for the torch engine.

A plan is a list of *ops* applied to a batch-first ``(B, 2**n)`` state:

* ``BlockOp``: a ``2**k x 2**k`` unitary on the contiguous wires ``[start, start + k)``,
  built as the Kronecker product of per-wire 2x2 chains of single-qubit gates;
* ``GateOp``: one gate's own matrix (re-ordered to ascending wires; a ``PauliExp`` gate's
  matrix ``exp(i sum_k p_k P_k)`` is built, batched when an angle is an input, by
  :func:`qnn.pauli.pauli_exp_matrix`); a controlled rotation
  (CRX/CRY/CRZ/MCRY) keeps only its 2x2 rotation, applied to the slice where every control
  is 1;
* ``MonoOp``: a run of constant permutation/phase gates (CNOT, CZ, SWAP, ...) composed
  into one gather ``psi'[:, y] = phase[y] * psi[:, src[y]]``.

Every monomial gate here acts on basis indices as an affine map over GF(2) of the index bits
(X/Y flip a bit, CNOT adds the control bit to the target bit, SWAP swaps two bits, Z/CZ keep
the index) times a phase ``i**e(x)``.  A ``MonoOp`` keeps only that affine map (``n + 1``
integers) and the phase terms; its ``2**n`` index/phase arrays are built on demand
(:meth:`MonoOp.arrays`) without per-gate temporaries.  A ``<Z>`` word read after a monomial
op is another ``<Z>`` word with a sign (:meth:`MonoOp.fold_z`), which is how the final
permutation is folded into the readout.

Compilation is pure Python (no array of size ``2**n`` is built), so a plan can be made just
to estimate memory; the executor in :mod:`qnn.engines.torch_engine` turns the plan into torch
calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from qnn.circuit import Circuit, Gate

ONE_QUBIT = {"RX", "RY", "RZ", "Rot", "PhaseShift", "H", "X", "Y", "Z"}
# Constant gates whose matrix has one non-zero per row and column.
MONOMIAL = {"X", "Y", "Z", "CNOT", "CZ", "SWAP"}
# Controlled rotations (controls = wires[:-1], target = wires[-1]) and their 2x2 rotation.
CONTROLLED = {"CRX": "RX", "CRY": "RY", "CRZ": "RZ", "MCRY": "RY"}

_S2 = 1.0 / np.sqrt(2.0)
CONST_MATS = {
    "H": np.array([[_S2, _S2], [_S2, -_S2]], dtype=np.complex128),
    "X": np.array([[0, 1], [1, 0]], dtype=np.complex128),
    "Y": np.array([[0, -1j], [1j, 0]], dtype=np.complex128),
    "Z": np.array([[1, 0], [0, -1]], dtype=np.complex128),
    "I": np.eye(2, dtype=np.complex128),
    "CNOT": np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=np.complex128),
    "CZ": np.diag([1, 1, 1, -1]).astype(np.complex128),
    "SWAP": np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.complex128),
}


@dataclass
class ParamTable:
    """All gate angles of a circuit as ``source[idx] * scale + offset``.

    Shared angles (weights and constants) index ``cat(weights, consts)``; per-sample angles
    (any gate with an input-bound angle) index ``cat(inputs, weights, consts)`` per row."""

    n_inputs: int
    n_weights: int
    consts: list = field(default_factory=list)
    sh_idx: list = field(default_factory=list)
    sh_scale: list = field(default_factory=list)
    sh_off: list = field(default_factory=list)
    ps_idx: list = field(default_factory=list)
    ps_scale: list = field(default_factory=list)
    ps_off: list = field(default_factory=list)

    def _const(self, v: float) -> int:
        self.consts.append(v)
        return len(self.consts) - 1

    def add(self, params, per_sample: bool) -> tuple[int, int]:
        """Register the angles of one gate; returns (start, stop) in the shared or
        per-sample table."""
        idx, sc, off = (self.ps_idx, self.ps_scale, self.ps_off) if per_sample else (
            self.sh_idx, self.sh_scale, self.sh_off)
        start = len(idx)
        for p in params:
            if p.kind == "input":
                assert per_sample
                idx.append(p.index)
                sc.append(p.scale)
                off.append(p.offset)
            elif p.kind == "weight":
                idx.append(p.index + (self.n_inputs if per_sample else 0))
                sc.append(p.scale)
                off.append(p.offset)
            else:
                k = self._const(0.0)
                idx.append(k + self.n_weights + (self.n_inputs if per_sample else 0))
                sc.append(0.0)
                off.append(p.offset)
        return start, len(idx)


class AngleTable:
    """A :class:`ParamTable` on a device: ``angles(inputs, weights) -> (sh, ps)``, the shared
    angles ``(n_shared,)`` and the per-sample angles ``(B, n_per_sample)`` (None when empty)."""

    def __init__(self, t: ParamTable, device, rdtype):
        self.sh_idx = torch.tensor(t.sh_idx, dtype=torch.long, device=device)
        self.sh_scale = torch.tensor(t.sh_scale, dtype=rdtype, device=device)
        self.sh_off = torch.tensor(t.sh_off, dtype=rdtype, device=device)
        self.ps_idx = torch.tensor(t.ps_idx, dtype=torch.long, device=device)
        self.ps_scale = torch.tensor(t.ps_scale, dtype=rdtype, device=device)
        self.ps_off = torch.tensor(t.ps_off, dtype=rdtype, device=device)
        self.consts = torch.zeros(len(t.consts), dtype=rdtype, device=device)

    def angles(self, inputs, weights):
        B = inputs.shape[0]
        src = torch.cat([weights, self.consts])
        sh = src[self.sh_idx] * self.sh_scale + self.sh_off if len(self.sh_idx) else None
        ps = None
        if len(self.ps_idx):
            ext = torch.cat([inputs, src.unsqueeze(0).expand(B, -1)], 1)
            ps = ext[:, self.ps_idx] * self.ps_scale + self.ps_off
        return sh, ps


def is_per_sample(g: Gate) -> bool:
    return any(p.kind == "input" for p in g.params)


@dataclass
class Group:
    """Gates of one name whose matrices are built together: ``(..., k, 2, 2)``."""

    name: str
    per_sample: bool
    start: int  # slice in the shared/per-sample angle table
    stop: int
    k: int

    @property
    def npar(self) -> int:
        return (self.stop - self.start) // self.k if self.k else 0


@dataclass
class Chains:
    """Per-wire products of single-qubit gates, evaluated position by position.

    ``steps[t]`` is a list of (group, positions) where ``positions`` are indices into the
    ``k`` wires: at step t, ``M[positions] = G @ M[positions]``."""

    k: int
    steps: list  # list[list[tuple[Group, list[int]]]]
    per_sample: bool


@dataclass
class BlockOp:
    start: int
    k: int
    chains: Chains

    @property
    def per_sample(self) -> bool:
        return self.chains.per_sample


@dataclass
class GateOp:
    gate: Gate
    wires: tuple[int, ...]  # ascending
    perm: tuple[int, ...] | None  # axis order mapping gate-wire order to ascending
    per_sample: bool
    start: int
    stop: int

    @property
    def controlled(self) -> bool:
        """A controlled rotation: only its 2x2 rotation is built, applied to the slice where
        every control (``gate.wires[:-1]``) is 1."""
        return self.gate.name in CONTROLLED


# ------------------------------------------------------------------ affine index maps
# An affine map over GF(2) of n-bit basis indices: f(x) = c ^ XOR_{b: bit b of x set} cols[b]
# (bit b = wire n - 1 - b, wire 0 the most significant bit).
Affine = tuple  # (cols: tuple[int, ...] of length n, c: int)


def _bits(name: str, wires, n: int):
    """The action of monomial gate ``name`` on one basis index (a Python int)."""
    b = [n - 1 - w for w in wires]
    if name in ("X", "Y"):
        return lambda x: x ^ (1 << b[0])
    if name == "CNOT":
        return lambda x: x ^ (((x >> b[0]) & 1) << b[1])
    if name == "SWAP":
        return lambda x: x ^ ((((x >> b[0]) ^ (x >> b[1])) & 1) * ((1 << b[0]) | (1 << b[1])))
    return lambda x: x  # Z, CZ


def affine_of(gates, n: int) -> Affine:
    """Affine map of the basis-index action of a run of monomial gates (first gate first)."""
    cols = [1 << b for b in range(n)]
    c = 0
    for g in gates:
        f = _bits(g.name, g.wires, n)
        f0 = f(0)
        cols = [f(v) ^ f0 for v in cols]
        c = f(c)
    return tuple(cols), c


def _compose(f: Affine, g: Affine) -> Affine:
    """``f o g``."""
    fc, f0 = f
    gc, g0 = g

    def lin(v):
        out = 0
        b = 0
        while v:
            if v & 1:
                out ^= fc[b]
            v >>= 1
            b += 1
        return out

    return tuple(lin(v) for v in gc), lin(g0) ^ f0


def _parity(v: int) -> int:
    return bin(v).count("1") & 1


def fill_affine(out: np.ndarray, f: Affine) -> np.ndarray:
    """``out[x] = f(x)`` for every index, by doubling (no temporaries)."""
    cols, c = f
    out[0] = c
    h = 1
    for col in cols:
        np.bitwise_xor(out[:h], col, out=out[h:2 * h])
        h *= 2
    return out


def fill_parity(out: np.ndarray, mask: int, f: Affine) -> np.ndarray:
    """``out[x] = parity(mask & f(x))`` (uint8), by doubling."""
    cols, c = f
    out[0] = _parity(mask & c)
    h = 1
    for col in cols:
        np.bitwise_xor(out[:h], _parity(mask & col), out=out[h:2 * h])
        h *= 2
    return out


_I_POW = np.array([1, 1j, -1, -1j])


@dataclass
class MonoOp:
    """A run of monomial gates as one gather ``psi'[y] = phase[y] * psi[src[y]]``.

    Keeps the run's affine index map ``fwd`` (``inv = fwd``: the basis state ``x`` goes to
    ``fwd(x)``; ``src`` is its inverse) and builds the ``2**n`` arrays on demand."""

    gates: tuple
    n: int
    fwd: Affine
    bwd: Affine
    has_phase: bool  # a phase gate (Y, Z, CZ) occurs
    per_sample: bool = False

    @staticmethod
    def of(gates, n: int) -> "MonoOp":
        gates = tuple(gates)
        return MonoOp(gates, n, affine_of(gates, n), affine_of(gates[::-1], n),
                      any(g.name in ("Y", "Z", "CZ") for g in gates))

    def index_dtype(self):
        return np.int32 if self.n <= 30 else np.int64

    def _exponents(self, at: Affine, out: np.ndarray, tmp: np.ndarray, tmp2: np.ndarray) -> np.ndarray:
        """``out[z] = e(at(z)) mod 4``: the phase exponent of the run, as a function of the
        run's input index ``x = at(z)`` (uint8 arrays, 1 byte per index)."""
        n = self.n
        out[:] = 0
        cur = at  # index before gate j as a function of z
        for g in self.gates:
            if g.name in ("Y", "Z", "CZ"):
                b = [1 << (n - 1 - w) for w in g.wires]
                fill_parity(tmp, b[0], cur)
                if g.name == "CZ":
                    fill_parity(tmp2, b[1], cur)
                    np.bitwise_and(tmp, tmp2, out=tmp)
                np.left_shift(tmp, 1, out=tmp)
                if g.name == "Y":
                    np.add(tmp, 1, out=tmp)
                np.add(out, tmp, out=out)
            if g.name != "Z" and g.name != "CZ":
                cur = _compose(affine_of([g], n), cur)
        np.bitwise_and(out, 3, out=out)
        return out

    def arrays(self, cdtype=np.complex128, chunk: int = 1 << 20):
        """``(src, phase, inv, phase_inv)``: ``src``/``inv`` int32 (int64 above 30 qubits),
        ``phase[y]`` and ``phase_inv[x] = phase[inv[x]]`` of ``cdtype`` or None when every
        phase is 1.  Temporaries: three uint8 arrays of ``2**n`` when a phase gate occurs."""
        N = 2**self.n
        src = fill_affine(np.empty(N, dtype=self.index_dtype()), self.bwd)
        inv = fill_affine(np.empty(N, dtype=self.index_dtype()), self.fwd)
        if not self.has_phase:
            return src, None, inv, None
        e = np.empty(N, dtype=np.uint8)
        t1 = np.empty(N, dtype=np.uint8)
        t2 = np.empty(N, dtype=np.uint8)
        self._exponents(self.bwd, e, t1, t2)  # as a function of y: x = src(y)
        if not e.any():
            return src, None, inv, None
        lut = _I_POW.astype(cdtype)
        phase = np.empty(N, dtype=cdtype)
        for lo in range(0, N, chunk):
            phase[lo:lo + chunk] = lut[e[lo:lo + chunk]]
        identity = (tuple(1 << b for b in range(self.n)), 0)
        self._exponents(identity, e, t1, t2)  # as a function of x
        phase_inv = np.empty(N, dtype=cdtype)
        for lo in range(0, N, chunk):
            phase_inv[lo:lo + chunk] = lut[e[lo:lo + chunk]]
        return src, phase, inv, phase_inv

    def fold_z(self, mask: int) -> tuple[int, int]:
        """A ``<Z>`` word (index-bit ``mask``) read after this op equals ``sign * <Z_mask'>``
        read before it; returns ``(mask', sign)``."""
        cols, c = self.fwd
        m2 = 0
        for b, col in enumerate(cols):
            if _parity(mask & col):
                m2 |= 1 << b
        return m2, -1 if _parity(mask & c) else 1


@dataclass
class Plan:
    n: int
    table: ParamTable
    init: str  # "zero" | "product" | "amplitude"
    init_chains: Chains | None  # chains for every wire (product init)
    ops: list  # BlockOp | GateOp | MonoOp
    gate_ops: list  # one GateOp per gate (mode "gates")
    measurements: list
    z_cols: list  # (position in output, index-bit mask of the Z wires) for Z-only words
    other: list  # (position, "pauli", (xmask, zmask, nY % 4)) | (position, "probs", wires)
    #              | (position, "hermitian", (wires, matrix rows))
    n_outputs: int
    unitary_ok: bool
    fingerprint: tuple = ()
    mps: Any = None  # the MPS path's program (qnn.engines._mps), False where it cannot run


# ------------------------------------------------------------------ compilation
def _chains(table: ParamTable, per_wire: list[list[Gate]]) -> Chains:
    """Group the per-wire gate chains position by position and by gate name."""
    k = len(per_wire)
    per_sample = any(is_per_sample(g) for ch in per_wire for g in ch)
    steps = []
    depth = max((len(ch) for ch in per_wire), default=0)
    for t in range(depth):
        by_key: dict = {}
        for j, ch in enumerate(per_wire):
            if len(ch) > t:
                g = ch[t]
                by_key.setdefault((g.name, is_per_sample(g)), []).append((j, g))
        step = []
        for (name, ps), items in by_key.items():
            start = None
            stop = None
            for _, g in items:
                s0, s1 = table.add(g.params, ps)
                start = s0 if start is None else start
                stop = s1
            if start is None:
                start = stop = 0
            step.append((Group(name, ps, start, stop, len(items)), [j for j, _ in items]))
        steps.append(step)
    return Chains(k, steps, per_sample)


def _gate_op(table: ParamTable, g: Gate) -> GateOp:
    ps = is_per_sample(g)
    s0, s1 = table.add(g.params, ps)
    order = sorted(range(len(g.wires)), key=lambda i: g.wires[i])
    wires = tuple(g.wires[i] for i in order)
    perm = None if order == list(range(len(order))) else tuple(order)
    return GateOp(g, wires, perm, ps, s0, s1)


def wire_mask(wires, n: int) -> int:
    """Index-bit mask of ``wires`` (wire 0 = the most significant bit)."""
    m = 0
    for w in wires:
        m |= 1 << (n - 1 - w)
    return m


def compile_circuit(circuit: Circuit, block_size: int = 6) -> Plan:
    n = circuit.n_qubits
    table = ParamTable(circuit.n_inputs, circuit.n_weights)

    # mode "gates": one op per gate from |0> (or the amplitude state)
    gate_ops = [_gate_op(table, g) for g in circuit.gates]

    # blocked plan
    frozen = [circuit.state_prep is not None] * n
    init_chain: list[list[Gate]] = [[] for _ in range(n)]
    pending: dict[int, list[Gate]] = {}
    ops: list = []

    def flush(wires):
        ws = sorted(w for w in set(wires) if pending.get(w))
        runs: list[list[int]] = []
        for w in ws:
            if runs and runs[-1][-1] == w - 1 and len(runs[-1]) < block_size:
                runs[-1].append(w)
            else:
                runs.append([w])
        for run in runs:
            ops.append(BlockOp(run[0], len(run), _chains(table, [pending.pop(w) for w in run])))

    gates = circuit.gates
    i = 0
    while i < len(gates):
        g = gates[i]
        if len(g.wires) == 1 and g.name != "PauliExp":  # a PauliExp gate is always its own GateOp
            w = g.wires[0]
            if not frozen[w]:
                init_chain[w].append(g)
            else:
                pending.setdefault(w, []).append(g)
            i += 1
            continue
        if g.name in MONOMIAL:
            j = i
            while j < len(gates) and len(gates[j].wires) > 1 and gates[j].name in MONOMIAL:
                j += 1
            run = gates[i:j]
            ws = {w for gg in run for w in gg.wires}
            flush(ws)
            for w in ws:
                frozen[w] = True
            ops.append(MonoOp.of(run, n))
            i = j
            continue
        flush(g.wires)
        for w in g.wires:
            frozen[w] = True
        ops.append(_gate_op(table, g))
        i += 1
    flush(list(pending))

    if circuit.state_prep is not None:
        init, init_chains = "amplitude", None
    elif any(init_chain):
        init, init_chains = "product", _chains(table, init_chain)
    else:
        init, init_chains = "zero", None

    # measurements: Z words as index-bit masks; other Pauli words as (X mask, Z mask, number
    # of Y): P|x> = i**nY (-1)**(zmask . x) |x ^ xmask>
    z_cols, other = [], []
    pos = 0
    for m in circuit.measurements:
        if m.kind == "expval" and set(m.pauli) <= {"Z", "I"}:
            z_cols.append((pos, wire_mask([w for w, p in zip(m.wires, m.pauli) if p == "Z"], n)))
        elif m.kind == "expval":
            xm = wire_mask([w for w, p in zip(m.wires, m.pauli) if p in "XY"], n)
            zm = wire_mask([w for w, p in zip(m.wires, m.pauli) if p in "YZ"], n)
            other.append((pos, "pauli", (xm, zm, m.pauli.count("Y") % 4)))
        elif m.kind == "hermitian":
            other.append((pos, "hermitian", (tuple(m.wires), m.matrix)))
        else:
            other.append((pos, "probs", tuple(m.wires)))
        pos += m.n_outputs
    unitary_ok = not any(op.per_sample for op in ops)
    return Plan(n, table, init, init_chains, ops, gate_ops, list(circuit.measurements), z_cols,
                other, pos, unitary_ok)


def sign_matrix(masks, signs, n: int, device, rdtype) -> torch.Tensor:
    """Z-word sign table: ``S[x, j] = signs[j] * (-1)**parity(x & masks[j])``, ``(2**n, len(masks))``."""
    idx = np.arange(2**n)
    S = np.empty((2**n, len(masks)))
    for j, (m, sg) in enumerate(zip(masks, signs)):
        par = np.zeros(2**n, dtype=np.int64)
        for b in range(n):
            if m >> b & 1:
                par ^= (idx >> b) & 1
        S[:, j] = sg * (1 - 2 * par)
    return torch.as_tensor(S, dtype=rdtype, device=device)
