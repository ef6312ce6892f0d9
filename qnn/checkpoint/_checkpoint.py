"""Portable checkpoints: ``qnn.save(model, path_or_file)`` / ``qnn.load(path_or_file, engine=None)``.

A checkpoint holds the model's ``state_dict``, a description of its module tree (classes by
import path, constructor-made attributes as plain values), each circuit in qnn's own form and
as OpenQASM 3 (when Qiskit is installed), every engine's configuration, the seeds and the qnn
version -- nothing that needs pickle: the file is read with ``torch.load(weights_only=True)``.
A SHA-256 digest over the payload refuses tampered files; files without qnn's format marker
are refused as foreign; classes outside ``qnn`` and ``torch`` are refused.

Example:
    >>> import io, torch, qnn
    >>> c = qnn.Circuit(1); _ = qnn.angle_embedding(c); _ = c.measure_z()
    >>> buf = io.BytesIO(); qnn.save(qnn.QuantumLayer(c, seed=0), buf); _ = buf.seek(0)
    >>> qnn.load(buf)(torch.zeros(2, 1)).shape
    torch.Size([2, 1])
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os

import numpy as np
import torch
from torch import nn

__all__ = ["save", "load", "CheckpointError", "FORMAT", "move_to_engine", "parity_report"]

FORMAT = "qnn-checkpoint"
VERSION = 1
_ALLOWED = ("qnn.", "torch.")
_INTERNALS = frozenset(nn.Module().__dict__)


class CheckpointError(ValueError):
    """A file that is not a qnn checkpoint, was modified, or names a class qnn will not build."""


def _path_of(obj) -> str:
    t = obj if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__") else type(obj)
    return f"{t.__module__}:{t.__qualname__}"


def _resolve(path: str):
    mod, _, qual = path.partition(":")
    if not (mod + ".").startswith(_ALLOWED) or "<" in qual:
        raise CheckpointError(f"qnn.load: classes must come from qnn or torch; the file names {path!r}")
    obj = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


class _Encoder:
    def __init__(self):
        self.engines, self.circuits, self.seeds = [], [], {}

    def value(self, v, where: str):
        from qnn.circuit import Circuit
        from qnn.engines import Engine

        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (np.integer, np.floating, np.bool_)):
            return v.item()
        if isinstance(v, list):
            return [self.value(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, tuple):
            return {"__tuple__": [self.value(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, (dict,)):
            return {"__dict__": [[self.value(k, where), self.value(x, f"{where}[{k!r}]")] for k, x in v.items()]}
        if isinstance(v, (set, frozenset)):
            return {"__set__": [self.value(x, where) for x in sorted(v, key=repr)]}
        if isinstance(v, torch.dtype):
            return {"__dtype__": str(v).replace("torch.", "")}
        if isinstance(v, torch.device):
            return {"__device__": str(v)}
        if isinstance(v, torch.Tensor):
            return v.detach().cpu().clone()
        if isinstance(v, np.ndarray):
            return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(v)).clone()}
        if isinstance(v, Engine):
            cfg = v.config()
            self.engines.append({"where": where, **cfg})
            return {"__engine__": cfg}
        if isinstance(v, nn.Module):
            return self.module(v, where)
        if isinstance(v, Circuit):
            self.circuits.append({"where": where, "qasm3": _qasm3(v)})
            return {"__object__": _path_of(v), "state": self.value(dict(vars(v)), where)}
        if isinstance(v, type) or (callable(v) and hasattr(v, "__qualname__") and hasattr(v, "__module__")):
            p = _path_of(v)
            if (p.split(":")[0] + ".").startswith(_ALLOWED) and "<" not in p:
                return {"__ref__": p}
        if type(v).__module__.startswith("qnn.") and hasattr(v, "__dict__"):
            return {"__object__": _path_of(v), "state": self.value(dict(vars(v)), where)}
        raise CheckpointError(f"qnn.save: {where} must be a plain value, tensor, circuit, engine or module of "
                              f"qnn/torch; got {type(v).__name__}")

    def module(self, m: nn.Module, where: str) -> dict:
        p = _path_of(m)
        if not (p.split(":")[0] + ".").startswith(_ALLOWED):
            raise CheckpointError(f"qnn.save: modules must be qnn or torch classes; {where or 'the model'} is {p}")
        attrs = {}
        for k, v in vars(m).items():
            if k in _INTERNALS:
                continue
            try:
                attrs[k] = self.value(v, f"{where}.{k}" if where else k)
            except CheckpointError:
                if k.startswith("_"):
                    continue  # a private cache: rebuilt on use
                raise
            if k == "seed":
                self.seeds[where or "."] = v
        return {"__module__": p, "training": m.training, "attrs": attrs,
                "params": {k: None if t is None else [bool(t.requires_grad), list(t.shape), str(t.dtype).replace(
                    "torch.", "")] for k, t in m._parameters.items()},
                "buffers": {k: (k not in m._non_persistent_buffers_set, None if t is None or k not in
                                m._non_persistent_buffers_set else t.detach().cpu())
                            for k, t in m._buffers.items()},
                "children": {k: None if c is None else self.module(c, f"{where}.{k}" if where else k)
                             for k, c in m._modules.items()}}


def _qasm3(circuit) -> str | None:
    """OpenQASM 3 beside qnn's own form, or None where the circuit has none (an amplitude
    embedding, a PauliExp gate) or qiskit is not installed; qnn's form is always kept."""
    try:
        from qnn.interop import to_qasm

        return to_qasm(circuit)
    except Exception:  # noqa: BLE001 - ImportError, or a circuit without an OpenQASM 3 form
        return None


def _decode(v, engine_override):
    if isinstance(v, list):
        return [_decode(x, engine_override) for x in v]
    if not isinstance(v, dict):
        return v
    if "__tuple__" in v:
        return tuple(_decode(x, engine_override) for x in v["__tuple__"])
    if "__dict__" in v:
        return {_decode(k, engine_override): _decode(x, engine_override) for k, x in v["__dict__"]}
    if "__set__" in v:
        return set(_decode(x, engine_override) for x in v["__set__"])
    if "__dtype__" in v:
        return getattr(torch, v["__dtype__"])
    if "__device__" in v:
        return torch.device(v["__device__"])
    if "__ndarray__" in v:
        return v["__ndarray__"].numpy()
    if "__engine__" in v:
        from qnn.engines import engine_from_config

        return engine_override if engine_override is not None else engine_from_config(v["__engine__"])
    if "__ref__" in v:
        return _resolve(v["__ref__"])
    if "__object__" in v:
        cls = _resolve(v["__object__"])
        obj = cls.__new__(cls)
        obj.__dict__.update(_decode(v["state"], engine_override))
        return obj
    if "__module__" in v:
        return _build_module(v, engine_override)
    raise CheckpointError(f"qnn.load: unknown entry {sorted(v)!r} in the model description")


def _build_module(spec, engine_override) -> nn.Module:
    cls = _resolve(spec["__module__"])
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise CheckpointError(f"qnn.load: {spec['__module__']!r} must be a torch.nn.Module class")
    m = cls.__new__(cls)
    nn.Module.__init__(m)
    for k, v in spec["attrs"].items():
        object.__setattr__(m, k, _decode(v, engine_override))
    for k, c in spec["children"].items():
        m._modules[k] = None if c is None else _build_module(c, engine_override)
    for k, rg in spec["params"].items():
        m._parameters[k] = None if rg is None else nn.Parameter(
            torch.empty(rg[1], dtype=getattr(torch, rg[2])), requires_grad=rg[0])
    for k, (persistent, t) in spec["buffers"].items():
        m._buffers[k] = t if t is not None else torch.empty(0)  # persistent: assigned from the state_dict
        if not persistent:
            m._non_persistent_buffers_set.add(k)
    m.train(spec["training"])
    return m


def save(model: nn.Module, f) -> None:
    """Write a portable checkpoint of ``model`` to a path or a binary file object."""
    import qnn

    if not isinstance(model, nn.Module):
        raise TypeError(f"qnn.save: model must be a torch.nn.Module; got {type(model).__name__}")
    enc = _Encoder()
    spec = enc.module(model, "")
    payload = {"model": spec, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "engines": enc.engines, "circuits": enc.circuits, "seeds": enc.seeds,
               "qnn_version": qnn.__version__, "torch_version": str(torch.__version__)}
    buf = io.BytesIO()
    torch.save(payload, buf)
    raw = buf.getvalue()
    outer = {"format": FORMAT, "version": VERSION, "qnn_version": qnn.__version__,
             "sha256": hashlib.sha256(raw).hexdigest(), "payload": torch.frombuffer(bytearray(raw), dtype=torch.uint8)}
    torch.save(outer, f if not isinstance(f, (str, os.PathLike)) else os.fspath(f))


def load(f, engine=None) -> nn.Module:
    """Read a checkpoint written by :func:`save` (``torch.load(weights_only=True)`` only);
    ``engine`` (a name, an Engine or a config dict) moves every quantum layer to that engine."""
    try:
        outer = torch.load(f if not isinstance(f, (str, os.PathLike)) else os.fspath(f), weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"qnn.load: the file must be a qnn checkpoint; it could not be read "
                              f"with torch.load(weights_only=True) ({type(exc).__name__})") from None
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise CheckpointError(f"qnn.load: the file must be a qnn checkpoint (format {FORMAT!r}); "
                              f"got {'a dict with keys ' + repr(sorted(outer)[:5]) if isinstance(outer, dict) else type(outer).__name__}")
    if outer.get("version") != VERSION:
        raise CheckpointError(f"qnn.load: checkpoint version must be {VERSION}; got {outer.get('version')!r}")
    raw = outer["payload"].numpy().tobytes()
    if hashlib.sha256(raw).hexdigest() != outer.get("sha256"):
        raise CheckpointError("qnn.load: the checkpoint's digest does not match its contents (the file was "
                              "modified or truncated); refusing to load it")
    payload = torch.load(io.BytesIO(raw), weights_only=True)
    override = None
    if engine is not None:
        from qnn.engines import engine_from_config, get_engine

        override = engine_from_config(engine) if isinstance(engine, dict) else get_engine(engine)
    model = _build_module(payload["model"], override)
    _assign(model, payload["state_dict"])
    return model


def _assign(model: nn.Module, state: dict) -> None:
    expected = set(model.state_dict())
    if set(state) != expected:
        raise CheckpointError(f"qnn.load: the state_dict must hold {sorted(expected)}; got {sorted(state)}")
    for name, t in state.items():
        *owner, leaf = name.split(".")
        mod = model.get_submodule(".".join(owner)) if owner else model
        if leaf in mod._parameters:
            mod._parameters[leaf] = nn.Parameter(t.clone(), requires_grad=mod._parameters[leaf].requires_grad)
        else:
            mod._buffers[leaf] = t.clone()


def move_to_engine(model: nn.Module, engine) -> nn.Module:
    """Set every quantum layer of ``model`` to ``engine`` (a name, an Engine or a config), in place."""
    from qnn.engines import Engine, engine_from_config, get_engine

    eng = engine_from_config(engine) if isinstance(engine, dict) else get_engine(engine)
    for m in model.modules():
        if isinstance(getattr(m, "engine", None), Engine):
            m.engine = eng
    return model


def parity_report(path, engines: dict, X: torch.Tensor, y: torch.Tensor, *, predict=None) -> dict:
    """Load the checkpoint once per engine and compare: for each name -> engine, the largest
    output difference from the checkpoint's own engine and the accuracy on ``(X, y)``
    (``predict(outputs) -> labels``, default argmax over the last dimension, or sign > 0 for
    one output)."""
    def labels(out):
        if predict is not None:
            return predict(out)
        return out.argmax(-1) if out.dim() > 1 and out.shape[-1] > 1 else (out.reshape(-1) > 0).long()

    with torch.no_grad():
        ref = load(path)(X)
        report = {"reference": {"engine": "checkpoint", "max_abs_diff": 0.0,
                                "accuracy": float((labels(ref) == y).float().mean())}}
        for name, eng in engines.items():
            out = load(path, engine=eng)(X)
            report[name] = {"engine": repr(eng), "max_abs_diff": float((out - ref).abs().max()),
                            "accuracy": float((labels(out) == y).float().mean())}
    return report
