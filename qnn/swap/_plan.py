"""Gradual swap schedules: which groups of layers are quantum at each step."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from torch import nn

from qnn.layers import DEFAULT_QUBIT_BUDGET
from qnn.swap._report import SwapReport, n_params
from qnn.swap._swap import select, swap

__all__ = ["SwapPlan", "SwapStep"]

SCHEDULES = ("cumulative", "subsets")


def _label(group) -> str:
    if isinstance(group, str):
        return group
    if isinstance(group, type):
        return group.__name__
    return "+".join(g if isinstance(g, str) else g.__name__ for g in group)


@dataclass(frozen=True)
class SwapStep:
    """One configuration of a plan: ``name``, the groups swapped (labels), and how to build it."""

    name: str
    swapped: tuple[str, ...]
    plan: "SwapPlan" = field(repr=False, compare=False)

    def build(self, *, seed: int | None = None) -> tuple[nn.Module, SwapReport]:
        """A fresh copy of the plan's model with this step's groups swapped (the classical
        model itself, deep-copied, for the step that swaps nothing; its report is empty)."""
        return self.plan.build(self.swapped, seed=seed)


class SwapPlan:
    """The steps of a gradual layer swap.

    Args:
        model: the classical model (never changed).
        groups: the groups to swap, in order: each a qualified name, a tuple of names swapped
            together, a name pattern or a module type (e.g. ``[("conv1", "conv2"), "fc"]``, the
            paper's sequence: both convolutions, then the linear layer).
        schedule: ``"cumulative"`` (step k swaps the first k groups: ``level0`` .. ``levelK``)
            or ``"subsets"`` (all ``2**K`` combinations, named by their groups, ``"classical"``
            for none).
        factories: optional ``{group label: factory}``; other groups use the default factory.
        engine, engine_options, qubit_budget: passed to :func:`swap`.

    Every group must select at least one module, and no module may belong to two groups: both
    are checked here, and every step is built once here so that a match that cannot work is
    refused at construction.

    Example:
        >>> import qnn
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2))
        >>> plan = qnn.SwapPlan(net, ["0", "2"], schedule="subsets")
        >>> [s.name for s in plan]
        ['classical', '0', '2', '0+2']
        >>> model, report = plan["0+2"].build(seed=0)
        >>> report.names
        ['0', '2']
    """

    def __init__(self, model: nn.Module, groups, *, schedule: str = "cumulative", factories: dict | None = None,
                 engine: Any = "torch", engine_options: dict | None = None,
                 qubit_budget: int = DEFAULT_QUBIT_BUDGET):
        if not isinstance(model, nn.Module):
            raise TypeError(f"SwapPlan: model must be a torch.nn.Module; got {type(model).__name__}")
        if schedule not in SCHEDULES:
            raise ValueError(f"SwapPlan: schedule must be one of {list(SCHEDULES)}; got {schedule!r}")
        if isinstance(groups, (str, type)) or not groups:
            raise ValueError(f"SwapPlan: groups must be a non-empty list of groups; got {groups!r}")
        self.model = model
        self.groups = list(groups)
        self.labels = [_label(g) for g in self.groups]
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"SwapPlan: groups must be distinct; got {self.labels}")
        factories = dict(factories or {})
        unknown = sorted(set(factories) - set(self.labels))
        if unknown:
            raise ValueError(f"SwapPlan: factories name unknown groups {unknown}; the groups are {self.labels}")
        self.factories = factories
        self.schedule = schedule
        self.engine, self.engine_options, self.qubit_budget = engine, engine_options, qubit_budget
        owner: dict[int, str] = {}
        for label, group in zip(self.labels, self.groups):
            found = select(model, group)
            if not found:
                raise ValueError(f"SwapPlan: group {label!r} selects no module of {type(model).__name__}")
            for names, mod, _ in found:
                if id(mod) in owner:
                    raise ValueError(f"SwapPlan: module {names[0]!r} is in groups {owner[id(mod)]!r} and {label!r}")
                owner[id(mod)] = label
        k = len(self.groups)
        if schedule == "cumulative":
            subsets = [tuple(self.labels[:i]) for i in range(k + 1)]
            names = [f"level{i}" for i in range(k + 1)]
        else:
            subsets = [tuple(self.labels[j] for j in idx) for r in range(k + 1) for idx in combinations(range(k), r)]
            names = ["+".join(s) if s else "classical" for s in subsets]
        self.steps = [SwapStep(n, s, self) for n, s in zip(names, subsets)]
        if subsets:
            self.build(tuple(self.labels))  # every group at once: refuses impossible matches now

    def rules(self, swapped) -> dict:
        out = {}
        for label in swapped:
            group = self.groups[self.labels.index(label)]
            out[tuple(group) if isinstance(group, list) else group] = self.factories.get(label)
        return out

    def build(self, swapped, *, seed: int | None = None) -> tuple[nn.Module, SwapReport]:
        """The model with the groups ``swapped`` (labels) replaced."""
        unknown = [s for s in swapped if s not in self.labels]
        if unknown:
            raise ValueError(f"SwapPlan: unknown groups {unknown}; the groups are {self.labels}")
        if not swapped:
            n = n_params(self.model)
            return copy.deepcopy(self.model), SwapReport([], n, n)
        return swap(self.model, self.rules(swapped), engine=self.engine, engine_options=self.engine_options,
                    qubit_budget=self.qubit_budget, seed=seed)

    def __iter__(self):
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, key) -> SwapStep:
        if isinstance(key, int):
            return self.steps[key]
        for s in self.steps:
            if s.name == key:
                return s
        raise KeyError(f"SwapPlan: no step named {key!r}; the steps are {[s.name for s in self.steps]}")

    def __repr__(self) -> str:
        return f"SwapPlan(schedule={self.schedule!r}, groups={self.labels}, steps={len(self.steps)})"
