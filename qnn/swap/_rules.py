"""Which modules a swap replaces, and with what: rules and the default factories."""

from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from qnn.layers import QuantumLinear, QuanvConv2d, auto_config

__all__ = ["Rule", "default_factory", "normalize_rules", "call_factory"]

#: ``factory(module, **context)``: the replacement of ``module``.  The context holds ``name``
#: (qualified name), ``engine``, ``engine_options``, ``qubit_budget`` and ``seed``; a factory
#: may accept any subset of these as keywords (or ``**kwargs``).
Factory = Callable[..., nn.Module]


@dataclass(frozen=True)
class Rule:
    """Replace the modules that ``selector`` matches with ``factory(module, ...)``.

    ``selector`` is a module type or tuple of types (``isinstance``), a qualified-name pattern
    (``"features.*"``, shell-style, as ``fnmatch``; a plain name matches itself), or a tuple of
    qualified names.  ``factory`` None means :func:`default_factory`."""

    selector: Any
    factory: Factory | None = None

    def matches(self, name: str, module: nn.Module) -> bool:
        sel = self.selector
        if isinstance(sel, type) or (isinstance(sel, tuple) and sel and all(isinstance(t, type) for t in sel)):
            return isinstance(module, sel)
        if isinstance(sel, str):
            return fnmatch.fnmatchcase(name, sel)
        return name in sel

    def describe(self) -> str:
        sel = self.selector
        if isinstance(sel, type):
            return f"nn.{sel.__name__}" if sel.__module__.startswith("torch.nn") else sel.__name__
        if isinstance(sel, tuple) and all(isinstance(t, type) for t in sel):
            return "(" + ", ".join(t.__name__ for t in sel) + ")"
        return repr(sel)


def _selector(sel, where: str):
    if isinstance(sel, type):
        if not issubclass(sel, nn.Module):
            raise TypeError(f"swap: a rule's type must be an nn.Module subclass; got {sel.__name__} ({where})")
        return sel
    if isinstance(sel, str):
        if not sel:
            raise ValueError(f"swap: a name pattern must not be empty ({where})")
        return sel
    if isinstance(sel, (list, tuple, set, frozenset)) and sel:
        items = tuple(sel)
        if all(isinstance(t, type) and issubclass(t, nn.Module) for t in items):
            return items
        if all(isinstance(t, str) and t for t in items):
            return items
    raise TypeError(
        f"swap: a rule selects by an nn.Module type, a name pattern (str) or a list of names; got {sel!r} ({where})")


def normalize_rules(rules) -> list[Rule]:
    """Rules from what a user writes: a type, a pattern, a list of names, a :class:`Rule`, a
    dict ``{selector: factory or None}``, or a list of these (the first matching rule wins)."""
    if isinstance(rules, Rule):
        return [rules]
    if isinstance(rules, dict):
        out = []
        for sel, fac in rules.items():
            if fac is not None and not callable(fac):
                raise TypeError(f"swap: the factory for {sel!r} must be callable or None; got {type(fac).__name__}")
            out.append(Rule(_selector(sel, f"rule {sel!r}"), fac))
        if not out:
            raise ValueError("swap: rules must select at least one module; got an empty dict")
        return out
    if isinstance(rules, list) and rules and all(isinstance(r, (Rule, dict)) for r in rules):
        return [r for item in rules for r in normalize_rules(item)]
    return [Rule(_selector(rules, "rules"))]


def call_factory(factory: Factory, module: nn.Module, context: dict) -> nn.Module:
    """Call ``factory(module, ...)`` with the context keywords it accepts."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature
        return factory(module)
    params = sig.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return factory(module, **context)
    names = {p.name for p in params}
    return factory(module, **{k: v for k, v in context.items() if k in names})


def default_factory(module: nn.Module, *, engine="torch", engine_options=None, qubit_budget: int = 20,
                    seed: int | None = None, name: str = "") -> nn.Module:
    """The quantum layer of matching shape for ``nn.Linear`` (:class:`QuantumLinear`) and
    ``nn.Conv2d`` (:class:`QuanvConv2d`), encoding and readout chosen by
    :func:`qnn.layers.auto_config`, the bias copied as a warm start."""
    common = dict(engine=engine, engine_options=engine_options, qubit_budget=qubit_budget, seed=seed)
    if isinstance(module, nn.Linear):
        return QuantumLinear.from_linear(module, **auto_config(module.in_features, module.out_features), **common)
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size
        cfg = auto_config(module.in_channels * k[0] * k[1], module.out_channels)
        return QuanvConv2d.from_conv2d(module, **cfg, **common)
    raise TypeError(
        f"swap: no default quantum layer for {type(module).__name__} {name!r}; give a factory, e.g. "
        f"qnn.swap(model, {{{type(module).__name__}: make_layer}})")
