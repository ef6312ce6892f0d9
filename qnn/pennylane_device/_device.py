"""``qml.device("qnn.torch", wires=n)``: PennyLane's device API on qnn's torch engine.

Execution: each tape (after preprocessing has decomposed what qnn lacks) becomes one
:class:`qnn.Circuit` through :func:`qnn.interop.circuit_from_operations` -- scalar angles are
weights, broadcast angles ``(B,)`` are inputs, so a broadcast tape is **one** batched engine run.
Circuits of the same structure are cached, so the engine's compiled plan is reused.

* exact ``qml.expval`` of Pauli words and ``qml.probs``: :meth:`TorchEngine.run` (the fast,
  fused path);
* every other measurement, and every measurement with shots: the state from
  :meth:`TorchEngine.state`, measured by PennyLane's own measurement functions
  (``pennylane.devices.qubit.measure`` / ``measure_with_samples``), samples drawn from the
  exact probabilities with the device's ``numpy`` generator (seeded by ``seed``).

Derivatives: ``diff_method="backprop"`` (torch autograd through the engine; the torch
interface only) and
``diff_method="device"`` (Jacobians and vector-Jacobian products by torch autograd, for any
interface; ``device_vjp=True`` gives the VJP path).  Mid-circuit measurements are deferred.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import numpy as np
import pennylane as qml
import torch
from pennylane.devices import Device, ExecutionConfig
from pennylane.devices.modifiers import simulator_tracking, single_tape_support
from pennylane.devices.preprocess import (
    decompose,
    no_sampling,
    validate_device_wires,
    validate_measurements,
)
from pennylane.devices.qubit import apply_operation, measure, measure_with_samples
from pennylane.measurements import ExpectationMP, SampleMeasurement, StateMeasurement
from pennylane.tape import QuantumScript
from pennylane.transforms.core import CompilePipeline

from qnn.engines.torch_engine import TorchEngine
from qnn.interop import circuit_from_operations, measurement_from_pennylane, supported_operation

__all__ = ["QnnTorchDevice"]

_MAX_CIRCUITS = 128
_BACKPROP_INTERFACES = ("torch",)


def _stop(op) -> bool:
    """Keep qnn gates; also keep an operation with a matrix and no decomposition (it runs on
    the per-operation fallback after the engine's prefix, see ``_run``)."""
    return supported_operation(op) or (op.has_matrix and not op.has_decomposition)


def _analytic_ok(m) -> bool:
    if not isinstance(m, StateMeasurement):
        return False
    if m.obs is None:
        return True
    if isinstance(m, ExpectationMP) and _all_leaves(m.obs, lambda o: isinstance(o, (qml.Hermitian, qml.SparseHamiltonian))
                                                   or o.has_diagonalizing_gates):
        return True
    return _all_leaves(m.obs, lambda o: o.has_diagonalizing_gates)


def _sample_ok(m) -> bool:
    if not isinstance(m, SampleMeasurement):
        return False
    return m.obs is None or _all_leaves(m.obs, lambda o: o.has_diagonalizing_gates)


def _all_leaves(obs, pred) -> bool:
    if isinstance(obs, qml.ops.CompositeOp):
        return all(_all_leaves(o, pred) for o in obs.operands)
    if isinstance(obs, qml.ops.SymbolicOp):
        return _all_leaves(obs.base, pred)
    return pred(obs)


def _interface(tape) -> str:
    return qml.math.get_interface(*tape.get_parameters(trainable_only=False)) if tape.num_params else "numpy"


@simulator_tracking
@single_tape_support
class QnnTorchDevice(Device):
    """PennyLane device ``"qnn.torch"``: exact (or sampled) state-vector simulation on qnn's
    batched torch engine.

    Args:
        wires: number of wires or their labels (``None``: the tape's wires).
        shots: default shots (PennyLane prefers ``qml.set_shots`` on the QNode).
        seed: seed of the ``numpy`` generator that draws samples (an int, a
            ``numpy.random.Generator``, or ``None`` for fresh entropy).
        dtype: the engine's complex dtype (default ``torch.complex128``).

    Example:
        >>> import pennylane as qml
        >>> dev = qml.device("qnn.torch", wires=2)  # doctest: +SKIP
        >>> dev = QnnTorchDevice(wires=2)
        >>> @qml.qnode(dev)
        ... def f(x):
        ...     qml.RX(x, 0); qml.CNOT([0, 1])
        ...     return qml.expval(qml.Z(1))
        >>> round(float(f(0.5)), 6)
        0.877583
    """

    _short = "qnn.torch"

    @property
    def name(self) -> str:
        return self._short

    def __init__(self, wires=None, shots=None, seed=None, dtype=torch.complex128):
        super().__init__(wires=wires, shots=shots)
        if dtype not in (torch.complex64, torch.complex128):
            raise ValueError(f"QnnTorchDevice: dtype must be torch.complex64 or torch.complex128; got {dtype!r}")
        if seed is not None and not isinstance(seed, (int, np.integer, np.random.Generator)) or isinstance(seed, bool):
            raise TypeError(f"QnnTorchDevice: seed must be an int, a numpy Generator or None; got {seed!r}")
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._dtype = dtype
        self._rdtype = torch.float64 if dtype == torch.complex128 else torch.float32
        self._engine = TorchEngine(dtype=dtype)
        self._circuits: OrderedDict = OrderedDict()

    # ------------------------------------------------------------------ configuration
    def _grad_ok(self, config, circuit) -> bool:
        return circuit is None or not circuit.shots

    def supports_derivatives(self, execution_config=None, circuit=None) -> bool:
        if execution_config is None:
            return True
        gm = execution_config.gradient_method
        if gm in ("backprop", "best"):
            iface = getattr(execution_config.interface, "value", execution_config.interface)
            return iface in _BACKPROP_INTERFACES and self._grad_ok(execution_config, circuit)
        if gm == "device":
            return execution_config.derivative_order == 1 and self._grad_ok(execution_config, circuit)
        return False

    def supports_vjp(self, execution_config=None, circuit=None) -> bool:
        return execution_config is None or (execution_config.gradient_method == "device"
                                            and self._grad_ok(execution_config, circuit))

    def setup_execution_config(self, config: ExecutionConfig | None = None, circuit=None) -> ExecutionConfig:
        config = config or ExecutionConfig()
        updates = {}
        gm = config.gradient_method
        if gm == "best":
            gm = "backprop" if self.supports_derivatives(replace(config, gradient_method="backprop"), circuit) \
                else "parameter-shift"
            updates["gradient_method"] = gm
        if config.use_device_gradient is None:
            updates["use_device_gradient"] = gm in ("backprop", "device")
        if config.use_device_jacobian_product is None:
            updates["use_device_jacobian_product"] = False
        if config.grad_on_execution is None:
            updates["grad_on_execution"] = False
        if gm == "backprop":
            updates["convert_to_numpy"] = False
        mcm = config.mcm_config
        if mcm.mcm_method not in (None, "deferred"):
            raise qml.exceptions.DeviceError(
                f"QnnTorchDevice: mcm_method must be 'deferred' (or None); got {mcm.mcm_method!r}")
        updates["mcm_config"] = replace(mcm, mcm_method="deferred")
        return replace(config, **updates)

    def preprocess_transforms(self, execution_config: ExecutionConfig | None = None) -> CompilePipeline:
        config = execution_config or ExecutionConfig()
        program = CompilePipeline()
        program.add_transform(qml.defer_measurements, allow_postselect=False)
        program.add_transform(decompose, stopping_condition=_stop, skip_initial_state_prep=False,
                              device_wires=self.wires, name=self.name)
        program.add_transform(validate_device_wires, self.wires, name=self.name)
        program.add_transform(validate_measurements, analytic_measurements=_analytic_ok,
                              sample_measurements=_sample_ok, name=self.name)
        if config.gradient_method == "backprop":
            program.add_transform(no_sampling, name="backprop + qnn.torch")
        return program

    # ------------------------------------------------------------------ execution
    def execute(self, circuits, execution_config: ExecutionConfig | None = None):
        return tuple(self._execute_one(t) for t in circuits)

    def _execute_one(self, tape: QuantumScript):
        iface = _interface(tape)
        res = self._run(tape)
        if iface == "torch":
            return res
        return _map(res, lambda t: t.detach().cpu().numpy() if torch.is_tensor(t) else t)

    def _wire_order(self, tape):
        return list(self.wires) if self.wires is not None else list(tape.wires)

    def _circuit(self, tape, operations, wire_order, native: bool):
        imp = circuit_from_operations(operations, wire_order)
        mkey = tuple((type(m).__name__, repr(m)) for m in tape.measurements) if native else ()
        key = (imp.key, mkey)
        hit = self._circuits.get(key)
        if hit is None:
            if native:
                for m in tape.measurements:
                    measurement_from_pennylane(imp.circuit, m, wire_order)
            hit = imp.circuit
            self._circuits[key] = hit
            while len(self._circuits) > _MAX_CIRCUITS:
                self._circuits.popitem(last=False)
        else:
            self._circuits.move_to_end(key)
        return hit, imp

    def _values(self, imp, B):
        def as_t(v):
            t = v if torch.is_tensor(v) else torch.as_tensor(np.asarray(v, dtype=np.float64))
            return t.to(self._rdtype)
        w = torch.stack([as_t(v).reshape(()) for v in imp.weights]) if imp.weights \
            else torch.zeros(0, dtype=self._rdtype)
        if imp.inputs:
            x = torch.stack([as_t(v) for v in imp.inputs], dim=1)
        else:
            x = torch.zeros(B, 0, dtype=self._rdtype)
        return x, w

    def _run(self, tape: QuantumScript):
        """Results of one tape as torch tensors (differentiable when the parameters are)."""
        wire_order = self._wire_order(tape)
        n = len(wire_order)
        std = tape
        if wire_order != list(range(n)):
            (std,), _ = qml.map_wires(tape, {w_: i for i, w_ in enumerate(wire_order)})
        order = list(range(n))
        batched = tape.batch_size is not None
        B = tape.batch_size or 1
        ops = std.operations
        k = 0
        while k < len(ops) and supported_operation(ops[k]):
            k += 1
        prefix, rest = ops[:k], ops[k:]
        native = not rest and not tape.shots and self._all_native(std, order)
        circuit, imp = self._circuit(std, prefix, order, native)
        x, w = self._values(imp, B)
        if native:
            out = self._engine.run(circuit, x, w)  # (B, n_outputs)
            res, col = [], 0
            for m in circuit.measurements:
                k = m.n_outputs
                r = out[:, col] if m.kind == "expval" else out[:, col:col + k]
                col += k
                res.append(r if batched else r[0])
            return res[0] if len(res) == 1 else tuple(res)
        psi = self._engine.state(circuit, x, w)  # (B, 2**n)
        if imp.phases:
            phi = sum(torch.as_tensor(p, dtype=self._rdtype) if not torch.is_tensor(p) else p.to(self._rdtype)
                      for p in imp.phases)
            ph = torch.exp(-1j * phi.to(psi.dtype))
            psi = psi * (ph.reshape(-1, 1) if ph.dim() else ph)
        state = psi.reshape((B,) + (2,) * n) if batched else psi.reshape((2,) * n)
        for op in rest:  # operations qnn has no gate for and PennyLane cannot decompose
            state = apply_operation(op, state, is_state_batched=batched)
        if not tape.shots:
            res = tuple(measure(m, state, is_state_batched=batched) for m in std.measurements)
            return res[0] if len(res) == 1 else res
        state_np = state.detach().cpu().numpy()
        res = measure_with_samples(std.measurements, state_np, shots=tape.shots, is_state_batched=batched,
                                   rng=self._rng)
        if len(tape.measurements) == 1:
            if tape.shots.has_partitioned_shots:
                return tuple(r[0] for r in res)
            return res[0]
        return tuple(res)

    def _all_native(self, tape, wire_order) -> bool:
        from qnn.circuit import Circuit

        probe = Circuit(len(wire_order))
        return all(measurement_from_pennylane(probe, m, wire_order) for m in tape.measurements)

    # ------------------------------------------------------------------ derivatives
    def _torch_fn(self, tape):
        """``(theta0, f)``: the trainable parameters as one float tensor and ``f(theta)`` the
        tape's results (torch) with those parameters bound."""
        idx = list(tape.trainable_params)
        params = tape.get_parameters(trainable_only=True)
        shapes = [tuple(np.shape(qml.math.unwrap(p))) for p in params]
        sizes = [int(np.prod(s)) for s in shapes]
        flat = [torch.as_tensor(np.asarray(qml.math.unwrap(qml.math.detach(p)) if not torch.is_tensor(p)
                                           else p.detach().cpu().numpy(), dtype=np.float64)).reshape(-1)
                for p in params]
        theta0 = torch.cat(flat).to(self._rdtype) if flat else torch.zeros(0, dtype=self._rdtype)

        def f(theta):
            parts, start = [], 0
            for s, k in zip(shapes, sizes):
                parts.append(theta[start:start + k].reshape(s))
                start += k
            t = tape.bind_new_parameters(parts, idx) if idx else tape
            return self._run(t)

        return theta0, shapes, sizes, f

    def compute_derivatives(self, circuits, execution_config=None):
        return tuple(self._jacobian(t) for t in circuits)

    def execute_and_compute_derivatives(self, circuits, execution_config=None):
        return self.execute(circuits, execution_config), self.compute_derivatives(circuits, execution_config)

    @torch.enable_grad()
    def _jacobian(self, tape):
        theta0, shapes, sizes, f = self._torch_fn(tape)
        res0 = f(theta0)
        leaves = _leaves(res0)
        if theta0.numel() == 0:
            return _empty_jac(tape, res0)

        def flat_f(th):
            return torch.cat([r.reshape(-1) for r in _leaves(f(th))])

        J = torch.autograd.functional.jacobian(flat_f, theta0)  # (M, P_flat)
        per_param = []  # per trainable parameter, its Jacobian columns
        start = 0
        for s, k in zip(shapes, sizes):
            per_param.append((J[:, start:start + k], s))
            start += k
        out_m, row = [], 0
        for r in leaves:
            m = r.numel()
            cols = []
            for Jp, s in per_param:
                block = Jp[row:row + m].reshape(tuple(r.shape) + s)
                cols.append(block.detach().cpu().numpy())
            row += m
            out_m.append(cols[0] if len(cols) == 1 else tuple(cols))
        return _restructure(res0, out_m)

    def compute_vjp(self, circuits, cotangents, execution_config=None):
        return tuple(self._vjp(t, dy) for t, dy in zip(circuits, cotangents))

    def execute_and_compute_vjp(self, circuits, cotangents, execution_config=None):
        out = [self._vjp(t, dy, with_value=True) for t, dy in zip(circuits, cotangents)]
        return tuple(o[0] for o in out), tuple(o[1] for o in out)

    @torch.enable_grad()  # PennyLane's torch interface calls this inside a backward (grad mode off)
    def _vjp(self, tape, dy, with_value=False):
        theta0, shapes, sizes, f = self._torch_fn(tape)
        th = theta0.clone().requires_grad_(True)
        res = f(th)
        leaves = _leaves(res)
        dys = _leaves_like(dy, res)
        total = sum((r * torch.as_tensor(np.asarray(qml.math.unwrap(qml.math.detach(d)) if not torch.is_tensor(d)
                                                      else d.detach().cpu().numpy()), dtype=r.dtype)).sum()
                    for r, d in zip(leaves, dys))
        if th.numel() and torch.is_tensor(total) and total.requires_grad:
            (g,) = torch.autograd.grad(total, th)
        else:
            g = torch.zeros_like(theta0)
        parts, start = [], 0
        for s, k in zip(shapes, sizes):
            parts.append(g[start:start + k].reshape(s).detach().cpu().numpy())
            start += k
        vjp = tuple(parts)
        if with_value:
            return _map(res, lambda t: t.detach().cpu().numpy()), vjp
        return vjp


# ---------------------------------------------------------------------- result structure helpers
def _map(res, fn):
    if isinstance(res, (tuple, list)):
        return tuple(_map(r, fn) for r in res)
    return fn(res)


def _leaves(res):
    if isinstance(res, (tuple, list)):
        return [x for r in res for x in _leaves(r)]
    return [res if torch.is_tensor(res) else torch.as_tensor(res)]


def _leaves_like(dy, res):
    if isinstance(res, (tuple, list)):
        return [x for d, r in zip(dy, res) for x in _leaves_like(d, r)]
    return [dy]


def _restructure(res, flat):
    it = iter(flat)

    def go(r):
        if isinstance(r, (tuple, list)):
            return tuple(go(x) for x in r)
        return next(it)

    return go(res)


def _empty_jac(tape, res):
    return _map(res, lambda r: ())
