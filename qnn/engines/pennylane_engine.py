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

import torch

from qnn._optional import import_optional
from qnn.engines import Engine
from qnn.engines._convert import (
    amplitude_states,
    circuit_key,
    occurrence_plan,
    pennylane_angles,
    pennylane_gate,
    pennylane_measurement,
    validate_run_args,
)

__all__ = ["PennyLaneEngine", "DIFF_METHODS"]

DIFF_METHODS = ("best", "backprop", "adjoint", "parameter-shift", "finite-diff", "spsa", "hadamard", "device")
_CACHE_SIZE = 32


class PennyLaneEngine(Engine):
    """Run circuits as PennyLane QNodes with the torch interface.

    The batch is sent as one **broadcast** execution (parameter broadcasting) when gradients
    come by backpropagation or when no broadcast parameter needs a gradient; PennyLane's
    ``adjoint`` and ``parameter-shift`` methods cannot differentiate broadcast parameters, so
    then the batch is looped sample by sample (each sample is one QNode execution).  Devices
    without native broadcasting (e.g. ``lightning.qubit``) have broadcast tapes split by
    PennyLane itself.

    Args:
        device (str): any installed PennyLane device name (``"default.qubit"``,
            ``"lightning.qubit"``, ``"default.mixed"``, ...).
        diff_method (str): ``"best"`` (PennyLane picks), ``"backprop"``, ``"adjoint"``,
            ``"parameter-shift"``, ``"finite-diff"``, ``"spsa"``, ``"hadamard"`` or ``"device"``.
        shots (int | None): shots per execution (None = analytic).
        **device_kwargs: passed to ``qml.device`` (e.g. ``seed=1234``).

    Raises:
        ValueError: unknown device name (the message lists installed ones) or diff_method.
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
        if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 1):
            raise ValueError(f"PennyLaneEngine: shots must be None (analytic) or a positive int; got {shots!r}")
        if "wires" in device_kwargs:
            raise ValueError("PennyLaneEngine: 'wires' is set from the circuit; do not pass it")
        if "shots" in device_kwargs:  # pragma: no cover - guarded by the signature
            raise ValueError("PennyLaneEngine: pass shots as the engine's shots argument")
        self._qml = qml
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

    # ------------------------------------------------------------------ internals
    def _device(self, n_qubits: int):
        if n_qubits not in self._devices:
            self._devices[n_qubits] = self._qml.device(self.device, wires=n_qubits, **self.device_kwargs)
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
                pennylane_gate(qml, g.name, g.wires, angles)
            out = []
            for m in meas:
                r = pennylane_measurement(qml, m, projectors)
                out.extend(r if isinstance(r, tuple) else (r,))
            return tuple(out)

        qnode = qml.QNode(qfunc, self._device(n), interface="torch", diff_method=self.diff_method,
                          shots=self.shots)
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
        """Does a gate take an input-bound angle and a weight-bound angle (or is the state
        input-dependent while weights are trained)?"""
        if circuit.state_prep is not None:
            return True
        return any({p.kind for p in g.params} >= {"input", "weight"} for g in circuit.gates)

    # ------------------------------------------------------------------ public
    def run(self, circuit, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Evaluate ``circuit`` on ``inputs (B, n_inputs)`` with ``weights (n_weights,)``;
        returns ``(B, n_outputs)`` in the inputs' dtype on ``inputs.device``, differentiable
        through PennyLane's torch interface."""
        validate_run_args("PennyLaneEngine", circuit, inputs, weights)
        out_dtype = torch.promote_types(inputs.dtype, weights.dtype)
        device = inputs.device
        B = inputs.shape[0]
        x = inputs.to("cpu", out_dtype)
        w = weights.to("cpu", out_dtype)
        if B == 0:  # keep the graph connected so .backward() works on an empty batch
            return (x.sum() * 0 + w.sum() * 0).expand(0, circuit.n_outputs).to(device)
        psi = amplitude_states("PennyLaneEngine", circuit, x) if circuit.state_prep is not None else None
        plan = occurrence_plan(circuit)
        # input-bound angles (B, P_in) are broadcast over the batch; weight-bound ones (P_w,)
        # are shared.  Built separately so that only weight angles depend on the weights.
        m = plan.is_input
        theta_in = x[:, torch.as_tensor(plan.index[m], dtype=torch.long)] * torch.as_tensor(plan.scale[m], dtype=out_dtype) \
            + torch.as_tensor(plan.offset[m], dtype=out_dtype)
        theta_w = w[torch.as_tensor(plan.index[~m], dtype=torch.long)] * torch.as_tensor(plan.scale[~m], dtype=out_dtype) \
            + torch.as_tensor(plan.offset[~m], dtype=out_dtype)

        which = tuple(range(len(circuit.measurements)))
        qnode, _ = self._qnode(circuit, which)
        method = self._resolved_method(qnode, (theta_in, theta_w, psi), circuit.n_qubits)
        if method == "adjoint":
            # probabilities as projector expectation values: PennyLane 0.45.1's adjoint
            # gradient of qml.probs is wrong on some circuits, and it refuses to mix qml.probs
            # with non-diagonal observables
            qnode, _ = self._qnode(circuit, which, projectors=True)
        # PennyLane differentiates broadcast tapes only by backprop, or by parameter-shift /
        # finite-diff when no trainable angle sits in a broadcast (input-bound) gate: else loop
        need_grad = torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)
        broadcast = (not need_grad or method == "backprop"
                     or (method in ("parameter-shift", "finite-diff") and not x.requires_grad
                         and not self._mixes_inputs_and_weights(circuit)))
        if broadcast:
            res = qnode(theta_in, theta_w, psi)
            if psi is None and not m.any():  # nothing depends on the inputs: no batch axis
                out = torch.cat([r.reshape(1, -1) for r in res], dim=1).expand(B, -1)
            else:
                out = torch.cat([r.reshape(B, -1) for r in res], dim=1)
        else:
            rows = []
            for b in range(B):
                res = qnode(theta_in[b], theta_w, None if psi is None else psi[b])
                rows.append(torch.cat([r.reshape(-1) for r in res]))
            out = torch.stack(rows)
        return out.to(device=device, dtype=out_dtype)
