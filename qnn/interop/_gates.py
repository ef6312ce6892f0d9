"""The one gate mapping table between qnn, PennyLane and Qiskit, used by the importers and the
exporters alike.

Each qnn gate (:data:`qnn.circuit.GATES`) has a PennyLane operation name and a Qiskit
instruction name with the same angle convention, except ``Rot``, which Qiskit has no single
gate for (it is exported as ``rz ry rz`` and comes back as those three gates), and ``MCRY``,
which is an RY controlled on every wire but the last (PennyLane ``C(RY)`` / Qiskit
``RYGate.control(k)``; with one control it is ``CRY``).

Qubit order: qnn wire ``w`` is PennyLane wire ``w`` and Qiskit qubit ``w``.
"""

from __future__ import annotations

from qnn.circuit import GATES

__all__ = [
    "PENNYLANE_NAMES",
    "QISKIT_NAMES",
    "QNN_FROM_PENNYLANE",
    "QNN_FROM_QISKIT",
    "QISKIT_BASIS",
    "qiskit_append",
    "pennylane_op",
]

# qnn name -> PennyLane operation name
PENNYLANE_NAMES: dict[str, str] = {
    "RX": "RX",
    "RY": "RY",
    "RZ": "RZ",
    "Rot": "Rot",
    "PhaseShift": "PhaseShift",
    "H": "Hadamard",
    "X": "PauliX",
    "Y": "PauliY",
    "Z": "PauliZ",
    "CNOT": "CNOT",
    "CZ": "CZ",
    "CRX": "CRX",
    "CRY": "CRY",
    "CRZ": "CRZ",
    "SWAP": "SWAP",
    "MCRY": "C(RY)",
}

# qnn name -> Qiskit instruction name (None: no single Qiskit gate)
QISKIT_NAMES: dict[str, str | None] = {
    "RX": "rx",
    "RY": "ry",
    "RZ": "rz",
    "Rot": None,
    "PhaseShift": "p",
    "H": "h",
    "X": "x",
    "Y": "y",
    "Z": "z",
    "CNOT": "cx",
    "CZ": "cz",
    "CRX": "crx",
    "CRY": "cry",
    "CRZ": "crz",
    "SWAP": "swap",
    "MCRY": None,  # a ControlledGate on "ry"
}

assert set(PENNYLANE_NAMES) == set(GATES) == set(QISKIT_NAMES), "interop: the gate table must cover qnn.GATES"

QNN_FROM_PENNYLANE: dict[str, str] = {v: k for k, v in PENNYLANE_NAMES.items() if k != "MCRY"}
QNN_FROM_QISKIT: dict[str, str] = {v: k for k, v in QISKIT_NAMES.items() if v is not None}
# what a Qiskit circuit is transpiled to when it uses gates outside the table
QISKIT_BASIS: tuple[str, ...] = tuple(QNN_FROM_QISKIT)


def qiskit_append(qc, name: str, wires: tuple[int, ...], angles: list) -> None:
    """Append qnn gate ``name`` on ``wires`` with ``angles`` (numbers or Qiskit parameter
    expressions) to the Qiskit circuit ``qc``."""
    if name == "Rot":  # Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)
        qc.rz(angles[0], wires[0])
        qc.ry(angles[1], wires[0])
        qc.rz(angles[2], wires[0])
        return
    if name == "MCRY":
        from qiskit.circuit.library import RYGate

        qc.append(RYGate(angles[0]).control(len(wires) - 1), list(wires))
        return
    qname = QISKIT_NAMES.get(name)
    if qname is None:
        raise ValueError(f"qiskit_append: name must be a qnn gate {sorted(GATES)}; got {name!r}")
    getattr(qc, qname)(*angles, *wires)


def pennylane_op(name: str, wires: tuple[int, ...], angles: list):
    """The PennyLane operation of qnn gate ``name`` (queued when called inside a tape or QNode)."""
    import pennylane as qml

    w = list(wires)
    if name == "MCRY":
        return qml.ctrl(qml.RY(angles[0], wires=w[-1]), control=w[:-1])
    plname = PENNYLANE_NAMES.get(name)
    if plname is None:
        raise ValueError(f"pennylane_op: name must be a qnn gate {sorted(GATES)}; got {name!r}")
    return getattr(qml, plname)(*angles, wires=w)
