"""Engine ``pennylane``: run a :class:`qnn.Circuit` on any PennyLane device.

Example:
    >>> import torch, qnn
    >>> from qnn.engines.pennylane_engine import PennyLaneEngine
    >>> c = qnn.Circuit(2)
    >>> _ = qnn.angle_embedding(c)
    >>> _ = qnn.strongly_entangling_layers(c, 1)
    >>> _ = c.measure_z()
    >>> PennyLaneEngine().run(c, torch.zeros(4, 2), torch.zeros(6)).shape
    torch.Size([4, 2])
"""

from __future__ import annotations

import numpy as np
import torch

from qnn._optional import import_optional
from qnn.engines import Capabilities, Engine, check_shots
from qnn.engines._amplitude import input_grad, normalised, scaled_features, shifted_states
from qnn.engines._convert import (
    circuit_key,
    occurrence_plan,
    pennylane_angles,
    pennylane_op,
    pennylane_measurement,
    validate_run_args,
)

__all__ = ["PennyLaneEngine", "DIFF_METHODS"]

DIFF_METHODS = ("best", "backprop", "adjoint", "parameter-shift", "finite-diff", "spsa", "hadamard", "device")
# methods the device itself must provide (asked of the device at construction); the others are
# gradient transforms that work on any device
_DEVICE_METHODS = ("backprop", "adjoint", "device")
# gradient transforms that differentiate broadcast tapes whose trainable angles are not broadcast
_BROADCAST_TRANSFORMS = ("parameter-shift", "finite-diff", "spsa")
_CACHE_SIZE = 32
# PennyLane devices that send circuits to a QPU (plugins); every other device simulates
_HARDWARE_DEVICE_PREFIXES = ("qiskit.remote", "qiskit.ibmq", "braket.aws", "ionq.qpu", "qml.qpu")


class PennyLaneEngine(Engine):
    """Run circuits as PennyLane QNodes with the torch interface.

    The batch is sent as one **broadcast** execution (parameter broadcasting) when gradients
    come by backpropagation or when no broadcast parameter needs a gradient; PennyLane's
    ``adjoint`` and ``parameter-shift`` methods cannot differentiate broadcast parameters, so
    then the batch is looped sample by sample (each sample is one QNode execution).  Devices
    without native broadcasting (e.g. ``lightning.qubit``) have broadcast tapes split by
    PennyLane itself.

    Amplitude embeddings are differentiated by PennyLane only under ``backprop``; with every
    other method the state enters PennyLane as a constant and qnn adds the exact input gradient
    itself (the polarisation rule of :mod:`qnn.engines._amplitude`, two extra states per feature
    and sample in one broadcast evaluation), because PennyLane's state-preparation gradient is NaN
    wherever an amplitude is zero.  ``hadamard`` gets one auxiliary wire after the circuit's.

    Outputs have the inputs' dtype (computed in the wider of the inputs' and weights' dtypes).

    Args:
        device (str): any installed PennyLane device name (``"default.qubit"``,
            ``"lightning.qubit"``, ``"default.mixed"``, ...).
        diff_method (str): ``"best"`` (PennyLane picks), ``"backprop"``, ``"adjoint"``,
            ``"parameter-shift"``, ``"finite-diff"``, ``"spsa"``, ``"hadamard"`` or ``"device"``.
        shots (int | None): shots per execution (None = analytic).
        **device_kwargs: passed to ``qml.device`` (e.g. ``seed=1234``).

    Raises:
        ValueError: unknown device name (the message lists installed ones) or diff_method, or a
            diff_method the device does not provide (e.g. ``"device"`` on ``default.qubit``).
        ImportError: PennyLane is not installed (``pip install pennylane``).

    Example:
        >>> import torch, qnn
        >>> c = qnn.Circuit(1); _ = qnn.angle_embedding(c, rotation="X"); _ = c.measure_z()
        >>> eng = PennyLaneEngine("default.qubit", diff_method="parameter-shift")
        >>> x = torch.tensor([[0.5]], requires_grad=True)
        >>> eng.run(c, x, torch.zeros(0)).sum().backward()
        >>> round(float(x.grad), 4)   # d cos(x) / dx at 0.5
        -0.4794
    """

    name = "pennylane"

    def __init__(self, device: str = "default.qubit", diff_method: str = "best", shots: int | None = None,
                 **device_kwargs):
        qml = import_optional("pennylane", feature="PennyLaneEngine")
        if not isinstance(device, str):
            raise TypeError(f"PennyLaneEngine: device must be a device name (str); got {type(device).__name__}")
        known = sorted(getattr(qml, "plugin_devices", {}) or {})
        if known and device not in known:
            raise ValueError(f"PennyLaneEngine: unknown PennyLane device {device!r}; installed devices are {known}")
        if diff_method not in DIFF_METHODS:
            raise ValueError(f"PennyLaneEngine: diff_method must be one of {list(DIFF_METHODS)}; got {diff_method!r}")
        shots = check_shots("PennyLaneEngine", shots, allow_none=True, none_means="analytic")
        if "wires" in device_kwargs:
            raise ValueError("PennyLaneEngine: 'wires' is set from the circuit; do not pass it")
        if "shots" in device_kwargs:  # pragma: no cover - guarded by the signature
            raise ValueError("PennyLaneEngine: pass shots as the engine's shots argument")
        if diff_method in _DEVICE_METHODS:
            from pennylane.devices import ExecutionConfig

            probe = qml.device(device, wires=1, **device_kwargs)
            if not probe.supports_derivatives(ExecutionConfig(gradient_method=diff_method)):
                raise ValueError(
                    f"PennyLaneEngine: device {device!r} does not provide diff_method {diff_method!r}; "
                    f"use 'best', or a gradient transform ('parameter-shift', 'finite-diff', 'spsa', 'hadamard')")
        self.device = device
        self.diff_method = diff_method
        self.shots = shots
        self.device_kwargs = dict(device_kwargs)
        self._devices: dict[int, object] = {}
        self._qnodes: dict = {}
        self._methods: dict[int, str] = {}

    def __repr__(self) -> str:
        args = [f"device={self.device!r}"]
        if self.diff_method != "best":
            args.append(f"diff_method={self.diff_method!r}")
        if self.shots is not None:
            args.append(f"shots={self.shots}")
        args += [f"{k}={v!r}" for k, v in self.device_kwargs.items()]
        return f"PennyLaneEngine({', '.join(args)})"

    # ------------------------------------------------------------------ contract
    @property
    def _qml(self):
        return import_optional("pennylane", feature="PennyLaneEngine")

    def _options(self) -> dict:
        return {"device": self.device, "diff_method": self.diff_method, "shots": self.shots, **self.device_kwargs}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(hardware=self.device.startswith(_HARDWARE_DEVICE_PREFIXES), shots=self.shots,
                            exact_gradients=self.diff_method not in ("finite-diff", "spsa"))

    # ------------------------------------------------------------------ internals
    def _device(self, n_qubits: int):
        if n_qubits not in self._devices:
            wires = n_qubits + (self.diff_method == "hadamard")  # the Hadamard test's auxiliary wire
            self._devices[n_qubits] = self._qml.device(self.device, wires=wires, **self.device_kwargs)
        return self._devices[n_qubits]

    def _qnode(self, circuit, which: tuple[int, ...], projectors: bool = False):
        """QNode for the measurements ``which`` (indices into circuit.measurements)."""
        key = (circuit_key(circuit), which, projectors)
        if key in self._qnodes:
            return self._qnodes[key]
        qml = self._qml
        plan = occurrence_plan(circuit)
        n = circuit.n_qubits
        meas = [circuit.measurements[i] for i in which]

        def qfunc(theta_in, theta_w, psi):
            if psi is not None:
                qml.StatePrep(psi, wires=range(n), normalize=True)
            dt = theta_w.dtype
            for g, angles in pennylane_angles(circuit, theta_in, theta_w, plan):
                # constants as torch scalars: some PennyLane matrices reject numpy * torch mixes
                angles = [a if torch.is_tensor(a) else torch.tensor(a, dtype=dt) for a in angles]
                pennylane_op(qml, g, angles)
            out = []
            for m in meas:
                r = pennylane_measurement(qml, m, projectors)
                out.extend(r if isinstance(r, tuple) else (r,))
            return tuple(out)

        kwargs = {"gradient_kwargs": {"aux_wire": n}} if self.diff_method == "hadamard" else {}
        qnode = qml.QNode(qfunc, self._device(n), interface="torch", diff_method=self.diff_method,
                          shots=self.shots, **kwargs)
        if len(self._qnodes) >= _CACHE_SIZE:
            self._qnodes.pop(next(iter(self._qnodes)))
        self._qnodes[key] = (qnode, plan)
        return qnode, plan

    def _resolved_method(self, qnode, args, n_qubits: int) -> str:
        """The diff method PennyLane uses ("best" resolved once per register size)."""
        if self.diff_method != "best":
            return self.diff_method
        if n_qubits not in self._methods:
            try:
                self._methods[n_qubits] = str(self._qml.workflow.get_best_diff_method(qnode)(*args))
            except Exception:  # pragma: no cover - defensive: fall back to the safe per-sample loop
                return "unknown"
        return self._methods[n_qubits]

    @staticmethod
    def _mixes_inputs_and_weights(circuit) -> bool:
        """Does a gate take both an input-bound and a weight-bound angle?"""
        return any({p.kind for p in g.params} >= {"input", "weight"} for g in circuit.gates)

    # ------------------------------------------------------------------ public
    def run(self, circuit, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Evaluate ``circuit`` on ``inputs (B, n_inputs)`` with ``weights (n_weights,)``;
        returns ``(B, n_outputs)`` in the inputs' dtype on ``inputs.device``, differentiable
        through PennyLane's torch interface (amplitude embeddings: see the class docstring)."""
        validate_run_args("PennyLaneEngine", circuit, inputs, weights)
        dtype = torch.promote_types(inputs.dtype, weights.dtype)
        B = inputs.shape[0]
        x = inputs.to("cpu", dtype)
        w = weights.to("cpu", dtype)
        if B == 0:  # keep the graph connected so .backward() works on an empty batch
            out = (x.sum() * 0 + w.sum() * 0).expand(0, circuit.n_outputs)
            return out.to(device=inputs.device, dtype=inputs.dtype)
        plan = occurrence_plan(circuit)
        # input-bound angles (B, P_in) are broadcast over the batch; weight-bound ones (P_w,)
        # are shared.  Built separately so that only weight angles depend on the weights.
        m = plan.is_input
        theta_in = x[:, torch.as_tensor(plan.index[m], dtype=torch.long)] * torch.as_tensor(plan.scale[m], dtype=dtype) \
            + torch.as_tensor(plan.offset[m], dtype=dtype)
        theta_w = w[torch.as_tensor(plan.index[~m], dtype=torch.long)] * torch.as_tensor(plan.scale[~m], dtype=dtype) \
            + torch.as_tensor(plan.offset[~m], dtype=dtype)
        sp = circuit.state_prep
        u = scale = psi = None
        if sp is not None:
            u, scale = scaled_features("PennyLaneEngine", sp, circuit.n_qubits, x)
            psi = normalised(u)

        which = tuple(range(len(circuit.measurements)))
        qnode, _ = self._qnode(circuit, which)
        method = self._resolved_method(qnode, (theta_in, theta_w, psi), circuit.n_qubits)
        if method == "adjoint":
            # probabilities as projector expectation values: PennyLane 0.45.1's adjoint
            # gradient of qml.probs is wrong on some circuits, and it refuses to mix qml.probs
            # with non-diagonal observables
            qnode, _ = self._qnode(circuit, which, projectors=True)
        need_grad = torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)
        state_grad = psi is not None and need_grad and x.requires_grad and method != "backprop"
        if psi is not None and method != "backprop":
            psi = psi.detach()  # qnn differentiates the state itself (below)
        # PennyLane differentiates broadcast tapes only by backprop, or by the gradient
        # transforms when no trainable angle sits in a broadcast (input-bound) gate: else loop
        broadcast = (not need_grad or method == "backprop"
                     or (method in _BROADCAST_TRANSFORMS
                         and not (x.requires_grad and m.any())
                         and not (w.requires_grad and self._mixes_inputs_and_weights(circuit))))
        out = self._execute(qnode, theta_in, theta_w, psi, B, broadcast)
        if state_grad:
            ctx = (self, qnode, theta_in.detach(), theta_w.detach(), u.detach().double().numpy(),
                   scale.double().numpy(), out.detach().double().numpy(), sp, circuit.n_outputs)
            out = out + _StateGradient.apply(x, ctx)
        return out.to(device=inputs.device, dtype=inputs.dtype)

    def _execute(self, qnode, theta_in, theta_w, psi, B: int, broadcast: bool) -> torch.Tensor:
        """``(B, n_outputs)``: one broadcast QNode execution, or one execution per sample."""
        if broadcast:
            res = qnode(theta_in, theta_w, psi)
            if psi is None and theta_in.shape[1] == 0:  # nothing depends on the inputs: no batch axis
                return torch.cat([r.reshape(1, -1) for r in res], dim=1).expand(B, -1)
            return torch.cat([r.reshape(B, -1) for r in res], dim=1)
        rows = []
        for b in range(B):
            res = qnode(theta_in[b], theta_w, None if psi is None else psi[b])
            rows.append(torch.cat([r.reshape(-1) for r in res]))
        return torch.stack(rows)


class _StateGradient(torch.autograd.Function):
    """Zero in the forward pass; in the backward pass the exact gradient of the outputs with
    respect to the amplitude-embedded inputs (one broadcast evaluation of the shifted states)."""

    @staticmethod
    def forward(ctx, x, info):
        ctx.info = info
        ctx.x_meta = (x.shape, x.dtype)
        return x.new_zeros((x.shape[0], info[-1]))

    @staticmethod
    def backward(ctx, grad_out):
        engine, qnode, theta_in, theta_w, u, scale, values, sp, _ = ctx.info
        shape, dtype = ctx.x_meta
        J = sp.n_features
        states, aux = shifted_states(u, J)
        with torch.no_grad():
            shifted = engine._execute(qnode, theta_in.repeat_interleave(2 * J, dim=0), theta_w,
                                      torch.as_tensor(states, dtype=theta_w.dtype), states.shape[0], True)
        gx = torch.zeros(shape, dtype=dtype)
        g = input_grad(shifted.double().numpy(), aux, values, scale, grad_out.detach().double().cpu().numpy())
        gx[:, sp.start: sp.start + J] = torch.as_tensor(g, dtype=dtype)
        return gx, None
