"""``swap``: a copy of a torch model with some of its modules replaced by quantum layers."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from qnn.layers import DEFAULT_QUBIT_BUDGET
from qnn.swap._report import SwapReport, SwapRow, n_params
from qnn.swap._rules import Rule, call_factory, default_factory, normalize_rules

__all__ = ["swap", "select"]

# attributes that must agree between a module and its replacement, when both have them
_SHAPE_ATTRS = ("in_features", "out_features", "in_channels", "out_channels", "kernel_size", "stride", "padding")


def select(model: nn.Module, rules) -> list[tuple[list[str], nn.Module, Rule]]:
    """The modules ``rules`` select, outermost first: ``(names, module, rule)``, with every
    name of a shared module; the children of a selected module are not searched.  A rule that
    lists names must find each of them."""
    rules = normalize_rules(rules)
    names_of: dict[int, list[str]] = {}
    modules: dict[int, nn.Module] = {}
    for name, mod in model.named_modules(remove_duplicate=False):
        names_of.setdefault(id(mod), []).append(name)
        modules[id(mod)] = mod
    all_names = [n for ns in names_of.values() for n in ns]
    for r in rules:
        if isinstance(r.selector, tuple) and r.selector and isinstance(r.selector[0], str):
            missing = [n for n in r.selector if n not in all_names]
            if missing:
                raise ValueError(f"swap: no module named {missing}; the model's modules are "
                                 f"{[n for n in all_names if n][:40]}")
    chosen: list[tuple[list[str], nn.Module, Rule]] = []
    taken: set[int] = set()
    for name, mod in model.named_modules(remove_duplicate=False):
        if not name or id(mod) in taken or any(name.startswith(n + ".") for ns, _, _ in chosen for n in ns):
            continue
        for r in rules:
            if r.matches(name, mod):
                chosen.append((names_of[id(mod)], mod, r))
                taken.add(id(mod))
                break
    return chosen


def _check_shapes(name: str, old: nn.Module, new: nn.Module) -> None:
    if not isinstance(new, nn.Module):
        raise TypeError(f"swap: the factory for {name!r} must return an nn.Module; got {type(new).__name__}")
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v) if isinstance(v, (tuple, list)) else v  # noqa: E731
    for a in _SHAPE_ATTRS:
        if hasattr(old, a) and hasattr(new, a) and pair(getattr(old, a)) != pair(getattr(new, a)):
            raise ValueError(f"swap: the replacement of {name!r} must keep {a}={getattr(old, a)!r}; "
                             f"got {getattr(new, a)!r} from {type(new).__name__}")


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)  # Sequential, ModuleList and ModuleDict keep children under their names


def swap(model: nn.Module, rules, *, engine: Any = "torch", engine_options: dict | None = None,
         qubit_budget: int = DEFAULT_QUBIT_BUDGET, seed: int | None = None,
         inplace: bool = False) -> tuple[nn.Module, SwapReport]:
    """Replace the modules of ``model`` that ``rules`` select by quantum layers of matching
    input and output.

    Args:
        model: any ``torch.nn.Module``; nested modules, ``nn.Sequential``, ``ModuleList`` and
            ``ModuleDict`` are searched by qualified name (``"features.0"``); a module shared under
            several names is replaced once and stays shared.
        rules: what to replace and by what: a module type (``nn.Linear``), a tuple of types, a
            qualified-name pattern (``"classifier.*"``), a tuple of names, or a dict
            ``{selector: factory}`` (``factory(module, **context) -> nn.Module``, or None for
            the default: :class:`~qnn.layers.QuantumLinear` for ``nn.Linear``,
            :class:`~qnn.layers.QuanvConv2d` for ``nn.Conv2d``, encoding and readout from
            :func:`qnn.layers.auto_config`, bias copied); the first matching rule wins.
        engine, engine_options: the engine of the new layers (``"torch"``, ``"pennylane"``,
            ``"qiskit"``, ``"ibm"`` or an Engine) — passed to every factory.
        qubit_budget: most qubits per quantum layer; a match that needs more is refused here,
            with the alternatives, before any model is changed.
        seed: seeds the new layers' initial weights (each layer gets ``seed + its index``).
        inplace: change ``model`` itself instead of a deep copy.

    Returns:
        ``(new_model, report)``; :class:`SwapReport` lists what was replaced by what.

    Raises:
        ValueError / TypeError: nothing matched, a listed name is missing, no default layer
            exists for a type, or a replacement cannot match (the message names the module and
            what would work).

    Example:
        >>> import torch, qnn
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2))
        >>> hybrid, report = qnn.swap(net, nn.Linear, seed=0)
        >>> [type(m).__name__ for m in hybrid]
        ['QuantumLinear', 'Tanh', 'QuantumLinear']
        >>> hybrid(torch.rand(3, 6)).shape, type(net[0]).__name__
        (torch.Size([3, 2]), 'Linear')
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"swap: model must be a torch.nn.Module; got {type(model).__name__}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"swap: seed must be an int or None; got {seed!r}")
    chosen = select(model, rules)
    if not chosen:
        raise ValueError(f"swap: the rules {[r.describe() for r in normalize_rules(rules)]} match no module of "
                         f"{type(model).__name__}")
    # build every replacement first, from the original modules: a refused match changes nothing
    replacements = []
    for i, (names, old, rule) in enumerate(chosen):
        context = {"name": names[0], "engine": engine, "engine_options": engine_options,
                   "qubit_budget": qubit_budget, "seed": None if seed is None else seed + i}
        try:
            new = call_factory(rule.factory or default_factory, old, context)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"swap: cannot replace {names[0]!r} ({old}): {exc}") from None
        _check_shapes(names[0], old, new)
        replacements.append((names, old, new))
    before = n_params(model)
    target = model if inplace else copy.deepcopy(model)
    for names, _, new in replacements:
        for name in names:
            _set(target, name, new)
    report = SwapReport([SwapRow.of(names, old, new) for names, old, new in replacements], before, n_params(target))
    return target, report
