"""Export one QRNN cell step as a hardware circuit (PennyLane or Qiskit).

The circuit acts on ``N + ord`` wires: inout lanes ``0..I-1``, workspace lanes ``I..N-1`` and
``ord`` ancillas ``N..N+ord-1`` (wire ``i`` = lane ``i``; lane 0 is the most significant bit of
a basis index).  Each neuron is the nested repeat-until-success construction of spec §1:
multi-controlled ``Ry(phi_T)`` gates, ``Ry(pi/2)``, ``Ry(theta)``, controlled ``Ry(+-pi)``
(``cmiY``) and a mid-circuit measurement of every ancilla that must read ``0``.

* PennyLane: :func:`to_pennylane` returns a QNode on ``default.qubit`` using
  ``qml.measure(wire, postselect=0)``; it returns the probabilities of the system lanes.
* Qiskit: :func:`to_qiskit` returns a ``QuantumCircuit`` with mid-circuit ``measure`` + ``reset`` on
  the ancillas (postselect by discarding shots whose ancilla bits are not 0, see
  :func:`postselect_counts`) and :func:`qiskit_statevector` evaluates it exactly by projecting
  on the required outcomes (statevector-level postselection).

Gate budget per neuron: ``2^ord (1 + sum_j C(N-1, j))`` rotations, so only toy sizes are practical.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

__all__ = ["cell_step_ops", "to_pennylane", "to_qiskit", "qiskit_statevector", "postselect_counts"]


def _neuron_ops(neuron, N: int, order: int):
    sources = [i for i in range(N) if i != neuron.out]
    subsets = [c for j in range(1, neuron.degree + 1) for c in itertools.combinations(sources, j)]
    phi = neuron.phi.detach().double().tolist()
    theta = float(neuron.theta.detach())
    ancillas = list(range(N, N + order))

    def P(a, inverse):
        g = [("ry", ph, a, T) for T, ph in zip(subsets, phi)] + [("ry", math.pi / 2, a, ()), ("ry", theta, a, ())]
        if inverse:
            g = [(op, -ang, t, c) for op, ang, t, c in reversed(g)]
        return g

    def block(k, target, dagger):
        a = ancillas[k - 1]
        ops = []
        if k == 1:
            ops += P(a, False)
            ops.append(("ry", -math.pi if dagger else math.pi, target, (a,)))
            ops += P(a, True)
        else:
            ops += block(k - 1, a, False)
            ops.append(("ry", -math.pi if dagger else math.pi, target, (a,)))
            ops += block(k - 1, a, True)
        ops.append(("measure", a, 0))
        return ops

    return block(order, neuron.out, False)


def cell_step_ops(cell, word: int, target: int | None = None) -> tuple[list, int]:
    """Gate list of one step of ``cell`` (a :class:`~qnn.qrnn.QRNNCell`, postselect semantics)
    consuming input ``word`` and, if ``target`` is given, measuring the inout lanes onto it and
    resetting them.

    Ops are ``("x", lane)``, ``("ry", angle, target, controls)`` and ``("measure", lane, value)``
    (``value`` = the outcome that is postselected).  Returns ``(ops, n_wires)``.
    """
    cell = getattr(cell, "cell", cell)
    if cell.mode == "unitary":
        raise ValueError("cell_step_ops: the unitary (ideal FPOAA) mode has no postselection circuit; use mode='postselect'")
    I, W, S, k = cell.input_size, cell.hidden_size, cell.stages, cell.order
    N = I + W
    if not 0 <= int(word) < (1 << I):
        raise ValueError(f"cell_step_ops: word must be in [0, {1 << I}); got {word}")
    bits = [(int(word) >> (I - 1 - i)) & 1 for i in range(I)]
    ops = [("x", i) for i in range(I) if bits[i]]
    neurons = list(cell.neurons)
    ni = 0
    for stage in range(S + 1):
        if stage > 0:
            for j in range(W):
                ops.append(("ry", float(cell.unitary_theta[stage - 1, j].detach()), I + j, ()))
        for j in range(W):
            ops += _neuron_ops(neurons[ni], N, k)
            ni += 1
    ops += [("x", i) for i in range(I) if bits[i]]
    for o in range(I):
        ops += _neuron_ops(neurons[ni], N, k)
        ni += 1
    if target is not None:
        tb = [(int(target) >> (I - 1 - i)) & 1 for i in range(I)]
        ops += [("measure", i, tb[i]) for i in range(I)]
        ops += [("x", i) for i in range(I) if tb[i]]
    return ops, N + k


def _hx_vector(cell, hx, n_wires):
    """Full initial state vector ``|0>_inout (x) hx (x) |0>_anc`` as numpy (lane 0 = MSB)."""
    I, W = cell.input_size, cell.hidden_size
    k = n_wires - I - W
    v = np.zeros((1 << I, 1 << W, 1 << k))
    if hx is None:
        v[0, 0, 0] = 1.0
    else:
        h = np.asarray(torch.as_tensor(hx).detach().double().cpu()).reshape(-1)
        v[0, :, 0] = h / np.linalg.norm(h)
    return v.reshape(-1)


def to_pennylane(cell, word: int, hx=None, target: int | None = None, *, mcm_method: str = "tree-traversal"):
    """One cell step as a PennyLane QNode (``default.qubit``, mid-circuit measurements with
    ``postselect``).  The QNode takes no arguments and returns ``qml.probs`` of the ``W + I``
    system lanes: before the readout if ``target`` is None, else after measuring/resetting the
    inout lanes (then only the workspace is non-trivial).

    Example:
        >>> from qnn.qrnn import QRNNCell
        >>> qnode = to_pennylane(QRNNCell(1, 1, stages=0, order=1, degree=1), word=1)  # doctest: +SKIP
        >>> qnode().shape  # doctest: +SKIP
        (4,)
    """
    import pennylane as qml

    cell = getattr(cell, "cell", cell)
    ops, n = cell_step_ops(cell, word, target)
    N = cell.input_size + cell.hidden_size
    init = _hx_vector(cell, hx, n)
    dev = qml.device("default.qubit")

    @qml.qnode(dev, mcm_method=mcm_method)
    def circuit():
        if hx is not None:
            qml.StatePrep(init, wires=range(n))
        for op in ops:
            if op[0] == "x":
                qml.PauliX(op[1])
            elif op[0] == "ry":
                _, ang, t, ctrl = op
                if ctrl:
                    qml.ctrl(qml.RY(ang, wires=t), control=list(ctrl))
                else:
                    qml.RY(ang, wires=t)
            else:
                _, lane, val = op
                qml.measure(lane, postselect=val)
        return qml.probs(wires=list(range(N)))

    return circuit


def to_qiskit(cell, word: int, hx=None, target: int | None = None, *, measure_output: bool = True):
    """One cell step as a Qiskit ``QuantumCircuit`` with mid-circuit measurement and reset.

    Qubit ``i`` is lane ``i`` (note Qiskit's little-endian basis indices).  Classical bits: one per
    mid-circuit measurement, in order, then (if ``measure_output`` and ``target`` is None) ``I``
    bits with the final readout of the inout lanes.  Returns ``(circuit, postselect)`` where
    ``postselect`` maps each mid-circuit clbit index to its required value.
    """
    from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
    from qiskit.circuit.library import RYGate

    cell = getattr(cell, "cell", cell)
    ops, n = cell_step_ops(cell, word, target)
    I = cell.input_size
    n_meas = sum(op[0] == "measure" for op in ops)
    q = QuantumRegister(n, "q")
    c = ClassicalRegister(n_meas, "mcm")
    regs = [q, c]
    out = None
    if measure_output and target is None:
        out = ClassicalRegister(I, "out")
        regs.append(out)
    qc = QuantumCircuit(*regs)
    if hx is not None:
        init = _hx_vector(cell, hx, n)
        # Qiskit index has qubit 0 as the least significant bit: reverse the lane order
        qc.initialize(init.reshape([2] * n).transpose(list(range(n))[::-1]).reshape(-1), q)
    post = {}
    mi = 0
    for op in ops:
        if op[0] == "x":
            qc.x(q[op[1]])
        elif op[0] == "ry":
            _, ang, t, ctrl = op
            if ctrl:
                qc.append(RYGate(ang).control(len(ctrl)), [q[i] for i in ctrl] + [q[t]])
            else:
                qc.ry(ang, q[t])
        else:
            _, lane, val = op
            qc.measure(q[lane], c[mi])
            post[mi] = val
            mi += 1
            if lane >= cell.input_size + cell.hidden_size:
                qc.reset(q[lane])
    if out is not None:
        for i in range(I):
            qc.measure(q[i], out[i])
    return qc, post


def qiskit_statevector(qc, postselect: dict):
    """Exact evaluation of a circuit from :func:`to_qiskit`: unitary instructions are applied to a
    ``Statevector``; each mid-circuit measurement projects onto its ``postselect`` value and
    renormalises (global renormalisation); ``reset`` after a projection onto ``v`` applies ``X``
    if ``v = 1``; final readout measurements are skipped.

    Returns ``(amplitudes, prob)``: the real amplitudes as a numpy array indexed with **lane 0 as
    the most significant bit**, and the product of the postselection probabilities.
    """
    from qiskit.quantum_info import Operator, Statevector

    n = qc.num_qubits
    sv = Statevector.from_int(0, 2**n)
    last = {}
    prob = 1.0
    mcm = qc.cregs[0]
    for inst in qc.data:
        name = inst.operation.name
        qidx = [qc.find_bit(b).index for b in inst.qubits]
        if name == "measure":
            creg_bit = inst.clbits[0]
            if creg_bit not in mcm:
                continue
            ci = qc.find_bit(creg_bit).index
            val = postselect[ci]
            data = sv.data.copy()
            idx = np.arange(2**n)
            mask = ((idx >> qidx[0]) & 1) == val
            data[~mask] = 0
            p = float(np.sum(np.abs(data) ** 2))
            if p <= 0:
                raise ValueError(f"qiskit_statevector: postselected outcome {val} on qubit {qidx[0]} has probability 0")
            prob *= p
            sv = Statevector(data / math.sqrt(p))
            last[qidx[0]] = val
        elif name == "reset":
            if last.get(qidx[0], 0) == 1:
                from qiskit.circuit.library import XGate

                sv = sv.evolve(Operator(XGate()), qargs=qidx)
        elif name == "initialize":
            sv = Statevector(np.asarray(inst.operation.params, dtype=complex))
        elif name == "barrier":
            continue
        else:
            sv = sv.evolve(Operator(inst.operation), qargs=qidx)
    amp = sv.data.reshape([2] * n).transpose(list(range(n))[::-1]).reshape(-1)
    return np.real_if_close(amp, tol=1e6), prob


def postselect_counts(counts: dict, postselect: dict, n_mcm: int) -> dict:
    """Keep only the shots whose mid-circuit bits equal ``postselect``; return counts of the
    output register (as integer words, lane 0 = MSB) and the number of kept shots.

    Qiskit count keys list registers last-added first, separated by spaces (``"out mcm"``) and
    each register's bits with the highest index first.
    """
    kept = {}
    for key, c in counts.items():
        parts = key.split()
        mcm = parts[-1]
        bits = [int(mcm[n_mcm - 1 - i]) for i in range(n_mcm)]
        if any(bits[i] != v for i, v in postselect.items()):
            continue
        if len(parts) > 1:
            o = parts[0]
            I = len(o)
            word = sum(int(o[I - 1 - i]) << (I - 1 - i) for i in range(I))
        else:
            word = 0
        kept[word] = kept.get(word, 0) + c
    return kept
