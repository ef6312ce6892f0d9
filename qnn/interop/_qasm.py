"""OpenQASM 3 in and out, through Qiskit (``qiskit.qasm3``; loading needs
``qiskit_qasm3_import``).

:func:`to_qasm` writes the circuit :func:`~qnn.interop.to_qiskit` builds: inputs become
``input float[64] _x_i_;`` and weights ``_w_k_``, which :func:`from_qasm` maps back to inputs
``i`` and weights ``k`` (other parameters become weights, or inputs when named in ``inputs``).
Measurements are not written (qnn measurements are expectations, not instructions).
"""

from __future__ import annotations

from qnn._optional import import_optional
from qnn.circuit import Circuit
from qnn.interop._qiskit import from_qiskit, to_qiskit

__all__ = ["to_qasm", "from_qasm"]


def to_qasm(circuit: Circuit) -> str:
    """The OpenQASM 3 program of ``circuit``'s gates (no amplitude embedding: OpenQASM has no
    parametrised state preparation).

    Example:
        >>> import qnn
        >>> c = qnn.Circuit(2); _ = qnn.angle_embedding(c); _ = c.add("CNOT", (0, 1))
        >>> print(to_qasm(c).splitlines()[-1])
        cx q[0], q[1];
    """
    qasm3 = import_optional("qiskit.qasm3", feature="to_qasm")
    if not isinstance(circuit, Circuit):
        raise TypeError(f"to_qasm: circuit must be a qnn.Circuit; got {type(circuit).__name__}")
    if circuit.state_prep is not None:
        raise ValueError("to_qasm: circuit must not start with an amplitude embedding "
                         "(OpenQASM 3 has no parametrised state preparation); got one")
    qc, _, _ = to_qiskit(circuit)
    return qasm3.dumps(qc)


def from_qasm(text: str, inputs=None, weights=None, *, warn: bool = True) -> Circuit:
    """A qnn circuit from an OpenQASM 3 program (``input float`` parameters become inputs or
    weights as in :func:`~qnn.interop.from_qiskit`, which this delegates to)."""
    if not isinstance(text, str):
        raise TypeError(f"from_qasm: text must be an OpenQASM 3 program (str); got {type(text).__name__}")
    qasm3 = import_optional("qiskit.qasm3", feature="from_qasm")
    import_optional("qiskit_qasm3_import", feature="from_qasm")
    return from_qiskit(qasm3.loads(text), inputs, weights, warn=warn)
