"""qnn: quantum-classical hybrid machine learning on PyTorch, PennyLane and Qiskit."""

from qnn.circuit import (
    ANSATZE,
    Circuit,
    Gate,
    Measurement,
    Param,
    PauliExp,
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
    "PauliExp",
    "amplitude_embedding",
    "angle_embedding",
    "basic_entangler_layers",
    "hardware_efficient_layers",
    "strongly_entangling_layers",
]

from qnn import interop  # noqa: E402
from qnn.engines import ENGINE_NAMES, Engine, get_engine  # noqa: E402
from qnn.kan import KANLinear  # noqa: E402
from qnn.layers import QuantumLayer, QuantumLinear, QuanvConv2d  # noqa: E402
from qnn.swap import SwapPlan, SwapReport, swap  # noqa: E402

__all__ += ["interop", "ENGINE_NAMES", "Engine", "get_engine", "KANLinear", "QuantumLayer", "QuantumLinear", "QuanvConv2d",
            "SwapPlan", "SwapReport", "swap"]

# Subpackages (imported on use): qnn.training, qnn.qrnn, qnn.models, qnn.conformal, qnn.explain, qnn.datasets.

from qnn.checkpoint import load, save  # noqa: E402

__all__ += ["save", "load"]
