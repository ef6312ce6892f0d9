"""Quantum layers that follow ``torch.nn`` conventions.

* :class:`QuantumLayer` wraps any :class:`qnn.Circuit`;
* :class:`QuantumLinear` builds an embedding + ansatz + readout circuit and is a drop-in
  replacement for :class:`torch.nn.Linear` (``QuantumLinear.from_linear``);
* :class:`QuanvConv2d` applies one such circuit to every patch, a drop-in replacement for
  :class:`torch.nn.Conv2d` (``QuanvConv2d.from_conv2d``).

All accept inputs of shape ``(*, in)`` and return ``(*, out)`` on the input's device, in the
input's float dtype, and run on any engine from :func:`qnn.engines.get_engine`.
"""

from qnn.layers._quantum import DEFAULT_QUBIT_BUDGET, QuantumLayer, QuantumLinear, auto_config, z_words
from qnn.layers._quanv import QuanvConv2d

__all__ = ["DEFAULT_QUBIT_BUDGET", "QuantumLayer", "QuantumLinear", "QuanvConv2d", "auto_config", "z_words"]
