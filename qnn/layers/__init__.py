"""Quantum layers that follow ``torch.nn`` conventions.

* :class:`QuantumLayer` wraps any :class:`qnn.Circuit`; :func:`forward_many` runs several of
  one circuit structure (own weights, own inputs) in one engine call;
* :class:`QuantumLinear` builds an embedding + ansatz + readout circuit and is a drop-in
  replacement for :class:`torch.nn.Linear` (``QuantumLinear.from_linear``);
* :class:`QuanvConv2d` applies one such circuit to every patch, a drop-in replacement for
  :class:`torch.nn.Conv2d` (``QuanvConv2d.from_conv2d``);
* :class:`FlippedQuanv3x3` and :class:`DataReUploadingLinear` are the two quantum layers of
  "Let the Quantum Creep In" (arXiv 2409.17583), exact and fast (``mode="physical"`` or
  ``"paper"``), replacing ``nn.Conv2d(C, C', 3)`` and ``nn.Linear`` (``from_conv2d`` /
  ``from_linear``).

All accept inputs of shape ``(*, in)`` (images ``(N, C, H, W)``) and return outputs on the
input's device.  The circuit layers (QuantumLayer, QuantumLinear, QuanvConv2d) run on any engine
from :func:`qnn.engines.get_engine`; the two paper layers are simulated in plain torch (their
hardware form: ``FlippedQuanv3x3.pauli_expectations``).
"""

from qnn.layers._flipped import FlippedQuanv3x3
from qnn.pauli import pauli_sum
from qnn.layers._quantum import DEFAULT_QUBIT_BUDGET, QuantumLayer, QuantumLinear, auto_config, forward_many, z_words
from qnn.layers._quanv import QuanvConv2d
from qnn.layers._reupload import DataReUploadingLinear

__all__ = ["DEFAULT_QUBIT_BUDGET", "DataReUploadingLinear", "FlippedQuanv3x3", "QuantumLayer", "QuantumLinear",
           "QuanvConv2d", "auto_config", "forward_many", "pauli_sum", "z_words"]
