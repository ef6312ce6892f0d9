"""Helpers for tests: random circuits that use every gate kind and builder, and a fake IBM
runtime service that fails on purpose (:class:`FakeRuntimeService`)."""

from __future__ import annotations

import numpy as np

from qnn.circuit import (
    GATES,
    Circuit,
    Param,
    PauliExp,
    amplitude_embedding,
    angle_embedding,
    basic_entangler_layers,
    hardware_efficient_layers,
    strongly_entangling_layers,
)

__all__ = ["random_circuit", "random_pauli_circuit", "builder_circuit", "BUILDER_KINDS", "FakeRuntimeService",
           "SimulatedKill", "FAULT_KINDS"]


def random_circuit(n_qubits: int, n_gates: int = 30, seed: int = 0, *, amplitude: bool = False,
                   measure: str = "mixed", max_wires: int | None = None) -> Circuit:
    """A random circuit on ``n_qubits`` with ``n_gates`` gates drawn from every gate kind that
    fits (with ``max_wires``: on at most that many wires).  Angles are bound to inputs, weights
    and constants at random.  ``measure`` is ``"z"`` (<Z> on every wire), ``"pauli"``,
    ``"probs"`` or ``"mixed"`` (all three)."""
    rng = np.random.default_rng(seed)
    c = Circuit(n_qubits)
    if amplitude:
        amplitude_embedding(c, n_features=int(rng.integers(1, 2**n_qubits + 1)), pad=0.3)
    n_in = n_qubits + 1
    c.new_inputs(n_in)
    c.new_weights("w", (2 * n_gates,))
    top = n_qubits if max_wires is None else min(n_qubits, max_wires)
    names = [g for g, (nw, _) in GATES.items() if nw is None and top >= 2 or nw is not None and nw <= top]
    used_w = 0
    for _ in range(n_gates):
        name = names[int(rng.integers(len(names)))]
        nw, npar = GATES[name]
        if nw is None:
            nw = int(rng.integers(2, min(n_qubits, 4, max_wires or 4) + 1))
        wires = [int(w) for w in rng.choice(n_qubits, size=nw, replace=False)]
        params = []
        for _ in range(npar):
            r = rng.random()
            if r < 0.35:
                # angle inputs are the last n_in features (after any amplitude-embedded ones)
                params.append(Param.input(int(rng.integers(c.n_inputs - n_in, c.n_inputs)),
                                          scale=float(rng.uniform(0.5, 2.0))))
            elif r < 0.85:
                params.append(Param.weight(used_w % c.n_weights, scale=float(rng.choice([1.0, -0.5]))))
                used_w += 1
            else:
                params.append(Param.const(float(rng.uniform(-np.pi, np.pi))))
        c.add(name, wires, params)
    if measure in ("z", "mixed"):
        c.measure_z()
    if measure in ("pauli", "mixed"):
        k = int(rng.integers(1, n_qubits + 1))
        wires = [int(w) for w in rng.choice(n_qubits, size=k, replace=False)]
        c.measure_pauli("".join(rng.choice(list("XYZI"), size=k)), wires)
    if measure in ("probs", "mixed"):
        k = int(rng.integers(1, min(n_qubits, 3) + 1))
        c.measure_probs([int(w) for w in rng.choice(n_qubits, size=k, replace=False)])
    return c


BUILDER_KINDS = ("angle_x", "angle_y", "angle_z", "amplitude", "strongly_entangling",
                 "basic_entangler", "hardware_efficient")


def builder_circuit(kind: str, n_qubits: int, n_layers: int = 2) -> Circuit:
    """Embedding + ansatz circuit exercising one builder, measured with <Z> on every wire."""
    c = Circuit(n_qubits)
    if kind == "amplitude":
        amplitude_embedding(c, n_features=max(1, 2**n_qubits - 1), pad=0.5)
        strongly_entangling_layers(c, n_layers)
    elif kind.startswith("angle_"):
        angle_embedding(c, rotation=kind[-1].upper())
        strongly_entangling_layers(c, n_layers)
    else:
        angle_embedding(c, rotation="Y")
        {"strongly_entangling": strongly_entangling_layers, "basic_entangler": basic_entangler_layers,
         "hardware_efficient": hardware_efficient_layers}[kind](c, n_layers)
    c.measure_z()
    return c


def random_pauli_circuit(n_qubits: int, n_gates: int = 12, seed: int = 0, *, n_pauli: int = 3,
                         amplitude: bool = False, measure: str = "mixed", hermitian: bool = True) -> Circuit:
    """:func:`random_circuit` with ``n_pauli`` random :class:`~qnn.circuit.PauliExp` gates
    inserted at random positions (1-3 wires, a random subset of the Pauli words, coefficients
    bound to inputs, weights and constants at random, also several words on one input) and,
    with ``hermitian``, a random Hermitian observable on 1-2 wires measured last."""
    import itertools

    rng = np.random.default_rng(10_000 + seed)
    c = random_circuit(n_qubits, n_gates, seed, amplitude=amplitude, measure=measure)
    n_in = n_qubits + 1
    for _ in range(n_pauli):
        m = int(rng.integers(1, min(n_qubits, 3) + 1))
        wires = tuple(int(w) for w in rng.choice(n_qubits, size=m, replace=False))
        labels = ["".join(p) for p in itertools.product("IXYZ", repeat=m)][1:]
        k = int(rng.integers(1, len(labels) + 1))
        words = tuple(labels[int(i)] for i in rng.choice(len(labels), size=k, replace=False))
        params = []
        for _ in words:
            r = rng.random()
            if r < 0.4:
                params.append(Param.input(int(rng.integers(c.n_inputs - n_in, c.n_inputs)),
                                          scale=float(rng.uniform(0.2, 1.0)), offset=float(rng.uniform(-1, 1))))
            elif r < 0.85:
                params.append(Param.weight(int(rng.integers(c.n_weights)), scale=float(rng.choice([1.0, -0.5]))))
            else:
                params.append(Param.const(float(rng.uniform(-1, 1))))
        c.gates.insert(int(rng.integers(len(c.gates) + 1)), PauliExp(wires, words, tuple(params)))
    if hermitian:
        k = int(rng.integers(1, min(n_qubits, 2) + 1))
        wires = [int(w) for w in rng.choice(n_qubits, size=k, replace=False)]
        a = rng.normal(size=(2**k, 2**k)) + 1j * rng.normal(size=(2**k, 2**k))
        c.measure_hermitian((a + a.conj().T) / 2, wires)
    return c


# =========================================================================== fake runtime
FAULT_KINDS = ("timeout", "failure", "drop", "kill")


class SimulatedKill(BaseException):
    """Stands for the process being killed: not an ``Exception``, so nothing catches it and the
    run aborts; a new run object then resumes from the job store."""


class FakeRuntimeService:
    """A stand-in for ``QiskitRuntimeService`` that runs jobs locally on fake backends and
    injects faults at random points: ``"timeout"`` (collecting a result times out; the job
    goes on), ``"failure"`` (the job ends in ERROR), ``"drop"`` (the connection drops while
    submitting, before or after the service accepted the job) and ``"kill"`` (the client
    process dies before or after a submission is accepted, or while collecting a result).

    It counts what it was sent (``jobs``, ``pubs``, ``circuits``, ``shots``), every fault
    (``faults``), and submissions per job tag, so a test checks for duplicate submissions
    (:meth:`duplicates`).  It survives the "kills" (it is the remote service).  With
    ``require_token`` the token must be in ``QISKIT_IBM_TOKEN`` (it is never stored).  Jobs run
    with the backend's noise model, or (``noise=False``, fast) on Qiskit's exact reference
    primitives, the sampler seeded from the job's options.

    Example:
        >>> svc = FakeRuntimeService(fault_rate=0.0)
        >>> svc.backend("fake_manila").num_qubits
        5
    """

    local = True  # results are simulated here: the planner seeds them per plan position

    def __init__(self, backends=("fake_manila", "fake_guadalupe"), *, fault_rate: float = 0.0, seed: int = 0,
                 kinds=FAULT_KINDS, require_token: bool = False, noise: bool = True):
        import os

        from qnn.planner import AuthenticationError

        if require_token and not os.environ.get("QISKIT_IBM_TOKEN"):
            raise AuthenticationError("FakeRuntimeService: a token must be set in QISKIT_IBM_TOKEN; got none")
        bad = [k for k in kinds if k not in FAULT_KINDS]
        if bad:
            raise ValueError(f"FakeRuntimeService: kinds must be among {list(FAULT_KINDS)}; got {bad}")
        self.noise = bool(noise)
        self.backend_names = list(backends)
        self.fault_rate = float(fault_rate)
        self.kinds = tuple(kinds)
        self._rng = np.random.default_rng(seed)
        self._backends: dict = {}
        self._jobs: dict[str, dict] = {}
        self.submissions: dict[str, int] = {}
        self.faults: dict[str, int] = {k: 0 for k in FAULT_KINDS}
        self.jobs = self.pubs = self.circuits = self.shots = 0

    # -------------------------------------------------------------- service API
    def backend(self, name: str):
        from qnn.planner import UnknownBackendError

        if name not in self.backend_names:
            raise UnknownBackendError(f"FakeRuntimeService: backend must be one of {self.backend_names}; got {name!r}")
        if name not in self._backends:
            from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

            self._backends[name] = FakeProviderForBackendV2().backend(name)
        return self._backends[name]

    def least_busy(self, operational: bool = True, simulator: bool = False):
        return self.backend(self.backend_names[0])

    def _fault(self, *kinds) -> str | None:
        kinds = [k for k in kinds if k in self.kinds]
        if not kinds or self._rng.random() >= self.fault_rate:
            return None
        k = kinds[int(self._rng.integers(len(kinds)))]
        self.faults[k] += 1
        return k

    @property
    def n_faults(self) -> int:
        return sum(self.faults.values())

    # -------------------------------------------------------------- transport API
    def submit(self, kind: str, pubs: list, options: dict, tag: str) -> str:
        from qiskit_ibm_runtime import EstimatorV2, SamplerV2

        f = self._fault("drop", "kill")
        if f == "drop":
            raise ConnectionError("FakeRuntimeService: connection dropped before the job was accepted")
        if f == "kill":
            raise SimulatedKill("killed before the job was accepted")
        opts = {k: v for k, v in options.items() if k != "environment"}
        if self.noise:
            cls = EstimatorV2 if kind == "estimator" else SamplerV2
            result = cls(mode=self._backend_of(pubs[0][0]), options=opts).run(pubs).result()
        else:
            from qiskit.primitives import StatevectorEstimator, StatevectorSampler

            seed = opts.get("simulator", {}).get("seed_simulator")
            prim = StatevectorEstimator(seed=seed) if kind == "estimator" else StatevectorSampler(seed=seed)
            result = prim.run(pubs).result()
        failed = self._fault("failure") == "failure"
        job_id = f"fake-{len(self._jobs)}"
        self._jobs[job_id] = {"tag": tag, "failed": failed, "result": result}
        self.jobs += 1
        self.pubs += len(pubs)
        for p in pubs:
            v = np.asarray(p[2] if kind == "estimator" else p[1])
            rows = int(v.shape[0]) if v.ndim >= 1 else 1
            self.circuits += rows
            if kind == "sampler":
                self.shots += rows * int(p[2])
            else:
                from qiskit.quantum_info import PauliList

                obs = np.asarray(p[1], dtype=object).ravel()
                bases = len(PauliList([q for o in obs for q in o.paulis]).group_qubit_wise_commuting())
                self.shots += rows * max(1, bases) * int(options["default_shots"])
        if not failed:
            self.submissions[tag] = self.submissions.get(tag, 0) + 1
        f = self._fault("drop", "kill")
        if f == "drop":
            raise ConnectionError("FakeRuntimeService: connection dropped after the job was accepted")
        if f == "kill":
            raise SimulatedKill("killed after the job was accepted")
        return job_id

    def _backend_of(self, circuit):
        n = circuit.num_qubits
        for name in self.backend_names:
            if self.backend(name).num_qubits == n:
                return self.backend(name)
        return self.backend(self.backend_names[0])

    def result(self, job_id: str):
        from qnn.planner import JobFailedError

        f = self._fault("timeout", "kill")
        if f == "timeout":
            raise TimeoutError(f"FakeRuntimeService: timed out waiting for job {job_id}")
        if f == "kill":
            raise SimulatedKill("killed while collecting a result")
        job = self._jobs[job_id]
        if job["failed"]:
            raise JobFailedError(f"FakeRuntimeService: job {job_id} ended in ERROR")
        return job["result"]

    def find(self, tag: str) -> list[str]:
        return [j for j, rec in self._jobs.items() if rec["tag"] == tag and not rec["failed"]]

    def duplicates(self) -> int:
        """Submissions beyond the first of a job tag, counting only jobs that did not fail."""
        return sum(max(0, n - 1) for n in self.submissions.values())
