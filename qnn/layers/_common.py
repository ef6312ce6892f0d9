"""What the layers share: argument checks, the paper layers' modes and initialisation, and
building a quantum layer from the classical one it replaces."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["MODES", "pos_int", "paper_layer_dtypes", "randn_reset", "from_classical", "EngineRef", "circuit_engine"]

MODES = ("physical", "paper")


def pos_int(value: Any, what: str, owner: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{owner}: {what} must be an int >= {minimum}; got {value!r}")
    return value


def paper_layer_dtypes(owner: str, mode: str, seed, dtype) -> tuple[torch.dtype, torch.dtype]:
    """Check a paper layer's ``mode``, ``seed`` and real ``dtype``; returns ``(real dtype,
    parameter dtype)`` (complex in paper mode)."""
    if mode not in MODES:
        raise ValueError(f"{owner}: mode must be one of {list(MODES)}; got {mode!r}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise TypeError(f"{owner}: seed must be an int or None; got {seed!r}")
    if dtype is None:
        dtype = torch.get_default_dtype()
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{owner}: dtype must be torch.float32 or torch.float64; got {dtype}")
    pdtype = dtype if mode == "physical" else (torch.complex128 if dtype == torch.float64 else torch.complex64)
    return dtype, pdtype


def randn_reset(layer: nn.Module) -> None:
    """randn ``weight`` and ``bias``, repeatable with ``layer.seed``.  Paper mode: real randn
    cast to complex (creep.md §2), so the imaginary parts start at zero and only training moves
    them (a complex-normal draw would overflow the exponential at n = 7)."""
    gen = torch.Generator(device="cpu").manual_seed(layer.seed) if layer.seed is not None else None
    with torch.no_grad():
        real = layer.weight.real.dtype if layer.weight.is_complex() else layer.weight.dtype
        layer.weight.copy_(torch.randn(layer.weight.shape, dtype=real, generator=gen))
        if layer.bias is not None:
            layer.bias.copy_(torch.randn(layer.bias.shape, dtype=real, generator=gen))


def from_classical(cls, classical: nn.Module, args: tuple, kwargs: dict, copy_bias: bool):
    """``cls(*args, **kwargs)`` with the bias flag, device and float dtype of ``classical``
    (unless given), its bias copied as a warm start when ``copy_bias``."""
    kwargs.setdefault("bias", classical.bias is not None)
    kwargs.setdefault("device", classical.weight.device)
    if classical.weight.dtype in (torch.float32, torch.float64):
        kwargs.setdefault("dtype", classical.weight.dtype)
    q = cls(*args, **kwargs)
    if copy_bias and q.bias is not None and classical.bias is not None:
        with torch.no_grad():
            q.bias.copy_(classical.bias.detach().to(q.bias.dtype))
    return q


class EngineRef:
    """A paper layer's circuit engine.  Deep copies of the layer share it (an engine holds
    caches and SDK handles, no trainable state); pickling keeps the engine's name and options
    and rebuilds it (an engine given as an instance cannot be pickled)."""

    def __init__(self, engine, options: dict | None):
        from qnn.engines import get_engine

        self.spec = (engine, dict(options or {})) if isinstance(engine, str) else None
        self.engine = get_engine(engine, **(options or {}))

    def __deepcopy__(self, memo):
        return self

    def __getstate__(self):
        if self.spec is None:
            raise TypeError(f"EngineRef: an engine given as an instance ({self.engine!r}) cannot be pickled; "
                            "build the layer with an engine name (engine='qiskit', engine_options={...})")
        return {"spec": self.spec}

    def __setstate__(self, state):
        from qnn.engines import get_engine

        self.spec = state["spec"]
        self.engine = get_engine(self.spec[0], **self.spec[1])


def circuit_engine(owner: str, engine, engine_options, mode: str) -> EngineRef | None:
    """The layer's circuit engine (None: the dense torch path).  ``mode="paper"`` is refused:
    its complex parameters make ``exp(i sum theta P)`` non-unitary, which no circuit applies."""
    if engine is None:
        if engine_options:
            raise ValueError(f"{owner}: engine_options need an engine; got engine=None")
        return None
    if mode == "paper":
        name = engine if isinstance(engine, str) else type(engine).__name__
        raise ValueError(
            f"{owner}: mode='paper' cannot run on a circuit engine (got engine={name!r}): its complex "
            "parameters make exp(i sum_k theta_k P_k) non-unitary, and a circuit can only apply unitary "
            "gates; use mode='physical' on the engine, or engine=None (the dense torch path) for mode='paper'")
    return EngineRef(engine, engine_options)
