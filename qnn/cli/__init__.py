"""The ``qnn`` command (console script ``qnn = "qnn.cli:main"``; also ``python -m qnn.cli``).

Subcommands: ``train`` (an experiment from a config file with ``--set key=value`` overrides),
``swap`` (swap layers of a model, print the report), ``hardware`` (estimate the cost of a circuit
workload, submit it to a backend), ``bench`` (run the benchmarks in ``bench/``) and ``demo``
(``qnn demo heart``: the diagnostic page; ``qnn demo digits``: the hybrid digits classifier).

Built on click (Pallets; already a dependency of Ray and widely maintained): nested command
groups, ``--help`` generated for every subcommand, and a test runner (``click.testing.CliRunner``).
Errors (bad arguments, missing files, missing data) end the command with one line on stderr and
a non-zero exit status; set ``QNN_DEBUG=1`` to see the traceback instead.
"""

from qnn.cli._main import cli, main

__all__ = ["cli", "main"]
