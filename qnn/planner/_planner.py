"""The planner: backend, ISA transpilation cache, packing of PUBs into jobs within the
backend's limits, execution modes, budget and job store.

An engine hands the planner PUBs (``planner.execute(kind, pubs)``) made from ISA circuits the
planner transpiled (``planner.isa(key, build)``).  Outside a step they are sent at once.
Inside :meth:`Planner.step` every engine's requests of a pass over the model are *recorded*
(placeholders come back), then sent together -- all layers, forward rows and parameter-shift
rows -- in as few jobs as the limits allow, and the pass is repeated with the results served
from memory.  A model whose quantum layers feed each other needs one round per level; a model
whose circuits are independent (KACQ's three) needs one.  The same loop with a null transport
is the dry run behind :meth:`Planner.estimate`, so an estimate is exactly what would be sent.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import threading
import time

import numpy as np

from qnn._optional import import_optional
from qnn.planner._cost import DEFAULT_JOB_OVERHEAD_S, DEFAULT_REP_DELAY_S, Budget, Estimate, job_qpu_seconds
from qnn.planner._errors import (
    TRANSIENT_ERRORS,
    AuthenticationError,
    CircuitTooWideError,
    JobFailedError,
    PlanMismatchError,
    UnknownBackendError,
)
from qnn.planner._store import JobStore
from qnn.planner._transport import LocalTransport, RuntimeTransport, Transport, scrub

__all__ = ["Planner", "active_planner", "EXECUTION_MODES", "DEFAULT_MAX_CIRCUITS_PER_JOB",
           "DEFAULT_MAX_EXECUTIONS_PER_JOB"]

EXECUTION_MODES = ("job", "batch", "session")
# bound circuits per job when the backend declares no limit, and circuits x shots per job
DEFAULT_MAX_CIRCUITS_PER_JOB = 10_000
DEFAULT_MAX_EXECUTIONS_PER_JOB = 10_000_000
_MAX_ROUNDS = 64
_STATE = threading.local()

_HOW_TO_CONFIGURE = (
    "Configure an IBM Quantum account once with `QiskitRuntimeService.save_account(channel="
    "'ibm_quantum_platform', token=<your API key>, instance=<your CRN>)`, or set QISKIT_IBM_TOKEN "
    "(and QISKIT_IBM_INSTANCE), or pass service=...; to run locally pass a fake backend name such "
    "as 'fake_manila'.")


def active_planner() -> "Planner | None":
    """The planner whose :meth:`Planner.step` (or dry run) is running in this thread, if any."""
    return getattr(_STATE, "planner", None)


def _sha(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode())
        h.update(b"|")
    return h.hexdigest()


@functools.lru_cache(maxsize=16)
def _fake_backend(name: str):
    """A fake backend by name (built once per process: reading its calibration is slow)."""
    fp = import_optional("qiskit_ibm_runtime.fake_provider", feature="qnn.planner")
    return fp.FakeProviderForBackendV2().backend(name)


class _NullTransport(Transport):
    """Dry runs: nothing is sent."""


class Planner:
    """Plan, cost, budget and run primitive jobs on one backend.

    Args:
        backend: a backend object (``IBMBackend``, a fake backend), a name (``"ibm_torino"``
            through the service, ``"fake_manila"`` locally) or None for the least busy
            operational QPU of the account.
        service: a ``QiskitRuntimeService`` (or the fake one of :mod:`qnn.testing`); built from
            the environment / saved account when a real backend name is given.
        channel, instance, token: for building the service; the token is used once and never
            stored, printed or logged (prefer ``QISKIT_IBM_TOKEN`` or a saved account).
        shots (int): shots per circuit evaluation; ``precision`` (float) instead targets the
            estimator's standard error (sampler PUBs then use ``ceil(1 / precision**2)`` shots).
        optimization_level, seed, initial_layout: ISA transpilation (preset pass manager).
        mode: ``"job"``, ``"batch"`` or ``"session"`` execution mode.
        options (dict): passed to the primitives (``resilience_level``, ``twirling``,
            ``dynamical_decoupling``...); ``default_shots`` is set from ``shots``.
        budget: a :class:`Budget` checked before any job is sent (None: unlimited).
        store: path of an SQLite job store (or a :class:`JobStore`) to persist and resume jobs.
        run (str): name of the run in the store; a resumed run uses the same name.
        retries (int), backoff (float): retries of transient errors and failed jobs, with
            exponential backoff ``backoff * 2**attempt`` seconds.
        max_circuits_per_job, max_executions_per_job: packing limits (default: the backend's
            ``max_circuits`` / ``max_experiments``, else 10,000 bound circuits and 10 M
            circuit-shots per job).
        job_overhead, rep_delay: cost model constants (see :mod:`qnn.planner._cost`).
    """

    def __init__(self, backend=None, *, service=None, channel: str | None = None, instance: str | None = None,
                 token: str | None = None, shots: int = 4096, precision: float | None = None,
                 optimization_level: int = 1, seed: int | None = None, initial_layout=None, mode: str = "job",
                 options: dict | None = None, budget: Budget | None = None, store=None, run: str = "qnn",
                 retries: int = 4, backoff: float = 0.5, max_circuits_per_job: int | None = None,
                 max_executions_per_job: int | None = None, job_overhead: float = DEFAULT_JOB_OVERHEAD_S,
                 rep_delay: float | None = None, sleep=time.sleep):
        if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
            raise ValueError(f"Planner: shots must be a positive int; got {shots!r}")
        if precision is not None and not (isinstance(precision, (int, float)) and 0 < precision < 1):
            raise ValueError(f"Planner: precision must be None or a float in (0, 1); got {precision!r}")
        if optimization_level not in (0, 1, 2, 3):
            raise ValueError(f"Planner: optimization_level must be 0, 1, 2 or 3; got {optimization_level!r}")
        if mode not in EXECUTION_MODES:
            raise ValueError(f"Planner: mode must be one of {list(EXECUTION_MODES)}; got {mode!r}")
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"Planner: options must be a dict of primitive options; got {type(options).__name__}")
        if budget is not None and not isinstance(budget, Budget):
            raise TypeError(f"Planner: budget must be a qnn.planner.Budget; got {type(budget).__name__}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"Planner: retries must be an int >= 0; got {retries!r}")
        self.shots = int(shots)
        self.precision = None if precision is None else float(precision)
        self.optimization_level = int(optimization_level)
        self.seed = seed
        self.initial_layout = None if initial_layout is None else [int(q) for q in initial_layout]
        self.mode = mode
        self.options = dict(options or {})
        self.budget = budget
        self.store = store if store is None or isinstance(store, JobStore) else JobStore(store)
        self.run_name = str(run)
        self.retries = retries
        self.backoff = float(backoff)
        self.job_overhead = float(job_overhead)
        self._sleep = sleep
        self.backend, self.transport = self._resolve(backend, service, channel, instance, token)
        self.backend_name = str(getattr(self.backend, "name", type(self.backend).__name__))
        self.n_qubits = getattr(self.backend, "num_qubits", None)
        self.rep_delay = float(rep_delay if rep_delay is not None else self._backend_rep_delay())
        bmax = getattr(self.backend, "max_circuits", None)
        if bmax is None:
            cfg = self._configuration()
            bmax = getattr(cfg, "max_experiments", None) if cfg is not None else None
        self.max_circuits_per_job = int(max_circuits_per_job or bmax or DEFAULT_MAX_CIRCUITS_PER_JOB)
        self.max_executions_per_job = int(max_executions_per_job or DEFAULT_MAX_EXECUTIONS_PER_JOB)
        self._pm = None
        self._isa: dict = {}
        self._isa_key: dict[int, str] = {}
        self._durations: dict[str, float] = {}
        self._bases: dict = {}
        self._results: dict = {}
        self._pending: list = []
        self._pending_keys: set = set()
        self._recording = False
        self._dry: Estimate | None = None
        self.position = 0  # plan position of the next job of this run
        self.sent = Estimate("sent")
        self.log: list[dict] = []  # one entry per job sent: kind, pubs, circuits, shots, job id, position

    # ------------------------------------------------------------------ backend
    def _resolve(self, backend, service, channel, instance, token):
        if service is not None and callable(getattr(service, "submit", None)) and callable(getattr(service, "find", None)):
            # a service that is its own transport (qnn.testing.FakeRuntimeService)
            b = service.least_busy() if backend is None else (
                service.backend(backend) if isinstance(backend, str) else backend)
            return b, service
        if backend is not None and not isinstance(backend, str):
            if not hasattr(backend, "target"):
                raise TypeError(f"Planner: backend must be a BackendV2, a backend name or None; "
                                f"got {type(backend).__name__}")
            if service is None:
                return backend, LocalTransport(backend)
            return backend, RuntimeTransport(service, backend, self.mode)
        if isinstance(backend, str) and backend.startswith("fake_") and service is None:
            fp = import_optional("qiskit_ibm_runtime.fake_provider", feature="qnn.planner")
            provider = fp.FakeProviderForBackendV2()
            try:
                b = _fake_backend(backend)
            except Exception:
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    names = sorted(x.name for x in provider.backends())
                raise UnknownBackendError(f"Planner: unknown fake backend {backend!r}; valid names are {names}") \
                    from None
            return b, LocalTransport(b)
        if service is None:
            rt = import_optional("qiskit_ibm_runtime", feature="qnn.planner")
            kwargs = {k: v for k, v in (("channel", channel), ("instance", instance), ("token", token)) if v}
            try:
                service = rt.QiskitRuntimeService(**kwargs)
            except Exception as exc:
                msg = scrub(f"{type(exc).__name__}: {exc}", token or os.environ.get("QISKIT_IBM_TOKEN"))
                raise AuthenticationError(f"Planner: could not open the IBM Quantum service ({msg}). "
                                          + _HOW_TO_CONFIGURE) from None
        try:
            b = service.least_busy(operational=True, simulator=False) if backend is None else service.backend(backend)
        except Exception as exc:
            msg = scrub(f"{type(exc).__name__}: {exc}", token or os.environ.get("QISKIT_IBM_TOKEN"))
            raise UnknownBackendError(f"Planner: backend must be one the service offers; got {backend!r} ({msg})") \
                from None
        return b, RuntimeTransport(service, b, self.mode)

    def _configuration(self):
        try:
            return self.backend.configuration()
        except Exception:  # noqa: BLE001 - not every BackendV2 has one
            return None

    def _backend_rep_delay(self) -> float:
        v = getattr(self.backend, "default_rep_delay", None)
        if v is None:
            cfg = self._configuration()
            v = getattr(cfg, "default_rep_delay", None) if cfg is not None else None
        return float(v) if v else DEFAULT_REP_DELAY_S

    def __repr__(self) -> str:
        return (f"Planner(backend={self.backend_name!r}, shots={self.shots}, mode={self.mode!r}, "
                f"optimization_level={self.optimization_level}, budget={self.budget!r})")

    # ------------------------------------------------------------------ transpilation
    def check_width(self, n_qubits: int, owner: str = "Planner") -> None:
        if self.n_qubits is not None and n_qubits > self.n_qubits:
            raise CircuitTooWideError(f"{owner}: the circuit must fit backend {self.backend_name!r} "
                                      f"({self.n_qubits} qubits); got a circuit on {n_qubits} qubits")

    @property
    def pass_manager(self):
        if self._pm is None:
            gpm = import_optional("qiskit.transpiler.preset_passmanagers", feature="qnn.planner")
            self._pm = gpm.generate_preset_pass_manager(
                backend=self.backend, optimization_level=self.optimization_level,
                seed_transpiler=self.seed, initial_layout=self.initial_layout)
        return self._pm

    def isa(self, key, build) -> list:
        """ISA circuits of ``build()`` (a list of circuits), transpiled once per
        ``(key, backend, optimisation level, seed, layout)``; ``key`` must fix the circuits."""
        full = (key, self.backend_name, self.optimization_level, self.seed, tuple(self.initial_layout or ()))
        if full not in self._isa:
            circuits = build()
            isas = self.pass_manager.run(list(circuits)) if circuits else []
            name = _sha(full)
            for i, c in enumerate(isas):
                self._isa_key[id(c)] = f"{name}:{i}"
            self._isa[full] = isas
        return self._isa[full]

    @property
    def transpile_count(self) -> int:
        """Distinct transpilations so far (the cache's size)."""
        return len(self._isa)

    def _circuit_key(self, circuit) -> str:
        k = self._isa_key.get(id(circuit))
        return k if k is not None else _sha(str(circuit))

    def _duration(self, circuit) -> float:
        k = self._circuit_key(circuit)
        if k not in self._durations:
            try:
                self._durations[k] = float(circuit.estimate_duration(self.backend.target, unit="s"))
            except Exception:  # noqa: BLE001 - a target without durations
                self._durations[k] = 0.0
        return self._durations[k]

    # ------------------------------------------------------------------ PUB bookkeeping
    def _pub_shots(self) -> int:
        return self.shots if self.precision is None else int(math.ceil(1.0 / self.precision ** 2))

    def _obs_key(self, obs) -> str:
        return _sha([(str(o.paulis), o.coeffs.tobytes()) for o in np.asarray(obs, dtype=object).ravel()])

    def _n_bases(self, obs) -> int:
        k = self._obs_key(obs)
        if k not in self._bases:
            qi = import_optional("qiskit.quantum_info", feature="qnn.planner")
            paulis = qi.PauliList([p for o in np.asarray(obs, dtype=object).ravel() for p in o.paulis])
            self._bases[k] = max(1, len(paulis.group_qubit_wise_commuting()))
        return self._bases[k]

    def _pub_key(self, kind: str, pub) -> str:
        vals = np.ascontiguousarray(pub[-1], dtype=np.float64)
        obs = self._obs_key(pub[1]) if kind == "estimator" else ""
        return _sha(kind, self._circuit_key(pub[0]), obs, vals.shape, vals.tobytes(), self._pub_shots(),
                    self.precision)

    @staticmethod
    def _rows(pub) -> int:
        v = np.asarray(pub[-1])
        return int(v.shape[0]) if v.ndim >= 1 else 1

    def _executions(self, kind, pub) -> tuple[int, int, float]:
        """(bound circuits, shots over them, duration of one circuit) of a PUB."""
        rows = self._rows(pub)
        bases = self._n_bases(pub[1]) if kind == "estimator" else 1
        return rows, rows * bases * self._pub_shots(), self._duration(pub[0])

    # ------------------------------------------------------------------ packing
    def _split(self, kind, pub) -> list:
        """A PUB cut into PUBs of at most the per-job limits (rows kept in order)."""
        rows = self._rows(pub)
        bases = self._n_bases(pub[1]) if kind == "estimator" else 1
        per_exec = max(1, self.max_executions_per_job // max(1, bases * self._pub_shots()))
        limit = max(1, min(self.max_circuits_per_job, per_exec))
        if rows <= limit:
            return [pub]
        vals = np.asarray(pub[-1])
        return [(*pub[:-1], vals[i: i + limit]) for i in range(0, rows, limit)]

    def pack(self, kind: str, pubs: list) -> list[list[tuple[int, int, tuple]]]:
        """Jobs for ``pubs``: lists of ``(pub index, chunk index, PUB)``, filled greedily up
        to ``max_circuits_per_job`` bound circuits and ``max_executions_per_job`` shots."""
        jobs, cur, n_c, n_e = [], [], 0, 0
        for i, pub in enumerate(pubs):
            for j, part in enumerate(self._split(kind, pub)):
                c, e, _ = self._executions(kind, part)
                if cur and (n_c + c > self.max_circuits_per_job or n_e + e > self.max_executions_per_job):
                    jobs.append(cur)
                    cur, n_c, n_e = [], 0, 0
                cur.append((i, j, part))
                n_c += c
                n_e += e
        if cur:
            jobs.append(cur)
        return jobs

    def _job_estimate(self, kind: str, job) -> Estimate:
        ex = [self._executions(kind, p) for _, _, p in job]
        qpu = job_qpu_seconds([(e / max(c, 1), d) for c, e, d in ex for _ in range(c)], rep_delay=self.rep_delay,
                              overhead=self.job_overhead) if ex else 0.0
        return Estimate(kind, sum(c for c, _, _ in ex), len(job), 1, sum(e for _, e, _ in ex), qpu, True, {kind: 1})

    # ------------------------------------------------------------------ execution
    def execute(self, kind: str, pubs: list):
        """Results for ``pubs`` (estimator: ``evs`` arrays; sampler: the ``meas`` BitArray),
        or None while a step is recording (the caller returns placeholders)."""
        if kind not in ("estimator", "sampler"):
            raise ValueError(f"Planner.execute: kind must be 'estimator' or 'sampler'; got {kind!r}")
        keys = [self._pub_key(kind, p) for p in pubs]
        if all(k in self._results for k in keys):
            return [self._results[k] for k in keys]
        for k, p in zip(keys, pubs):
            if k not in self._results and k not in self._pending_keys:
                self._pending.append((kind, k, p))
                self._pending_keys.add(k)
        if self._recording:
            return None
        self.flush()
        out = [self._results[k] for k in keys]
        if active_planner() is not self:
            self._results.clear()
        return out

    def flush(self) -> Estimate:
        """Send every pending PUB (estimator PUBs, then sampler PUBs), packed into jobs."""
        pending, self._pending, self._pending_keys = self._pending, [], set()
        total = Estimate("flush")
        for kind in ("estimator", "sampler"):
            items = [(k, p) for kd, k, p in pending if kd == kind]
            if not items:
                continue
            jobs = self.pack(kind, [p for _, p in items])
            ests = [self._job_estimate(kind, job) for job in jobs]
            for e in ests:
                total = total + e
            if self._dry is not None:
                for k, p in items:
                    self._results[k] = self._placeholder(kind, p)
                self._dry = self._dry + sum(ests, Estimate())
                continue
            positions = list(range(self.position, self.position + len(jobs)))
            if self.budget is not None:
                todo = sum((e for e, pos in zip(ests, positions) if not self._stored_done(pos)), Estimate())
                self.budget.check(todo)
            parts: dict[int, list] = {}
            for job, est, pos in zip(jobs, ests, positions):
                results, fresh = self._run_job(kind, [p for _, _, p in job], pos)
                self.position = pos + 1
                if fresh and self.budget is not None:
                    self.budget.charge(est)
                if fresh:
                    self.sent = self.sent + est
                for (i, j, _), r in zip(job, results):
                    parts.setdefault(i, []).append((j, r))
            for i, (k, _) in enumerate(items):
                chunks = [r for _, r in sorted(parts[i], key=lambda t: t[0])]
                self._results[k] = self._merge(kind, chunks)
        return total

    def _stored_done(self, position: int) -> bool:
        if self.store is None:
            return False
        row = self.store.get(self.run_name, position)
        return row is not None and row["status"] == "done"

    @staticmethod
    def _merge(kind, chunks):
        if len(chunks) == 1:
            return chunks[0]
        if kind == "estimator":
            return np.concatenate(chunks, axis=-1)
        BitArray = import_optional("qiskit.primitives", feature="qnn.planner").BitArray
        return BitArray.concatenate(chunks, axis=0)

    def _placeholder(self, kind, pub):
        rows = self._rows(pub)
        if kind == "estimator":
            return np.zeros((np.asarray(pub[1], dtype=object).shape[0], rows))
        BitArray = import_optional("qiskit.primitives", feature="qnn.planner").BitArray
        nb = pub[0].num_clbits
        return BitArray(np.zeros((rows, self._pub_shots(), (nb + 7) // 8), dtype=np.uint8), nb)

    def _options(self, position: int) -> dict:
        opts = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.options.items()}
        if self.precision is None:
            opts.setdefault("default_shots", self.shots)
        if self.transport.local and self.seed is not None:
            sim = dict(opts.get("simulator", {}))
            sim.setdefault("seed_simulator", int((int(self.seed) * 1_000_003 + position) % (2**31 - 1)) + 1)
            opts["simulator"] = sim
        return opts

    def _wire_pubs(self, kind, pubs) -> list:
        if kind == "sampler":
            return [(p[0], p[-1], self._pub_shots()) for p in pubs]
        if self.precision is not None:
            return [(p[0], p[1], p[-1], self.precision) for p in pubs]
        return [tuple(p) for p in pubs]

    def _run_job(self, kind: str, pubs: list, position: int):
        """``(per-PUB results, sent_now)`` for one job at ``position``, resuming from the store."""
        wire = self._wire_pubs(kind, pubs)
        h = _sha(kind, [self._pub_key(kind, p) for p in pubs])
        tag = f"qnn-{self.run_name}-{position}-{h[:16]}"
        store, run = self.store, self.run_name
        row = store.get(run, position) if store is not None else None
        if row is not None and row["input_hash"] != h:
            raise PlanMismatchError(
                f"Planner: job {position} of run {run!r} in {store.path} must send what the store recorded "
                f"(input hash {row['input_hash'][:16]}); got {h[:16]} -- the resumed run differs (other data, "
                "weights or seeds); use a new run name")
        if row is not None and row["status"] == "done":
            return self._decode(kind, pubs, store.arrays(row), position), False
        if store is not None and row is None:
            row = store.begin(run, position, h, self.backend_name, kind, tag=tag)
        job_id = row["job_id"] if row is not None and row["status"] == "submitted" else None
        if row is not None and row["status"] == "submitting":
            # maybe sent just before a crash: collect it instead of sending it again
            found = self._retry(lambda: self.transport.find(tag), "find")
            job_id = found[0] if found else None
            if job_id is not None:
                store.mark_submitted(run, position, job_id)
        fresh = job_id is None
        failures = 0
        while True:
            if job_id is None:
                job_id = self._submit(kind, wire, position, tag)
                fresh = True
                if store is not None:
                    store.mark_submitted(run, position, job_id)
                self.log.append({"position": position, "kind": kind, "pubs": len(wire), "job_id": job_id,
                                 "circuits": sum(self._rows(p) for p in pubs)})
            try:
                result = self._retry(lambda: self.transport.result(job_id), "result")
                break
            except JobFailedError as exc:
                failures += 1
                if failures > self.retries:
                    if store is not None:
                        store.mark_failed(run, position, str(exc))
                    raise JobFailedError(f"Planner: job {position} failed {failures} times; last: {exc}") from exc
                if store is not None:
                    store.mark_attempt(run, position)
                job_id = None
                self._sleep(self.backoff * 2 ** (failures - 1))
        arrays = self._normalise(kind, pubs, result)
        if store is not None:
            store.mark_done(run, position, arrays)
        return self._decode(kind, pubs, arrays, position), fresh

    def _submit(self, kind, wire, position, tag) -> str:
        attempt = 0
        while True:
            try:
                return self.transport.submit(kind, wire, self._options(position), tag)
            except TRANSIENT_ERRORS:
                attempt += 1
                if attempt > self.retries:
                    raise
                self._sleep(self.backoff * 2 ** (attempt - 1))
                found = self._retry(lambda: self.transport.find(tag), "find")  # did it arrive after all?
                if found:
                    return found[0]

    def _retry(self, fn, what: str):
        attempt = 0
        while True:
            try:
                return fn()
            except TRANSIENT_ERRORS:
                attempt += 1
                if attempt > self.retries:
                    raise
                self._sleep(self.backoff * 2 ** (attempt - 1))

    def _normalise(self, kind, pubs, result) -> list[np.ndarray]:
        try:
            n = len(result)
        except TypeError:
            n = -1
        if n != len(pubs):
            raise PlanMismatchError(f"Planner: a {kind} job must return one result per PUB ({len(pubs)}); got {n}")
        arrays = []
        for i, pub in enumerate(pubs):
            data = getattr(result[i], "data", None)
            if kind == "estimator":
                evs = np.asarray(getattr(data, "evs", None), dtype=np.float64)
                arrays.append(evs)
            else:
                bits = getattr(data, "meas", None)
                if bits is None or not hasattr(bits, "array"):
                    raise PlanMismatchError(f"Planner: sampler result {i} must hold a BitArray 'meas'; got {bits!r}")
                arrays += [np.asarray(bits.array), np.asarray(bits.num_bits)]
        return arrays

    def _decode(self, kind, pubs, arrays, position):
        out = []
        if kind == "estimator":
            if len(arrays) != len(pubs):
                raise PlanMismatchError(f"Planner: job {position} must hold {len(pubs)} results; got {len(arrays)}")
            for pub, evs in zip(pubs, arrays):
                k, rows = np.asarray(pub[1], dtype=object).shape[0], self._rows(pub)
                if evs.shape != (k, rows):
                    raise PlanMismatchError(f"Planner: estimator result of job {position} must have shape "
                                            f"{(k, rows)} (observables x rows); got {evs.shape}")
                out.append(evs)
            return out
        BitArray = import_optional("qiskit.primitives", feature="qnn.planner").BitArray
        if len(arrays) != 2 * len(pubs):
            raise PlanMismatchError(f"Planner: job {position} must hold {len(pubs)} results; got {len(arrays) // 2}")
        for i, pub in enumerate(pubs):
            arr, nb = arrays[2 * i], int(arrays[2 * i + 1])
            ba = BitArray(arr, nb)
            if tuple(ba.shape) != (self._rows(pub),) or ba.num_shots != self._pub_shots():
                raise PlanMismatchError(f"Planner: sampler result of job {position} must have shape "
                                        f"({self._rows(pub)},) x {self._pub_shots()} shots; got {ba.shape} x "
                                        f"{ba.num_shots}")
            out.append(ba)
        return out

    # ------------------------------------------------------------------ steps and dry runs
    @contextlib.contextmanager
    def _active(self):
        prev = active_planner()
        _STATE.planner = self
        try:
            yield
        finally:
            _STATE.planner = prev

    def step(self, fn):
        """Run ``fn()`` (a model's forward pass, e.g. ``lambda: loss_fn(model(x), y)``) with every
        circuit evaluation of all layers -- forward and parameter-shift rows -- packed into as few
        jobs as the limits allow; returns what the last pass of ``fn`` returned (call
        ``.backward()`` on it: the gradient rows are already in hand, nothing more is sent)."""
        with self._active():
            try:
                for _ in range(_MAX_ROUNDS):
                    self._recording = True
                    out = fn()
                    self._recording = False
                    if not self._pending:
                        return out
                    self.flush()
                raise PlanMismatchError(f"Planner.step: the model still asked for new circuits after {_MAX_ROUNDS} "
                                        "rounds; its quantum layers must not depend on random draws per pass")
            finally:
                self._recording = False
                self._pending, self._pending_keys = [], set()
                self._results.clear()

    def dry_run(self, fn, workload: str = "workload") -> Estimate:
        """What :meth:`step` would send for ``fn()`` -- circuits, PUBs, jobs, shots, QPU
        seconds -- computed by the same packing without sending anything."""
        saved = self.transport
        self._dry = Estimate(workload)
        self.transport = _NullTransport()
        try:
            self.step(fn)
            est = self._dry
        finally:
            self._dry = None
            self.transport = saved
        est.workload = workload
        return est
