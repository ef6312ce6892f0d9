"""Lazy imports of optional SDKs (PennyLane, Qiskit, Qiskit Aer, qiskit-ibm-runtime, numba).

``import qnn`` never needs an optional SDK: the engines call :func:`import_optional` when they
are constructed, and a missing package raises :class:`ImportError` that names the pip command
(and the ``qnn`` extra) that installs it.

Example:
    >>> from qnn._optional import import_optional
    >>> np = import_optional("numpy")
    >>> np.__name__
    'numpy'
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["import_optional", "OPTIONAL_PACKAGES"]

# top-level module -> (pip package, qnn extra that installs it)
OPTIONAL_PACKAGES: dict[str, tuple[str, str | None]] = {
    "pennylane": ("pennylane", "pennylane"),
    "pennylane_lightning": ("pennylane-lightning", "pennylane"),
    "qiskit": ("qiskit", "qiskit"),
    "qiskit_aer": ("qiskit-aer", "qiskit"),
    "qiskit_qasm3_import": ("qiskit-qasm3-import", "qiskit"),
    "qiskit_ibm_runtime": ("qiskit-ibm-runtime", "ibm"),
    "numba": ("numba", "fast"),  # the torch engine's compiled small-register kernels (else numpy)
}


def import_optional(module: str, *, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise an :class:`ImportError` that says what to install.

    Args:
        module (str): dotted module name, e.g. ``"qiskit_aer.primitives"``.
        feature (str | None): what needs it, used in the message (e.g. ``"QiskitEngine"``).

    Returns:
        The imported module.

    Raises:
        ImportError: the module (or one of its dependencies) cannot be imported; the message
            names the pip package and the ``qnn`` extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        pip_name, extra = OPTIONAL_PACKAGES.get(top, (top.replace("_", "-"), None))
        who = f"{feature} needs" if feature else "This feature needs"
        hint = f"pip install {pip_name}"
        if extra is not None:
            hint += f"  (or: pip install qnn[{extra}])"
        raise ImportError(
            f"{who} the optional package {pip_name!r}, which could not be imported "
            f"({type(exc).__name__}: {exc}). Install it with: {hint}"
        ) from exc
