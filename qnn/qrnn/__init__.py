"""Recurrent quantum neural networks (Bausch, NeurIPS 2020): quantum neuron, QRNN cell and
sequence model with a fast batched simulator, an explicit-ancilla reference, and
PennyLane / Qiskit exports."""

from qnn.qrnn._cell import QRNN, CellOutput, QRNNCell, QRNNOutput, num_parameters
from qnn.qrnn._neuron import (
    MODES,
    NeuronOutput,
    QuantumNeuron,
    activation,
    branch_coefficients,
    num_subsets,
    subset_masks,
    subset_sum,
)
from qnn.qrnn._train import evaluate_sequences, loss_offset, qrnn_loss, word_error_rate

__all__ = [
    "MODES",
    "QRNN",
    "QRNNCell",
    "QRNNOutput",
    "CellOutput",
    "QuantumNeuron",
    "NeuronOutput",
    "activation",
    "branch_coefficients",
    "num_parameters",
    "num_subsets",
    "subset_masks",
    "subset_sum",
    "qrnn_loss",
    "loss_offset",
    "word_error_rate",
    "evaluate_sequences",
]
