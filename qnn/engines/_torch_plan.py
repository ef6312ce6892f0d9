"""Compilation of a :class:`qnn.Circuit` into an execution plan for the torch engine.

A plan is a list of *ops* applied to a batch-first ``(B, 2**n)`` state:

* ``BlockOp``: a ``2**k x 2**k`` unitary on the contiguous wires ``[start, start + k)``,
  built as the Kronecker product of per-wire 2x2 chains of single-qubit gates;
* ``GateOp``: one gate's own matrix (re-ordered to ascending wires);
* ``MonoOp``: a run of constant permutation/phase gates (CNOT, CZ, SWAP, ...) composed
  into one gather ``psi'[:, y] = phase[y] * psi[:, src[y]]``.

Everything here is pure Python/numpy and runs once per circuit structure; the executor in
:mod:`qnn.engines.torch_engine` turns the plan into torch calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qnn.circuit import Circuit, Gate

ONE_QUBIT = {"RX", "RY", "RZ", "Rot", "PhaseShift", "H", "X", "Y", "Z"}
# Constant gates whose matrix has one non-zero per row and column.
MONOMIAL = {"X", "Y", "Z", "CNOT", "CZ", "SWAP"}

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


@dataclass
class MonoOp:
    src: np.ndarray
    phase: np.ndarray | None  # None when every phase is 1
    inv: np.ndarray
    per_sample: bool = False


@dataclass
class Plan:
    n: int
    table: ParamTable
    init: str  # "zero" | "product" | "amplitude"
    init_chains: Chains | None  # chains for every wire (product init)
    ops: list  # BlockOp | GateOp | MonoOp
    gate_ops: list  # one GateOp per gate (mode "gates")
    measurements: list
    z_cols: list  # (position in output, mask of Z wires) for Z-only words
    other: list  # (position, kind, data)
    n_outputs: int
    unitary_ok: bool
    fingerprint: tuple = ()


# ------------------------------------------------------------------ numpy helpers
def mono_apply(src: np.ndarray, phase: np.ndarray, mat: np.ndarray, wires, n: int):
    """Compose a monomial gate ``mat`` on ``wires`` onto the gather (src, phase)."""
    k = len(wires)
    cols = np.argmax(np.abs(mat) > 1e-12, axis=1)
    vals = mat[np.arange(2**k), cols]
    s = np.moveaxis(src.reshape((2,) * n), list(wires), list(range(k))).reshape(2**k, -1)
    p = np.moveaxis(phase.reshape((2,) * n), list(wires), list(range(k))).reshape(2**k, -1)
    s2 = s[cols]
    p2 = p[cols] * vals[:, None]
    s2 = np.moveaxis(s2.reshape((2,) * n), list(range(k)), list(wires)).reshape(-1)
    p2 = np.moveaxis(p2.reshape((2,) * n), list(range(k)), list(wires)).reshape(-1)
    return s2, p2


def make_mono(gates, n: int) -> MonoOp:
    src = np.arange(2**n)
    phase = np.ones(2**n, dtype=np.complex128)
    for g in gates:
        src, phase = mono_apply(src, phase, CONST_MATS[g.name], g.wires, n)
    inv = np.empty_like(src)
    inv[src] = np.arange(2**n)
    ph = None if np.allclose(phase, 1.0) else phase
    return MonoOp(src, ph, inv)


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
        if len(g.wires) == 1:
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
            ops.append(make_mono(run, n))
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

    # measurements
    z_cols, other = [], []
    pos = 0
    for m in circuit.measurements:
        if m.kind == "expval" and set(m.pauli) <= {"Z", "I"}:
            mask = [w for w, p in zip(m.wires, m.pauli) if p == "Z"]
            z_cols.append((pos, mask))
        elif m.kind == "expval":
            src = np.arange(2**n)
            phase = np.ones(2**n, dtype=np.complex128)
            for w, p in zip(m.wires, m.pauli):
                if p != "I":
                    src, phase = mono_apply(src, phase, CONST_MATS[p], (w,), n)
            other.append((pos, "pauli", (src, phase)))
        else:
            other.append((pos, "probs", tuple(m.wires)))
        pos += m.n_outputs
    unitary_ok = not any(op.per_sample for op in ops)
    return Plan(n, table, init, init_chains, ops, gate_ops, list(circuit.measurements), z_cols,
                other, pos, unitary_ok)
