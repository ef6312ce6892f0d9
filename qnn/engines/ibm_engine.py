"""Engine ``ibm``: IBM Quantum hardware (or fake backends locally) through qiskit-ibm-runtime.

Example (local mode on a fake backend; no account or network needed):
    >>> import torch, qnn
    >>> from qiskit_ibm_runtime.fake_provider import FakeManilaV2
    >>> from qnn.engines.ibm_engine import IBMEngine
    >>> c = qnn.Circuit(2); _ = qnn.angle_embedding(c); _ = c.measure_z()
    >>> eng = IBMEngine(FakeManilaV2(), shots=1000, seed=7)
    >>> eng.run(c, torch.zeros(3, 2), torch.zeros(0)).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

import numpy as np
import torch

from qnn._optional import import_optional
from qnn.engines import Engine
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
_HOW_TO_CONFIGURE = (
    "Configure an IBM Quantum account once with "
    "`from qiskit_ibm_runtime import QiskitRuntimeService; "
    "QiskitRuntimeService.save_account(channel='ibm_quantum_platform', token=<your API key>, "
    "instance=<your CRN>)`, or set the environment variables QISKIT_IBM_TOKEN (and "
    "QISKIT_IBM_INSTANCE), or pass service=QiskitRuntimeService(...) / token=... to IBMEngine. "
    "To run locally without an account pass a fake backend, e.g. backend='fake_manila' or "
    "backend=qiskit_ibm_runtime.fake_provider.FakeManilaV2()."
)


class IBMAccountError(RuntimeError):
    """No usable IBM Quantum account (none saved, or the service could not be reached)."""


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


class IBMEngine(Engine):
    """Run circuits with qiskit-ibm-runtime ``EstimatorV2`` (Pauli expectation values) and
    ``SamplerV2`` (basis-state probabilities).

    Each circuit is transpiled once to the backend's ISA with
    ``generate_preset_pass_manager(backend=..., optimization_level=...)`` and cached.
    Observables are mapped with ``SparsePauliOp.apply_layout(isa_circuit.layout)``; the
    probability circuit measures every virtual qubit ``w`` into classical bit ``w`` before
    transpiling, so counts come back indexed by the user's wires whatever the chosen layout and
    routing.  A forward pass sends the **whole batch in one call per primitive** (one PUB with a
    parameter-value array); the backward pass sends **every shifted point** of the batch in one
    further call per primitive (parameter-shift rules of :mod:`qnn.engines._autograd`).
    Amplitude-embedded circuits need one ISA circuit per distinct state (still one call).

    Args:
        backend: a backend object (``IBMBackend`` or a fake backend such as
            ``qiskit_ibm_runtime.fake_provider.FakeManilaV2()``; fake backends run locally with
            their noise model), a backend name (``"ibm_brisbane"`` through
            ``QiskitRuntimeService``, or a fake name such as ``"fake_manila"``), or None for the
            least busy operational hardware backend of the account.
        service: a ``QiskitRuntimeService`` to use instead of building one.
        channel, instance, token: passed to ``QiskitRuntimeService`` when it is built here.
            The token is used once and never stored, printed or logged.
        shots (int): shots per circuit evaluation (estimator ``default_shots`` and sampler shots).
        optimization_level (int): 0-3, for the preset pass manager.
        mode: optional ``Session`` / ``Batch`` to run in (default: job mode on ``backend``).
        seed (int | None): seeds transpilation and (on fake backends) the simulator;
            successive calls draw their simulator seeds from one generator.
        initial_layout (list[int] | None): physical qubit for each wire (optional).

    Raises:
        IBMAccountError: a backend name or None was given and no account is configured.
        ValueError: bad shots / optimization_level / unknown fake backend name.

    Example:
        >>> from qiskit_ibm_runtime.fake_provider import FakeManilaV2
        >>> IBMEngine(FakeManilaV2(), shots=2000)
        IBMEngine(backend='fake_manila', shots=2000, optimization_level=1)
    """

    name = "ibm"

    def __init__(self, backend=None, *, service=None, channel: str | None = None, instance: str | None = None,
                 token: str | None = None, shots: int = 4096, optimization_level: int = 1, mode=None,
                 seed: int | None = None, initial_layout=None):
        if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
            raise ValueError(f"IBMEngine: shots must be a positive int; got {shots!r}")
        if optimization_level not in (0, 1, 2, 3):
            raise ValueError(f"IBMEngine: optimization_level must be 0, 1, 2 or 3; got {optimization_level!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"IBMEngine: seed must be None or an int; got {type(seed).__name__}")
        if token is not None and not isinstance(token, str):
            raise TypeError("IBMEngine: token must be a str")
        self._rt = import_optional("qiskit_ibm_runtime", feature="IBMEngine")
        self._qiskit = import_optional("qiskit", feature="IBMEngine")
        self.shots = int(shots)
        self.optimization_level = int(optimization_level)
        self.mode = mode
        self.seed = seed
        self.initial_layout = None if initial_layout is None else [int(q) for q in initial_layout]
        self.backend = self._resolve_backend(backend, service, channel, instance, token)
        self._local = self._is_local(self.backend)
        self._rng = np.random.default_rng(seed)
        self._cache: dict = {}
        self._pm = None

    # ------------------------------------------------------------------ set-up
    def _resolve_backend(self, backend, service, channel, instance, token):
        if backend is not None and not isinstance(backend, str):
            if not hasattr(backend, "target"):
                raise TypeError(
                    "IBMEngine: backend must be a BackendV2 object, a backend name or None; "
                    f"got {type(backend).__name__}"
                )
            return backend
        if isinstance(backend, str) and backend.startswith("fake_"):
            fp = import_optional("qiskit_ibm_runtime.fake_provider", feature="IBMEngine")
            provider = fp.FakeProviderForBackendV2()
            try:
                return provider.backend(backend)
            except Exception:
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    names = sorted(b.name for b in provider.backends())
                raise ValueError(f"IBMEngine: unknown fake backend {backend!r}; valid names are {names}") from None
        if service is None:
            kwargs = {k: v for k, v in (("channel", channel), ("instance", instance), ("token", token)) if v is not None}
            try:
                service = self._rt.QiskitRuntimeService(**kwargs)
            except Exception as exc:  # AccountNotFoundError, InvalidAccountError, network errors
                msg = _scrub(f"{type(exc).__name__}: {exc}", token)
                if type(exc).__name__ == "AccountNotFoundError":
                    raise IBMAccountError(f"IBMEngine: no IBM Quantum account is configured ({msg}). "
                                          + _HOW_TO_CONFIGURE) from None
                raise IBMAccountError(f"IBMEngine: could not open the IBM Quantum service ({msg}). "
                                      + _HOW_TO_CONFIGURE) from None
        try:
            if backend is None:
                return service.least_busy(operational=True, simulator=False)
            return service.backend(backend)
        except Exception as exc:
            msg = _scrub(f"{type(exc).__name__}: {exc}", token)
            raise ValueError(f"IBMEngine: could not get backend {backend!r} from the service ({msg})") from None

    @staticmethod
    def _is_local(backend) -> bool:
        fake_mod = "qiskit_ibm_runtime.fake_provider"
        return type(backend).__module__.startswith(fake_mod) or "Aer" in type(backend).__name__

    def __repr__(self) -> str:
        name = getattr(self.backend, "name", type(self.backend).__name__)
        args = [f"backend={name!r}", f"shots={self.shots}", f"optimization_level={self.optimization_level}"]
        if self.mode is not None:
            args.append(f"mode={type(self.mode).__name__}")
        if self.seed is not None:
            args.append(f"seed={self.seed}")
        if self.initial_layout is not None:
            args.append(f"initial_layout={self.initial_layout}")
        return f"IBMEngine({', '.join(args)})"

    @property
    def pass_manager(self):
        """The preset pass manager used for ISA transpilation."""
        if self._pm is None:
            gpm = import_optional("qiskit.transpiler.preset_passmanagers", feature="IBMEngine")
            self._pm = gpm.generate_preset_pass_manager(
                backend=self.backend, optimization_level=self.optimization_level,
                seed_transpiler=self.seed, initial_layout=self.initial_layout)
        return self._pm

    def _primitive(self, kind: str):
        cls = self._rt.EstimatorV2 if kind == "estimator" else self._rt.SamplerV2
        prim = cls(mode=self.mode if self.mode is not None else self.backend)
        prim.options.default_shots = self.shots
        if self._local and self.seed is not None:
            prim.options.simulator.seed_simulator = int(self._rng.integers(1, 2**31 - 1))
        return prim

    # ------------------------------------------------------------------ transpilation
    def _isa(self, circuit, state=None, unitaries=None):
        """ISA circuits for one circuit (one initial state, one set of ``PauliExp`` matrices):
        ``(est_isa, observables, samp_isa, theta)``."""
        n = circuit.n_qubits
        n_phys = getattr(self.backend, "num_qubits", None)
        if n_phys is not None and n > n_phys:
            raise ValueError(f"IBMEngine: the circuit needs {n} qubits; backend {self.backend.name!r} has {n_phys}")
        if unitaries is None:
            base, theta = self._base(circuit)
        else:
            from qnn.engines.qiskit_engine import _gates_only

            base, theta = _gates_only(circuit, unitaries)
        if state is not None:
            from qiskit.circuit.library import StatePreparation

            qc = self._qiskit.QuantumCircuit(n)
            qc.append(StatePreparation(qnn_state_to_qiskit(state, n)), list(range(n)))
            base = qc.compose(base)
        exp = [m for m in circuit.measurements if m.kind != "probs"]
        has_probs = any(m.kind == "probs" for m in circuit.measurements)
        todo = []
        if exp:
            todo.append(base)
        if has_probs:
            sq = base.copy()
            sq.measure_all()
            todo.append(sq)
        isas = self.pass_manager.run(todo) if todo else []
        est_isa = isas[0] if exp else None
        obs = [observable(m, n).apply_layout(est_isa.layout) for m in exp] if exp else []
        samp_isa = isas[-1] if has_probs else None
        return est_isa, obs, samp_isa, theta

    def _base(self, circuit):
        key = ("base", circuit_key(circuit))
        if key not in self._cache:
            from qnn.engines.qiskit_engine import _gates_only

            self._cache[key] = _gates_only(circuit)
        return self._cache[key]

    def _cached_isa(self, circuit, unitaries=None, ukey=None):
        key = ("isa", circuit_key(circuit), ukey)
        if key not in self._cache:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = self._isa(circuit, None, unitaries)
        return self._cache[key]

    # ------------------------------------------------------------------ run
    def run(self, circuit, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Evaluate ``circuit`` on ``inputs (B, n_inputs)`` with ``weights (n_weights,)`` on the
        backend; returns ``(B, n_outputs)`` on ``inputs.device``, differentiable by parameter shift."""
        validate_run_args("IBMEngine", circuit, inputs, weights)
        return parameter_shift_run("IBMEngine", self._evaluator(circuit), circuit, inputs, weights)

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
                isa = self._cached_isa(circuit, us, ukey) if s is None else self._isa(circuit, states[s], us)
                parts.append((np.asarray(rows), isa))
            if exp_idx:
                pubs = []
                for rows, (est_isa, obs, _, theta) in parts:
                    vals = thetas[rows][:, columns_for(est_isa, theta)]
                    obs_arr = np.empty((len(obs), 1), dtype=object)
                    for j, o in enumerate(obs):
                        obs_arr[j, 0] = o
                    pubs.append((est_isa, obs_arr, vals))
                results = self._call("estimator", pubs)
                for (rows, _), pub, res in zip(parts, pubs, results):
                    evs = np.asarray(getattr(getattr(res, "data", None), "evs", None), dtype=np.float64)
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
                results = self._call("sampler", pubs)
                for (rows, _), res in zip(parts, results):
                    meas_bits = getattr(getattr(res, "data", None), "meas", None)
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

    def _call(self, kind: str, pubs: list):
        """One primitive call for all PUBs; failures become clear RuntimeErrors."""
        label = "EstimatorV2" if kind == "estimator" else "SamplerV2"
        try:
            prim = self._primitive(kind)
            result = prim.run(pubs).result()
        except Exception as exc:
            raise RuntimeError(
                f"IBMEngine: the {label} job on backend {getattr(self.backend, 'name', '?')!r} failed "
                f"({type(exc).__name__}: {exc})") from exc
        try:
            n_res = len(result)
        except TypeError:
            n_res = -1
        if n_res != len(pubs):
            raise RuntimeError(f"IBMEngine: {label} returned {n_res} results for {len(pubs)} PUBs")
        return [result[i] for i in range(n_res)]
