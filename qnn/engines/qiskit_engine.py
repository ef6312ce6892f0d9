"""Engine ``qiskit``: Qiskit exact statevector, or Qiskit Aer with shots and noise.

Example:
    >>> import torch, qnn
    >>> from qnn.engines.qiskit_engine import QiskitEngine
    >>> c = qnn.Circuit(2)
    >>> _ = qnn.angle_embedding(c)
    >>> _ = qnn.basic_entangler_layers(c, 1)
    >>> _ = c.measure_z()
    >>> out = QiskitEngine().run(c, torch.zeros(3, 2), torch.zeros(2))
    >>> out.shape
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
    expected_output_slices,
    observable,
    pauli_exp_gates,
    probs_qargs,
    qnn_state_to_qiskit,
    to_qiskit_occurrences,
    validate_run_args,
    add_basis_change,
    columns_for,
    measurement_groups,
    outputs_from_bits,
    unpack_bits,
)

__all__ = ["QiskitEngine"]

_AER_METHODS = ("automatic", "statevector", "density_matrix", "stabilizer", "matrix_product_state",
                "extended_stabilizer", "unitary", "superop", "tensor_network")
_CACHE_SIZE = 64
# Gates Aer binds correctly through ``parameter_binds``.  Aer 0.18.2 ignores the bound angle of
# parametrised controlled rotations (cry, crz, cp: they act as angle 0), so circuits are
# transpiled to this basis, where every parametrised gate is a single-qubit one.
AER_SAFE_BASIS = ["rx", "ry", "rz", "p", "u", "h", "x", "y", "z", "s", "sdg", "sx", "cx", "cz", "swap"]


class QiskitEngine(Engine):
    """Run a :class:`qnn.Circuit` with Qiskit.

    * ``shots=None`` (default): exact, with ``qiskit.quantum_info.Statevector``
      (complex128), every row of the batch evolved from the bound circuit.
    * ``shots=<int>``: Qiskit Aer ``SamplerV2`` on ``AerSimulator(method=..., noise_model=...)``:
      the circuit is measured once per qubit-wise-commuting group of measurements (Pauli words
      are rotated to the Z basis; probabilities read the Z basis), and the **whole batch goes
      in one sampler call** (one PUB per measurement group carrying a parameter-value array).
      Aer's ``EstimatorV2`` is not used because with a precision it adds Gaussian noise to the
      exact value instead of sampling shots.

    Gradients (inputs and weights) use exact parameter-shift rules (see
    :mod:`qnn.engines._autograd`): all shifted points of a backward pass go in one further
    evaluation (one sampler call with shots).

    Args:
        shots (int | None): shots per circuit evaluation; None = exact.
        noise_model: a ``qiskit_aer.noise.NoiseModel`` (needs ``shots``).
        seed (int | None): seeds the sampler; successive calls draw their seeds from one
            generator, so a run is repeatable but calls are not correlated.
        method (str): ``AerSimulator`` method with shots (``"statevector"``,
            ``"density_matrix"``, ...); must be ``"statevector"`` when exact.

    Example:
        >>> import torch, qnn
        >>> c = qnn.Circuit(1); _ = qnn.angle_embedding(c, rotation="X"); _ = c.measure_z()
        >>> eng = QiskitEngine()
        >>> round(float(eng.run(c, torch.tensor([[3.14159265]]), torch.zeros(0))), 6)
        -1.0
    """

    name = "qiskit"

    def __init__(self, shots: int | None = None, noise_model=None, seed: int | None = None,
                 method: str = "statevector", noise_backend: str | None = None):
        shots = check_shots("QiskitEngine", shots, allow_none=True)
        if noise_backend is not None:
            if noise_model is not None:
                raise ValueError("QiskitEngine: give noise_model or noise_backend, not both")
            noise_model = _noise_model_of(noise_backend)
        elif isinstance(noise_model, dict):  # from config()
            noise_model = import_optional("qiskit_aer.noise", feature="QiskitEngine").NoiseModel.from_dict(noise_model)
        if method not in _AER_METHODS:
            raise ValueError(f"QiskitEngine: method must be one of {list(_AER_METHODS)}; got {method!r}")
        if shots is None and noise_model is not None:
            raise ValueError("QiskitEngine: a noise_model needs shots=<int> (exact mode is noiseless); got shots=None")
        if shots is None and method != "statevector":
            raise ValueError(f"QiskitEngine: exact mode (shots=None) uses method='statevector'; got {method!r}")
        seed = check_seed("QiskitEngine", seed)
        import_optional("qiskit", feature="QiskitEngine")
        self.shots = shots
        self.noise_model = noise_model
        self.noise_backend = noise_backend
        self.seed = seed
        self.method = method
        self._rng = np.random.default_rng(seed)
        self._cache: dict = {}
        if self.shots is not None:
            import_optional("qiskit_aer", feature="QiskitEngine(shots=...)")
            opts = {"method": method}
            if noise_model is not None:
                opts["noise_model"] = noise_model
            self._backend_options = opts

    # ------------------------------------------------------------------ contract
    @property
    def _qiskit(self):
        return import_optional("qiskit", feature="QiskitEngine")

    @property
    def _qi(self):
        return import_optional("qiskit.quantum_info", feature="QiskitEngine")

    @property
    def _sampler_cls(self):
        return import_optional("qiskit_aer.primitives", feature="QiskitEngine").SamplerV2

    def _options(self) -> dict:
        opts = {"shots": self.shots, "seed": self.seed, "method": self.method}
        if self.noise_backend is not None:
            opts["noise_backend"] = self.noise_backend
        elif self.noise_model is not None:
            opts["noise_model"] = _plain_noise_dict(self.noise_model)
        return opts

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(hardware=False, shots=self.shots, exact_gradients=True)

    def __repr__(self) -> str:
        args = []
        if self.shots is not None:
            args.append(f"shots={self.shots}")
        if self.noise_backend is not None:
            args.append(f"noise_backend={self.noise_backend!r}")
        elif self.noise_model is not None:
            args.append("noise_model=<NoiseModel>")
        if self.seed is not None:
            args.append(f"seed={self.seed}")
        if self.method != "statevector":
            args.append(f"method={self.method!r}")
        return f"QiskitEngine({', '.join(args)})"

    # ------------------------------------------------------------------ public
    def run(self, circuit, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Evaluate ``circuit`` on ``inputs (B, n_inputs)`` with ``weights (n_weights,)``;
        returns ``(B, n_outputs)`` on ``inputs.device``, differentiable by parameter shift."""
        validate_run_args("QiskitEngine", circuit, inputs, weights)
        if self.shots is not None and any(m.kind == "hermitian" for m in circuit.measurements):
            raise ValueError(
                "QiskitEngine: hermitian measurements are evaluated exactly only (shots=None); got "
                f"shots={self.shots}: measure the Pauli words of the observable (measure_pauli) to sample them")
        evaluate = self._exact_evaluator(circuit) if self.shots is None else self._shot_evaluator(circuit)
        return parameter_shift_run("QiskitEngine", evaluate, circuit, inputs, weights)

    # ------------------------------------------------------------------ helpers
    def _cached(self, key, build):
        if key not in self._cache:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = build()
        return self._cache[key]

    def _transpile(self, qc):
        basis = AER_SAFE_BASIS
        if self.noise_model is not None:  # read out in the gates the noise model knows
            nb = [g for g in self.noise_model.basis_gates if g not in ("cry", "crz", "crx", "cp", "cu")]
            basis = nb or basis
        return self._qiskit.transpile(qc, basis_gates=basis, optimization_level=0)

    def _pub(self, tqc, values: np.ndarray):
        """Sampler PUB for ``values (rows, P)``.  A circuit without parameters is sampled once
        with ``rows * shots`` shots (split per row afterwards): Aer 0.18 runs only the first
        row of an ``(rows, 0)`` parameter array and returns zeros for the others."""
        if tqc.num_parameters == 0:
            return (tqc, None, self.shots * values.shape[0])
        return (tqc, values, self.shots)

    def _exact_evaluator(self, circuit):
        key = ("exact", circuit_key(circuit))
        pe = pauli_exp_gates(circuit)

        def build():
            if pe:  # rebuilt per row with that row's PauliExp matrices
                qc, theta = None, None
            else:
                qc, theta = to_qiskit_occurrences(circuit, state=None) if circuit.state_prep is None else \
                    _gates_only(circuit)
            obs = [observable(m, circuit.n_qubits) if m.kind != "probs" else None
                   for m in circuit.measurements]
            return qc, theta, obs

        qc, theta, obs = self._cached(key, build)
        n, slices, meas = circuit.n_qubits, expected_output_slices(circuit), circuit.measurements
        Statevector = self._qi.Statevector

        def evaluate(thetas, states, state_ids, unitaries=None):
            out = np.empty((thetas.shape[0], circuit.n_outputs))
            q_states = None if states is None else qnn_state_to_qiskit(states, n)
            for r in range(thetas.shape[0]):
                if pe:
                    qc_r, th = _gates_only(circuit, {gi: unitaries[gi][r] for gi in pe})
                    bound = qc_r.assign_parameters(thetas[r, columns_for(qc_r, th)]) if qc_r.num_parameters else qc_r
                else:
                    bound = qc.assign_parameters(thetas[r]) if len(theta) else qc
                sv = Statevector.from_label("0" * n) if q_states is None else Statevector(q_states[state_ids[r]])
                sv = sv.evolve(bound)
                for m, sl, o in zip(meas, slices, obs):
                    if m.kind == "probs":
                        out[r, sl] = sv.probabilities(probs_qargs(m))
                    else:
                        out[r, sl] = float(np.real(sv.expectation_value(o)))
            return out

        return evaluate

    def _shot_evaluator(self, circuit):
        key = ("shots", circuit_key(circuit))

        def build():
            groups = measurement_groups(circuit.measurements)
            base, theta = _gates_only(circuit)
            if circuit.state_prep is not None:
                return base, theta, groups, None
            tqcs = []
            for basis, _ in groups:
                qc = base.copy()
                add_basis_change(qc, basis)
                qc.measure_all()
                tqcs.append(self._transpile(qc))
            return base, theta, groups, tqcs

        pe = pauli_exp_gates(circuit)
        if pe:  # a PauliExp gate is synthesised from its matrix: circuits per distinct matrices
            groups = measurement_groups(circuit.measurements)
            base = theta = tqcs = None
        else:
            base, theta, groups, tqcs = self._cached(key, build)
        slices, meas, n = expected_output_slices(circuit), circuit.measurements, circuit.n_qubits

        def pe_pubs(thetas, states, state_ids, unitaries, pubs, where):
            by_key: dict = {}
            for r in range(thetas.shape[0]):
                ukey = tuple(unitaries[gi][r].tobytes() for gi in pe)
                by_key.setdefault((None if states is None else int(state_ids[r]), ukey), []).append(r)
            for (s, _), rows in by_key.items():
                rows = np.asarray(rows)
                base_r, theta_r = _gates_only(circuit, {gi: unitaries[gi][rows[0]] for gi in pe})
                for g, (basis, _) in enumerate(groups):
                    qc = self._qiskit.QuantumCircuit(n)
                    if s is not None:
                        from qiskit.circuit.library import StatePreparation

                        qc.append(StatePreparation(qnn_state_to_qiskit(states[s], n)), list(range(n)))
                    qc.compose(base_r, inplace=True)
                    add_basis_change(qc, basis)
                    qc.measure_all()
                    tqc = self._transpile(qc)
                    pubs.append(self._pub(tqc, thetas[rows][:, columns_for(tqc, theta_r)]))
                    where.append((g, rows))

        def evaluate(thetas, states, state_ids, unitaries=None):
            N = thetas.shape[0]
            out = np.empty((N, circuit.n_outputs))
            pubs, where = [], []
            if pe:
                pe_pubs(thetas, states, state_ids, unitaries, pubs, where)
            elif states is None:
                for g, tqc in enumerate(tqcs):
                    pubs.append(self._pub(tqc, thetas[:, columns_for(tqc, theta)]))
                    where.append((g, np.arange(N)))
            else:
                from qiskit.circuit.library import StatePreparation

                for s in np.unique(state_ids):
                    rows = np.flatnonzero(state_ids == s)
                    for g, (basis, _) in enumerate(groups):
                        qc = self._qiskit.QuantumCircuit(n)
                        qc.append(StatePreparation(qnn_state_to_qiskit(states[s], n)), list(range(n)))
                        qc.compose(base, inplace=True)
                        add_basis_change(qc, basis)
                        qc.measure_all()
                        tqc = self._transpile(qc)
                        vals = thetas[rows][:, columns_for(tqc, theta)]
                        pubs.append(self._pub(tqc, vals))
                        where.append((g, rows))
            seed = None if self.seed is None else int(self._rng.integers(2**31 - 1))
            sampler = self._sampler_cls(default_shots=self.shots, seed=seed,
                                        options={"backend_options": dict(self._backend_options)})
            result = sampler.run(pubs, shots=self.shots).result()
            for (g, rows), pub_res in zip(where, result):
                bits = unpack_bits(pub_res.data.meas, n).reshape(len(rows), self.shots, n)
                sub = np.empty((len(rows), circuit.n_outputs))
                outputs_from_bits(bits, meas, groups[g][1], slices, sub)
                for i in groups[g][1]:
                    out[rows, slices[i]] = sub[:, slices[i]]
            return out

        return evaluate


def _noise_model_of(backend_name: str):
    """Aer noise model of a fake IBM backend given by name (``"fake_manila"``)."""
    if not isinstance(backend_name, str) or not backend_name.startswith("fake_"):
        raise ValueError(f"QiskitEngine: noise_backend must be a fake backend name such as 'fake_manila'; "
                         f"got {backend_name!r}")
    fp = import_optional("qiskit_ibm_runtime.fake_provider", feature="QiskitEngine(noise_backend=...)")
    try:
        backend = fp.FakeProviderForBackendV2().backend(backend_name)
    except Exception:
        raise ValueError(f"QiskitEngine: unknown fake backend {backend_name!r}") from None
    return import_optional("qiskit_aer.noise", feature="QiskitEngine").NoiseModel.from_backend(backend)


def _plain_noise_dict(noise_model) -> dict:
    """A NoiseModel as plain values (complex numbers as [re, im] pairs are what
    ``to_dict(serializable=True)`` gives)."""
    import json

    return json.loads(json.dumps(noise_model.to_dict(serializable=True), default=lambda o: [o.real, o.imag]
                                 if isinstance(o, complex) else str(o)))


def _gates_only(circuit, unitaries: dict | None = None):
    """Occurrence-view Qiskit circuit of the gates alone (no state preparation); ``PauliExp``
    gates as the ``UnitaryGate`` of ``unitaries[gate index]``."""
    from qnn.circuit import Circuit

    c = Circuit(circuit.n_qubits)
    c.n_inputs, c.n_weights = circuit.n_inputs, circuit.n_weights
    c.gates = list(circuit.gates)
    return to_qiskit_occurrences(c, unitaries=unitaries)
