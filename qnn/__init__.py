"""qnn: quantum-classical hybrid machine learning on PyTorch, PennyLane and Qiskit."""

from qnn.circuit import (
    ANSATZE,
    Circuit,
    Gate,
    Measurement,
    Param,
    amplitude_embedding,
    angle_embedding,
    basic_entangler_layers,
    hardware_efficient_layers,
    strongly_entangling_layers,
)

__version__ = "0.1.0"

__all__ = [
    "ANSATZE",
    "Circuit",
    "Gate",
    "Measurement",
    "Param",
    "amplitude_embedding",
    "angle_embedding",
    "basic_entangler_layers",
    "hardware_efficient_layers",
    "strongly_entangling_layers",
]

# Layers and engines are added below as they land (qnn.layers, qnn.engines).
try:  # pragma: no cover - filled in by qnn.layers
    from qnn.layers import QuantumLayer, QuantumLinear  # noqa: F401

    __all__ += ["QuantumLayer", "QuantumLinear"]
except ImportError:  # pragma: no cover
    pass
