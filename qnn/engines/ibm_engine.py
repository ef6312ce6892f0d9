"""Engine ``ibm``: IBM Quantum hardware (or fake backends locally) through qiskit-ibm-runtime.

Example (local mode on a fake backend; no account or network needed):
    >>> import torch, qnn
    >>> from qiskit_ibm_runtime.fake_provider import FakeManilaV2
    >>> from qnn.engines.ibm_engine import IBMEngine
    >>> c = qnn.Circuit(2); _ = qnn.angle_embedding(c); _ = c.measure_z()
    >>> eng = IBMEngine("fake_manila", shots=1000, seed=7)
    >>> eng.run(c, torch.zeros(3, 2), torch.zeros(0)).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

import numpy as np
import torch

from qnn._optional import import_optional
from qnn.engines import Capabilities, Engine, check_seed, check_shots
from qnn.engines._autograd import parameter_shift_run
from qnn.engines._convert import (
    circuit_key,
    columns_for,
    expected_output_slices,
    outputs_from_bits,
    observable,
    pauli_exp_gates,
    qnn_state_to_qiskit,
    unpack_bits,
    validate_run_args,
)

__all__ = ["IBMEngine", "IBMAccountError"]

_CACHE_SIZE = 32


def _account_error():
    from qnn.planner import AuthenticationError

    return AuthenticationError


class _LazyAccountError(type):
    def __instancecheck__(cls, obj):
        return isinstance(obj, _account_error())

    def __subclasscheck__(cls, sub):
        return issubclass(sub, _account_error())


class IBMAccountError(RuntimeError, metaclass=_LazyAccountError):
    """No usable IBM Quantum account (``qnn.planner.AuthenticationError`` is what is raised)."""


class IBMEngine(Engine):
    """Run circuits with qiskit-ibm-runtime ``EstimatorV2`` (Pauli expectation values) and
    ``SamplerV2`` (basis-state probabilities), through a :class:`qnn.planner.Planner`.

    The engine is plain configuration (backend **name**, shots, options); its planner -- ISA
    transpilation cache keyed by (circuit, backend, optimisation level, seed), amplitude
    circuits included; packing into PUBs and jobs; cost, budget and job store -- is built on
    first use, or given with :meth:`use_planner`, or is the planner whose ``step`` is running.
    Observables are mapped with ``SparsePauliOp.apply_layout(isa_circuit.layout)``; the
    probability circuit measures virtual qubit ``w`` into classical bit ``w`` before
    transpiling, so counts come back indexed by the user's wires whatever the layout.
    With a gradient needed, the forward rows and every parameter-shift row of the batch go in
    **one** call per primitive (forward and backward share a job).

    Args:
        backend: a backend object (fake backends run locally with their noise model), a backend
            name (``"ibm_torino"`` through the service, ``"fake_manila"`` locally) or None for
            the least busy operational QPU of the account.
        service: a ``QiskitRuntimeService`` (not kept in the configuration).
        channel, instance, token: for building the service; the token is used once and never
            stored (prefer ``QISKIT_IBM_TOKEN`` or a saved account).
        shots (int), precision (float | None): per circuit evaluation.
        optimization_level (int), seed (int | None), initial_layout (list[int] | None).
        mode (str): ``"job"``, ``"batch"`` or ``"session"``.
        options (dict | None): primitive options passed through (``resilience_level``,
            ``twirling``, ``dynamical_decoupling``...).

    Example:
        >>> IBMEngine("fake_manila", shots=2000)
        IBMEngine(backend='fake_manila', shots=2000, optimization_level=1)
    """

    name = "ibm"

    def __init__(self, backend=None, *, service=None, channel: str | None = None, instance: str | None = None,
                 token: str | None = None, shots: int = 4096, precision: float | None = None,
                 optimization_level: int = 1, mode: str = "job", seed: int | None = None, initial_layout=None,
                 options: dict | None = None):
        shots = check_shots("IBMEngine", shots, allow_none=False)
        if optimization_level not in (0, 1, 2, 3):
            raise ValueError(f"IBMEngine: optimization_level must be 0, 1, 2 or 3; got {optimization_level!r}")
        seed = check_seed("IBMEngine", seed)
        if token is not None and not isinstance(token, str):
            raise TypeError("IBMEngine: token must be a str")
        if backend is not None and not isinstance(backend, str) and not hasattr(backend, "target"):
            raise TypeError("IBMEngine: backend must be a BackendV2 object, a backend name or None; "
                            f"got {type(backend).__name__}")
        import_optional("qiskit_ibm_runtime", feature="IBMEngine")
        self.shots = shots
        self.precision = precision
        self.optimization_level = int(optimization_level)
        self.mode = mode
        self.seed = seed
        self.initial_layout = None if initial_layout is None else [int(q) for q in initial_layout]
        self.options = dict(options or {})
        self._planner = None
        self._cache: dict = {}
        self._planner = self._build_planner(backend, service, channel, instance, token)
        self.backend_name = self._planner.backend_name

    def _build_planner(self, backend, service=None, channel=None, instance=None, token=None):
        from qnn.planner import Planner

        return Planner(backend, service=service, channel=channel, instance=instance, token=token, shots=self.shots,
                       precision=self.precision, optimization_level=self.optimization_level, seed=self.seed,
                       initial_layout=self.initial_layout, mode=self.mode, options=self.options)

    # ------------------------------------------------------------------ contract
    def _options(self) -> dict:
        return {"backend": self.backend_name, "shots": self.shots, "precision": self.precision,
                "optimization_level": self.optimization_level, "mode": self.mode, "seed": self.seed,
                "initial_layout": self.initial_layout, "options": self.options}

    def _transient_state(self) -> dict:
        return {}

    @property
    def capabilities(self) -> Capabilities:
        p = self._planner
        shots = self.shots if self.precision is None else int(np.ceil(1.0 / self.precision ** 2))
        return Capabilities(hardware=True, shots=shots, exact_gradients=True,
                            cost_per_evaluation=shots * p.rep_delay, max_qubits=p.n_qubits)

    @property
    def planner(self):
        """The planner this engine sends through (the one whose ``step`` is running, if any)."""
        from qnn.planner import active_planner

        return active_planner() or self._planner

    def use_planner(self, planner) -> None:
        """Send through ``planner`` (same backend) from now on."""
        if planner.backend_name != self.backend_name:
            raise ValueError(f"IBMEngine.use_planner: planner must be on backend {self.backend_name!r}; "
                             f"got {planner.backend_name!r}")
        self._planner = planner

    @property
    def backend(self):
        return self._planner.backend

    def __repr__(self) -> str:
        args = [f"backend={self.backend_name!r}", f"shots={self.shots}", f"optimization_level={self.optimization_level}"]
        if self.mode != "job":
            args.append(f"mode={self.mode!r}")
        if self.seed is not None:
            args.append(f"seed={self.seed}")
        if self.initial_layout is not None:
            args.append(f"initial_layout={self.initial_layout}")
        return f"IBMEngine({', '.join(args)})"

    # ------------------------------------------------------------------ transpilation
    def _isa(self, circuit, state=None, unitaries=None, ukey=None):
        """ISA circuits for one circuit (one initial state, one set of ``PauliExp`` matrices ``unitaries``
        with hashable key ``ukey``): ``(est_isa, observables, samp_isa, theta)``, from the planner's
        transpilation cache."""
        n = circuit.n_qubits
        planner = self.planner
        planner.check_width(n, "IBMEngine")
        if unitaries is None:
            base, theta = self._base(circuit)
        else:
            from qnn.engines.qiskit_engine import _gates_only

            base, theta = _gates_only(circuit, unitaries)
        exp = [m for m in circuit.measurements if m.kind != "probs"]
        has_probs = any(m.kind == "probs" for m in circuit.measurements)

        def build():
            b = base
            if state is not None:
                from qiskit.circuit.library import StatePreparation

                qc = import_optional("qiskit", feature="IBMEngine").QuantumCircuit(n)
                qc.append(StatePreparation(qnn_state_to_qiskit(state, n)), list(range(n)))
                b = qc.compose(base)
            todo = []
            if exp:
                todo.append(b)
            if has_probs:
                sq = b.copy()
                sq.measure_all()
                todo.append(sq)
            return todo

        skey = None if state is None else np.ascontiguousarray(state, dtype=np.float64).tobytes()
        key = ("qnn-ibm", circuit_key(circuit), skey, ukey)
        isas = planner.isa(key, build)
        est_isa = isas[0] if exp else None
        obs_key = ("obs", key, id(est_isa))
        if obs_key not in self._cache:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[obs_key] = [observable(m, n).apply_layout(est_isa.layout) for m in exp] if exp else []
        samp_isa = isas[-1] if has_probs else None
        return est_isa, self._cache[obs_key], samp_isa, theta

    def _base(self, circuit):
        key = ("base", circuit_key(circuit))
        if key not in self._cache:
            from qnn.engines.qiskit_engine import _gates_only

            self._cache[key] = _gates_only(circuit)
        return self._cache[key]

    def _cached_isa(self, circuit, unitaries=None, ukey=None):
        return self._isa(circuit, None, unitaries, ukey)

    # ------------------------------------------------------------------ run
    def run(self, circuit, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Evaluate ``circuit`` on ``inputs (B, n_inputs)`` with ``weights (n_weights,)`` on the
        backend; returns ``(B, n_outputs)`` on ``inputs.device``, differentiable by parameter shift."""
        validate_run_args("IBMEngine", circuit, inputs, weights)
        return parameter_shift_run("IBMEngine", self._evaluator(circuit), circuit, inputs, weights, eager=True)

    def _evaluator(self, circuit):
        meas = circuit.measurements
        slices = expected_output_slices(circuit)
        exp_idx = [i for i, m in enumerate(meas) if m.kind != "probs"]
        prb_idx = [i for i, m in enumerate(meas) if m.kind == "probs"]
        n = circuit.n_qubits
        pe = pauli_exp_gates(circuit)

        def evaluate(thetas, states, state_ids, unitaries=None):
            N = thetas.shape[0]
            out = np.empty((N, circuit.n_outputs))
            # one ISA circuit per distinct (initial state, PauliExp matrices): a PauliExp gate is
            # synthesised from its matrix, so rows sharing the matrices share the ISA circuit
            groups: dict = {}
            for r in range(N):
                ukey = tuple(unitaries[gi][r].tobytes() for gi in pe) if pe else None
                groups.setdefault((None if states is None else int(state_ids[r]), ukey), []).append(r)
            parts = []
            for (s, ukey), rows in groups.items():
                us = {gi: unitaries[gi][rows[0]] for gi in pe} if pe else None
                isa = self._cached_isa(circuit, us, ukey) if s is None else self._isa(circuit, states[s], us, ukey)
                parts.append((np.asarray(rows), isa))
            if exp_idx:
                pubs = []
                for rows, (est_isa, obs, _, theta) in parts:
                    vals = thetas[rows][:, columns_for(est_isa, theta)]
                    obs_arr = np.empty((len(obs), 1), dtype=object)
                    for j, o in enumerate(obs):
                        obs_arr[j, 0] = o
                    pubs.append((est_isa, obs_arr, vals))
                results = self.planner.execute("estimator", pubs)
                if results is None:  # a step is recording: placeholders
                    return np.zeros((N, circuit.n_outputs))
                for (rows, _), pub, evs in zip(parts, pubs, results):
                    if evs.shape != (len(exp_idx), len(rows)):
                        raise RuntimeError(
                            f"IBMEngine: EstimatorV2 returned evs of shape {evs.shape}; "
                            f"expected {(len(exp_idx), len(rows))} (observables x batch)")
                    for j, i in enumerate(exp_idx):
                        out[rows, slices[i].start] = evs[j]
            if prb_idx:
                pubs = []
                for rows, (_, _, samp_isa, theta) in parts:
                    pubs.append((samp_isa, thetas[rows][:, columns_for(samp_isa, theta)]))
                results = self.planner.execute("sampler", pubs)
                if results is None:
                    return np.zeros((N, circuit.n_outputs))
                for (rows, _), meas_bits in zip(parts, results):
                    if meas_bits is None or not hasattr(meas_bits, "array") or \
                            tuple(meas_bits.shape) != (len(rows),) or meas_bits.num_bits != n:
                        raise RuntimeError(
                            "IBMEngine: SamplerV2 returned malformed data: expected a BitArray 'meas' of "
                            f"shape ({len(rows)},) with {n} bits; got {meas_bits!r}")
                    bits = unpack_bits(meas_bits, n)
                    sub = np.empty((len(rows), circuit.n_outputs))
                    outputs_from_bits(bits, meas, prb_idx, slices, sub)
                    for i in prb_idx:
                        out[rows, slices[i]] = sub[:, slices[i]]
            return out

        return evaluate
