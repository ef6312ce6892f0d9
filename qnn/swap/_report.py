"""What a swap replaced: one row per replaced module, printable as a table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import nn

__all__ = ["SwapRow", "SwapReport", "n_params"]


def n_params(module: nn.Module) -> int:
    """Trainable entries of ``module`` (a complex entry counts once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _shape(module: nn.Module) -> str:
    if hasattr(module, "in_features"):
        return f"{module.in_features}->{module.out_features}"
    if hasattr(module, "in_channels"):
        k = getattr(module, "kernel_size", "?")
        k = f"{k[0]}x{k[1]}" if isinstance(k, tuple) else str(k)
        return f"{module.in_channels}->{module.out_channels} ({k})"
    return ""


def _engine(module: nn.Module) -> str:
    eng = getattr(module, "engine", None)
    if eng is None and hasattr(module, "quantum"):
        eng = getattr(module.quantum, "engine", None)
    if eng is None:  # a layer simulated in plain torch (FlippedQuanv3x3, DataReUploadingLinear)
        return "-"
    return getattr(eng, "name", type(eng).__name__)


@dataclass
class SwapRow:
    """One replaced module (several names when it was shared)."""

    names: list[str]
    old: str
    new: str
    shape: str
    params_before: int
    params_after: int
    n_qubits: int | None
    depth: int | None
    engine: str

    @classmethod
    def of(cls, names: list[str], old: nn.Module, new: nn.Module) -> "SwapRow":
        circuit = getattr(new, "circuit", None)
        depth = getattr(circuit, "depth", None) if circuit is not None else getattr(new, "circuit_depth", None)
        return cls(list(names), type(old).__name__, type(new).__name__, _shape(old), n_params(old), n_params(new),
                   getattr(new, "n_qubits", None), depth, _engine(new))


@dataclass
class SwapReport:
    """The rows of a swap, and the whole model's trainable parameters before and after.

    ``str(report)`` is a fixed-width table; :meth:`to_markdown` and :meth:`to_dict` give the
    same content for files."""

    rows: list[SwapRow] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def names(self) -> list[str]:
        return [n for r in self.rows for n in r.names]

    def _table(self) -> tuple[list[str], list[list[str]]]:
        head = ["module", "was", "now", "shape", "qubits", "depth", "params before", "params after", "engine"]
        body = [[", ".join(r.names), r.old, r.new, r.shape, "-" if r.n_qubits is None else str(r.n_qubits),
                 "-" if r.depth is None else str(r.depth), f"{r.params_before:,}", f"{r.params_after:,}", r.engine]
                for r in self.rows]
        body.append(["(whole model)", "", "", "", "", "", f"{self.params_before:,}", f"{self.params_after:,}", ""])
        return head, body

    def __str__(self) -> str:
        head, body = self._table()
        widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head))]
        line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
        return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in body])

    def to_markdown(self) -> str:
        head, body = self._table()
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(r) + " |" for r in body])

    def to_dict(self) -> dict:
        return {"rows": [asdict(r) for r in self.rows], "params_before": self.params_before,
                "params_after": self.params_after}
