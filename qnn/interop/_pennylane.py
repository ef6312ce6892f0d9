"""PennyLane tapes and QNodes to qnn circuits.

PennyLane and qnn share their conventions (wire 0 most significant, ``RX(t) = exp(-i t X/2)``,
``Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)``, controls first), so every supported
PennyLane operation maps 1:1 to a qnn gate (see :mod:`qnn.interop._gates`); templates and other
operations are decomposed by PennyLane until they do.  ``GlobalPhase`` is dropped (qnn circuits
carry no global phase) and ``Identity`` is skipped.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
import torch

from qnn._optional import import_optional
from qnn.circuit import Circuit, Param
from qnn.interop._gates import QNN_FROM_PENNYLANE

__all__ = ["qnn_gate_name", "supported_operation", "OperationsImport", "circuit_from_operations",
           "measurement_from_pennylane", "from_pennylane"]

_PASS = ("Identity", "GlobalPhase")


def qnn_gate_name(op) -> str | None:
    """The qnn gate a PennyLane operation is, or None (``C(RY)`` with every control value 1
    is ``MCRY``, or ``CRY`` on two wires)."""
    name = QNN_FROM_PENNYLANE.get(op.name)
    if name is not None:
        return name
    if op.name == "C(RY)" and all(bool(v) for v in op.control_values) and not op.work_wires:
        return "CRY" if len(op.wires) == 2 else "MCRY"
    return None


def supported_operation(op) -> bool:
    """Whether ``op`` runs on qnn as is (a qnn gate, ``Identity`` or ``GlobalPhase``); used as
    the stopping condition of PennyLane's decomposition."""
    return op.name in _PASS or qnn_gate_name(op) is not None


@dataclass
class OperationsImport:
    """What :func:`circuit_from_operations` returns.

    Attributes:
        circuit: the qnn circuit (no measurements yet); numeric angles are weights
            ``0..n_weights-1`` (one block ``"params"``) or, for batched angles, inputs.
        weights: the angle of each weight (scalars, in the operations' own types).
        inputs: the values ``(B,)`` of each input (batched angles).
        phases: the ``GlobalPhase`` angles ``phi`` (the state is multiplied by ``exp(-i sum phi)``).
        key: a hashable description of the structure (equal keys: the same circuit up to angles).
    """

    circuit: Circuit
    weights: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    phases: list = field(default_factory=list)
    key: tuple = ()


def _ndim(x) -> int:
    return len(getattr(x, "shape", ()))


def circuit_from_operations(operations, wire_order) -> OperationsImport:
    """Map PennyLane operations (already decomposed to :func:`supported_operation`) on the
    wires ``wire_order`` (labels; position = qnn wire) to a qnn circuit.  Each angle with a
    batch dimension (parameter broadcasting) becomes an input, every other angle a weight.

    Raises:
        ValueError: an operation is not supported, or acts on a wire not in ``wire_order``.
    """
    index = {w: i for i, w in enumerate(wire_order)}
    rows = []
    weights, inputs, phases = [], [], []
    for op in operations:
        if op.name == "Identity":
            continue
        if op.name == "GlobalPhase":
            phases.append(op.data[0])
            continue
        name = qnn_gate_name(op)
        if name is None:
            raise ValueError(f"circuit_from_operations: operations must be qnn gates {sorted(QNN_FROM_PENNYLANE)}"
                             f" (decompose first); got {op.name}")
        try:
            wires = tuple(index[w] for w in op.wires)
        except KeyError:
            raise ValueError(f"circuit_from_operations: {op.name} acts on wires {op.wires.tolist()}, "
                             f"not all in {list(wire_order)}") from None
        kinds = []
        for d in op.data:
            if _ndim(d) == 0:
                kinds.append(("weight", len(weights)))
                weights.append(d)
            elif _ndim(d) == 1:
                kinds.append(("input", len(inputs)))
                inputs.append(d)
            else:
                raise ValueError(f"circuit_from_operations: {op.name} angles must be scalars or "
                                 f"batches (B,); got shape {tuple(d.shape)}")
        rows.append((name, wires, tuple(kinds)))
    c = Circuit(len(wire_order))
    c.new_inputs(len(inputs))
    if weights:
        c.new_weights("params", (len(weights),))
    for name, wires, kinds in rows:
        c.add(name, wires, [Param(k, i) for k, i in kinds])
    key = (len(wire_order), tuple(rows), len(phases))
    return OperationsImport(c, weights, inputs, phases, key)


def measurement_from_pennylane(circuit: Circuit, mp, wire_order) -> bool:
    """Append ``mp`` to ``circuit`` when qnn measures it natively: ``qml.expval`` of a Pauli
    word (a product of X/Y/Z/I on distinct wires) or ``qml.probs`` on wires.  Returns whether
    it did (an unsupported one leaves the circuit unchanged)."""
    index = {w: i for i, w in enumerate(wire_order)}
    kind = type(mp).__name__
    if mp.mv is not None:
        return False
    if kind == "ProbabilityMP" and mp.obs is None:
        wires = list(mp.wires) if len(mp.wires) else list(wire_order)
        circuit.measure_probs([index[w] for w in wires])
        return True
    if kind != "ExpectationMP" or mp.obs is None:
        return False
    word = _pauli_word(mp.obs)
    if word is None:
        return False
    letters, wires = word
    if not wires:
        return False
    circuit.measure_pauli(letters, [index[w] for w in wires])
    return True


def _pauli_word(obs):
    """``(letters, wires)`` if ``obs`` is a single Pauli word with coefficient 1, else None."""
    rep = obs.pauli_rep
    if rep is None or len(rep) != 1:
        return None
    (pw, coeff), = rep.items()
    try:
        if abs(complex(coeff) - 1.0) > 0:
            return None
    except TypeError:
        return None
    items = [(w, ch) for w, ch in pw.items() if ch != "I"]
    if not items:
        return "I", [obs.wires[0]]
    return "".join(ch for _, ch in items), [w for w, _ in items]


def _decomposed(qml, tape):
    (tape,), _ = qml.transforms.decompose(tape, stopping_condition=supported_operation)
    return tape


def from_pennylane(tape_or_qnode, *args, inputs=None, **kwargs):
    """A qnn circuit from a PennyLane tape or QNode; returns ``(circuit, weights)``.

    * A **tape** (``QuantumScript``): every angle (after decomposing templates and operations
      outside qnn's gate set) becomes a weight, in one block ``"params"``; ``weights`` holds
      their values.
    * A **QNode**, called with ``*args, **kwargs``: each angle must be ``a * v + b`` for one
      element ``v`` of one argument (traced with torch autograd and checked at a second
      point); elements of the arguments named in ``inputs`` (default: ``("inputs",)`` when the
      QNode has that argument, as ``qml.qnn.TorchLayer`` requires) become qnn inputs (in
      argument order, flattened), every other argument becomes a weight block of its name and
      shape (so ``TorchLayer``'s ``weight_shapes`` carry over); ``weights`` is their
      concatenated values.  Angles that depend on no argument are constants.

    Measurements must be ``qml.expval`` of Pauli words or ``qml.probs``.

    Example:
        >>> import pennylane as qml, torch
        >>> dev = qml.device("default.qubit", wires=2)
        >>> @qml.qnode(dev)
        ... def f(inputs, weights):
        ...     qml.AngleEmbedding(inputs, wires=[0, 1])
        ...     qml.BasicEntanglerLayers(weights, wires=[0, 1])
        ...     return qml.expval(qml.Z(0)), qml.expval(qml.Z(1))
        >>> c, w = from_pennylane(f, torch.zeros(2), torch.zeros(3, 2))
        >>> (c.n_inputs, c.weight_block("weights").shape, c.n_outputs, tuple(w.shape))
        (2, (3, 2), 2, (6,))
    """
    qml = import_optional("pennylane", feature="from_pennylane")
    if isinstance(tape_or_qnode, qml.tape.QuantumScript):
        if args or kwargs or inputs is not None:
            raise TypeError("from_pennylane: a tape takes no arguments or inputs (its angles are its data)")
        tape = _decomposed(qml, tape_or_qnode)
        wire_order = list(tape.wires)
        imp = circuit_from_operations(tape.operations, wire_order)
        if imp.inputs:
            raise ValueError("from_pennylane: a broadcast tape cannot become one qnn circuit; "
                             "pass a QNode with the batched argument named in inputs")
        _add_measurements(imp.circuit, tape, wire_order)
        w = torch.stack([torch.as_tensor(v, dtype=torch.float64).detach() for v in imp.weights]) \
            if imp.weights else torch.zeros(0, dtype=torch.float64)
        return imp.circuit, w
    if not isinstance(tape_or_qnode, qml.QNode):
        raise TypeError(f"from_pennylane: tape_or_qnode must be a QuantumScript or a QNode; "
                        f"got {type(tape_or_qnode).__name__}")
    return _from_qnode(qml, tape_or_qnode, args, kwargs, inputs)


def _add_measurements(circuit, tape, wire_order):
    for mp in tape.measurements:
        if not measurement_from_pennylane(circuit, mp, wire_order):
            raise ValueError(f"from_pennylane: measurements must be qml.expval of a Pauli word or "
                             f"qml.probs; got {mp}")


def _from_qnode(qml, qnode, args, kwargs, inputs):
    sig = inspect.signature(qnode.func)
    bound = sig.bind(*args, **kwargs)
    names = list(bound.arguments)
    if inputs is None:
        inputs = ("inputs",) if "inputs" in names else ()
    inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
    bad = [n for n in inputs if n not in names]
    if bad:
        raise ValueError(f"from_pennylane: inputs must name arguments of the QNode {names}; got {bad}")
    arrays = {}
    for n, v in bound.arguments.items():
        if isinstance(v, (bool, int, str)) or v is None:
            continue
        try:
            arrays[n] = torch.as_tensor(np.asarray(v.detach() if torch.is_tensor(v) else v, dtype=np.float64))
        except (TypeError, ValueError):
            continue

    def trace(values):
        leaves = {n: t.clone().requires_grad_(True) for n, t in values.items()}
        b = dict(bound.arguments)
        b.update(leaves)
        tape = qml.workflow.construct_tape(qnode, level="user")(**b)
        return _decomposed(qml, tape), leaves

    tape, leaves = trace(arrays)
    gen = torch.Generator().manual_seed(0)
    shifted = {n: t + torch.rand(t.shape, generator=gen, dtype=torch.float64) * 0.5 + 0.25 for n, t in arrays.items()}
    tape2, _ = trace(shifted)
    ops, ops2 = tape.operations, tape2.operations
    if [o.name for o in ops] != [o.name for o in ops2]:
        raise ValueError("from_pennylane: the QNode's gates change with its argument values; "
                         "qnn circuits have a fixed structure")
    wire_order = list(tape.wires) if not qnode.device.wires else list(qnode.device.wires)
    in_names = [n for n in names if n in inputs and n in arrays]
    w_names = [n for n in names if n not in inputs and n in arrays]
    in_start, pos = {}, 0
    for n in in_names:
        in_start[n] = pos
        pos += arrays[n].numel()
    c = Circuit(len(wire_order))
    c.new_inputs(pos)
    w_start = {}
    for n in w_names:
        w_start[n] = c.new_weights(n, tuple(arrays[n].shape))[:1] or [c.n_weights]
    index = {w: i for i, w in enumerate(wire_order)}
    order = list(leaves)
    for op, op2 in zip(ops, ops2):
        if op.name in ("Identity", "GlobalPhase"):
            continue
        name = qnn_gate_name(op)
        params = []
        for d, d2 in zip(op.data, op2.data):
            params.append(_traced_param(d, d2, order, leaves, arrays, shifted, in_start, w_start, op.name))
        c.add(name, [index[w] for w in op.wires], params)
    _add_measurements(c, tape, wire_order)
    w = torch.cat([arrays[n].reshape(-1) for n in w_names]) if w_names else torch.zeros(0, dtype=torch.float64)
    return c, w


def _traced_param(d, d2, order, leaves, arrays, shifted, in_start, w_start, opname) -> Param:
    value = float(d.detach()) if torch.is_tensor(d) else float(d)
    value2 = float(d2.detach()) if torch.is_tensor(d2) else float(d2)
    if not (torch.is_tensor(d) and d.requires_grad):
        if abs(value - value2) > 1e-9:
            raise ValueError(f"from_pennylane: an angle of {opname} changes with the arguments but "
                             f"is not traceable by torch autograd")
        return Param.const(value)
    if d.dim() != 0:
        raise ValueError(f"from_pennylane: {opname} has a batched angle; call the QNode with one sample")
    grads = torch.autograd.grad(d, [leaves[n] for n in order], retain_graph=True, allow_unused=True)
    hits = [(n, g) for n, g in zip(order, grads) if g is not None and bool((g != 0).any())]
    if not hits:
        return Param.const(value)
    n, g = hits[0]
    nz = g.reshape(-1).nonzero().flatten()
    if len(hits) > 1 or nz.numel() != 1:
        raise ValueError(f"from_pennylane: each angle must be a * v + b for one argument element v; "
                         f"an angle of {opname} depends on several")
    j = int(nz[0])
    scale = float(g.reshape(-1)[j])
    offset = value - scale * float(arrays[n].reshape(-1)[j])
    if abs(scale * float(shifted[n].reshape(-1)[j]) + offset - value2) > 1e-9 * max(1.0, abs(value2)):
        raise ValueError(f"from_pennylane: an angle of {opname} is not affine in its argument "
                         f"(qnn angles are scale * value + offset)")
    if n in in_start:
        return Param.input(in_start[n] + j, scale, offset)
    return Param.weight(w_start[n][0] + j, scale, offset)
