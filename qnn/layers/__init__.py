"""Quantum layers that follow ``torch.nn`` conventions.

* :class:`QuantumLayer` wraps any :class:`qnn.Circuit`;
* :class:`QuantumLinear` builds an embedding + ansatz circuit and is a drop-in replacement for
  :class:`torch.nn.Linear`.
* :class:`FlippedQuanv3x3` and :class:`DataReUploadingLinear` are the two quantum layers of
  "Let the Quantum Creep In" (arXiv 2409.17583), exact and fast (``mode="physical"`` or ``"paper"``).

All accept inputs of shape ``(*, in)`` and return ``(*, out)`` on the input's device, in the
input's float dtype, and run on any engine from :func:`qnn.engines.get_engine`.
"""

from qnn.layers._quantum import QuantumLayer, QuantumLinear
from qnn.layers._flipped import FlippedQuanv3x3
from qnn.layers._reupload import DataReUploadingLinear
from qnn.layers._pauli import pauli_sum

__all__ = ["QuantumLayer", "QuantumLinear"]
__all__ += ["FlippedQuanv3x3", "DataReUploadingLinear", "pauli_sum"]
