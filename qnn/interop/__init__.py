"""Circuits in and out: qnn circuits to and from Qiskit, PennyLane and OpenQASM 3.

* :func:`from_qiskit` / :func:`to_qiskit` -- Qiskit ``QuantumCircuit`` (parameters become
  inputs or weights as mapped; gates outside qnn's set are transpiled, with a warning);
* :func:`from_pennylane` -- a PennyLane tape or QNode (templates decomposed; QNode arguments
  traced to inputs and weight blocks);
* :func:`from_qasm` / :func:`to_qasm` -- OpenQASM 3 (through ``qiskit.qasm3``).

One gate table (:mod:`qnn.interop._gates`) serves importers and exporters; the engines'
PennyLane exporter (:func:`qnn.engines.to_pennylane`) uses it too.  ``qnn.interop`` sits
between :mod:`qnn.circuit` and :mod:`qnn.engines`: it imports no engine.

Example:
    >>> import qnn
    >>> c = qnn.Circuit(2); _ = qnn.angle_embedding(c); _ = qnn.basic_entangler_layers(c, 1)
    >>> back = qnn.interop.from_qasm(qnn.interop.to_qasm(c))
    >>> (back.n_inputs, back.n_weights, [g.name for g in back.gates] == [g.name for g in c.gates])
    (2, 2, True)
"""

from qnn.interop._gates import (
    PENNYLANE_NAMES,
    QISKIT_BASIS,
    QISKIT_NAMES,
    pennylane_op,
    qiskit_append,
)
from qnn.interop._pennylane import (
    OperationsImport,
    circuit_from_operations,
    from_pennylane,
    measurement_from_pennylane,
    qnn_gate_name,
    supported_operation,
)
from qnn.interop._qasm import from_qasm, to_qasm
from qnn.interop._qiskit import append_state_prep, from_qiskit, qnn_state_to_qiskit, to_qiskit

__all__ = [
    "PENNYLANE_NAMES",
    "QISKIT_BASIS",
    "QISKIT_NAMES",
    "pennylane_op",
    "qiskit_append",
    "OperationsImport",
    "circuit_from_operations",
    "from_pennylane",
    "measurement_from_pennylane",
    "qnn_gate_name",
    "supported_operation",
    "from_qasm",
    "to_qasm",
    "append_state_prep",
    "from_qiskit",
    "qnn_state_to_qiskit",
    "to_qiskit",
]
