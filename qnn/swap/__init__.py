"""Layer swap ("Let the Quantum Creep In", arXiv 2409.17583): replace classical layers of any
torch model by quantum layers with matching input and output, one group at a time.

* :func:`swap` — a copy of a model with selected modules replaced, and a :class:`SwapReport`;
* :class:`SwapPlan` — the gradual schedules (cumulative in a given order, or every subset),
  each step a named configuration to train;
* :class:`Rule`, :func:`default_factory` — what is replaced and by what.
"""

from qnn.swap._plan import SwapPlan, SwapStep
from qnn.swap._report import SwapReport, SwapRow, n_params
from qnn.swap._rules import Rule, default_factory
from qnn.swap._swap import select, swap

__all__ = ["Rule", "SwapPlan", "SwapReport", "SwapRow", "SwapStep", "default_factory", "n_params", "select", "swap"]
