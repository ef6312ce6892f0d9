"""Helpers for tests: random circuits that use every gate kind and builder."""

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

__all__ = ["random_circuit", "random_pauli_circuit", "builder_circuit", "BUILDER_KINDS"]


def random_circuit(n_qubits: int, n_gates: int = 30, seed: int = 0, *, amplitude: bool = False,
                   measure: str = "mixed") -> Circuit:
    """A random circuit on ``n_qubits`` with ``n_gates`` gates drawn from every gate kind that
    fits.  Angles are bound to inputs, weights and constants at random.  ``measure`` is
    ``"z"`` (<Z> on every wire), ``"pauli"``, ``"probs"`` or ``"mixed"`` (all three)."""
    rng = np.random.default_rng(seed)
    c = Circuit(n_qubits)
    if amplitude:
        amplitude_embedding(c, n_features=int(rng.integers(1, 2**n_qubits + 1)), pad=0.3)
    n_in = n_qubits + 1
    c.new_inputs(n_in)
    c.new_weights("w", (2 * n_gates,))
    names = [g for g, (nw, _) in GATES.items() if nw is None and n_qubits >= 2 or nw is not None and nw <= n_qubits]
    used_w = 0
    for _ in range(n_gates):
        name = names[int(rng.integers(len(names)))]
        nw, npar = GATES[name]
        if nw is None:
            nw = int(rng.integers(2, min(n_qubits, 4) + 1))
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
