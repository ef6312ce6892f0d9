"""qnn's torch engine as a PennyLane device: ``qml.device("qnn.torch", wires=n)``.

Registered through the ``pennylane.plugins`` entry point (``qnn.torch``); it sits above
:mod:`qnn.engines` (it runs the torch engine) and uses :mod:`qnn.interop` to read tapes.  An
existing QNode or ``qml.qnn.TorchLayer`` moves onto it by changing the device name only.

Example:
    >>> import pennylane as qml, torch
    >>> from qnn.pennylane_device import QnnTorchDevice
    >>> dev = QnnTorchDevice(wires=2)
    >>> @qml.qnode(dev, interface="torch")
    ... def f(x):
    ...     qml.AngleEmbedding(x, wires=[0, 1]); qml.CNOT([0, 1])
    ...     return qml.expval(qml.Z(1))
    >>> f(torch.zeros(4, 2)).shape  # parameter broadcasting: one batched run
    torch.Size([4])
"""

from qnn.pennylane_device._device import QnnTorchDevice

__all__ = ["QnnTorchDevice"]
