"""Portable checkpoints of qnn models (see :mod:`qnn.checkpoint._checkpoint`)."""

from qnn.checkpoint._checkpoint import FORMAT, CheckpointError, load, move_to_engine, parity_report, save

__all__ = ["save", "load", "CheckpointError", "FORMAT", "move_to_engine", "parity_report"]
