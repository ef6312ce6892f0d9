"""One table of bad input over the public constructors and ``forward``: each case names the
call, the exception type and the message it must carry.  Constructor cases run once; forward
and ``engine.run`` cases run on every engine (torch, PennyLane, Qiskit, IBM on a fake backend).

Every message follows "<Owner>: <what> must be ...; got ..." (or names what was missing), and
every error is raised where the bad value enters: at construction, not at the first forward.
"""

from __future__ import annotations

import math

import pytest
import torch

import qnn
from qnn.circuit import Gate, Measurement, Param, StatePrep
from qnn.engines import get_engine
from qnn.engines.torch_engine import TorchEngine

NAN, INF = float("nan"), float("inf")


def _c(n=2):
    return qnn.Circuit(n)


def _sel(n=2):
    c = qnn.Circuit(n)
    qnn.angle_embedding(c)
    qnn.strongly_entangling_layers(c, 1)
    c.measure_z()
    return c


def _twice(c, name):
    c.new_weights(name, (1,))
    return c.new_weights(name, (1,))


def _engine_cls(name):
    if name == "pennylane":
        from qnn.engines.pennylane_engine import PennyLaneEngine
        return PennyLaneEngine
    if name == "qiskit":
        from qnn.engines.qiskit_engine import QiskitEngine
        return QiskitEngine
    from qnn.engines.ibm_engine import IBMEngine
    return IBMEngine


def _fake_manila():
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2
    return FakeManilaV2()


# (id, call, exception type, message regex)
CONSTRUCTION = [
    # --- Circuit
    ("circuit-zero-qubits", lambda: qnn.Circuit(0), ValueError, r"Circuit: n_qubits must be a positive int; got 0"),
    ("circuit-float-qubits", lambda: qnn.Circuit(2.5), ValueError, r"Circuit: n_qubits must be a positive int; got 2.5"),
    ("circuit-bool-qubits", lambda: qnn.Circuit(True), ValueError, r"n_qubits must be a positive int; got True"),
    ("add-float-wire", lambda: _c().add("RX", [0.7], [0.1]), TypeError, r"Circuit: RX wire must be an int; got 0.7"),
    ("add-list-wire", lambda: _c().add("CNOT", [[0, 1]]), TypeError, r"Circuit: CNOT wire must be an int; got \[0, 1\]"),
    ("add-wire-range", lambda: _c().add("RX", 5, [0.1]), ValueError, r"Circuit: RX wire must be in \[0, 1\]; got 5"),
    ("add-negative-wire", lambda: _c().add("RY", -1, [0.1]), ValueError, r"Circuit: RY wire must be in \[0, 1\]; got -1"),
    ("add-repeated-wire", lambda: _c().add("CZ", (1, 1)), ValueError, r"Circuit: CZ wires must be distinct; got \(1, 1\)"),
    ("add-unknown-gate", lambda: _c().add("CX", (0, 1)), ValueError, r"Circuit: unknown gate 'CX'; valid gates are"),
    ("add-nan-constant", lambda: _c().add("RX", 0, [NAN]), ValueError, r"Circuit: RX constant angle must be finite; got nan"),
    ("add-inf-constant", lambda: _c().add("RZ", 0, [INF]), ValueError, r"Circuit: RZ constant angle must be finite; got inf"),
    ("add-str-constant", lambda: _c().add("RX", 0, ["0.5"]), TypeError, r"Circuit: RX constant angle must be a real number; got '0.5'"),
    ("add-params-not-a-sequence", lambda: _c().add("RX", 0, Param.const(0.1)), TypeError,
     r"Circuit: RX params must be a sequence of Param or numbers"),
    ("add-angle-count", lambda: _c().add("Rot", 0, [0.1]), ValueError, r"Circuit: Rot takes 3 angle\(s\); got 1"),
    ("add-unreserved-input", lambda: _c().add("RX", 0, [Param.input(0)]), ValueError,
     r"Circuit: input index 0 not reserved \(n_inputs=0\)"),
    ("new-inputs-negative", lambda: _c().new_inputs(-3), ValueError,
     r"Circuit: the number of new inputs must be an int >= 0; got -3"),
    ("new-inputs-float", lambda: _c().new_inputs(2.0), TypeError, r"Circuit: the number of new inputs must be an int; got 2.0"),
    ("new-weights-negative", lambda: _c().new_weights("w", (-1, 2)), ValueError,
     r"Circuit: weight block dimension must be an int >= 0; got -1"),
    ("new-weights-empty-name", lambda: _c().new_weights("", (2,)), TypeError,
     r"Circuit: weight block name must be a non-empty str; got ''"),
    ("new-weights-duplicate", lambda: _twice(_c(), "w"), ValueError, r"Circuit: weight block name must be unique; got 'w' again"),
    ("new-weights-shape-int", lambda: _c().new_weights("w", 3), TypeError, r"Circuit: weight block shape must be a sequence of ints; got 3"),
    ("measure-z-empty", lambda: _c().measure_z([]), ValueError, r"Circuit: measure_z needs at least one wire; got none"),
    ("measure-probs-empty", lambda: _c().measure_probs([]), ValueError, r"Circuit: measure_probs needs at least one wire"),
    ("measure-pauli-not-str", lambda: _c().measure_pauli(3), TypeError, r"Circuit: Pauli word must be a str; got 3"),
    ("measure-pauli-letter", lambda: _c().measure_pauli("XQ"), ValueError, r"Circuit: Pauli word must use letters I, X, Y, Z; got 'XQ'"),
    # --- builders
    ("bel-negative-layers", lambda: qnn.basic_entangler_layers(_c(), -1), ValueError,
     r"basic_entangler_layers: n_layers must be an int >= 1; got -1"),
    ("sel-zero-layers", lambda: qnn.strongly_entangling_layers(_c(), 0), ValueError,
     r"strongly_entangling_layers: n_layers must be an int >= 1; got 0"),
    ("hea-float-layers", lambda: qnn.hardware_efficient_layers(_c(), 2.0), TypeError,
     r"hardware_efficient_layers: n_layers must be an int; got 2.0"),
    ("sel-range", lambda: qnn.strongly_entangling_layers(_c(3), 1, ranges=[3]), ValueError,
     r"strongly_entangling_layers: each range must be in \[1, 2\] on 3 wires; got \[3\]"),
    ("sel-not-a-circuit", lambda: qnn.strongly_entangling_layers("c", 1), TypeError,
     r"strongly_entangling_layers: circuit must be a qnn.Circuit; got str"),
    ("angle-rotation-none", lambda: qnn.angle_embedding(_c(), rotation=None), ValueError,
     r"angle_embedding: rotation must be 'X', 'Y' or 'Z'; got None"),
    ("angle-nan-scale", lambda: qnn.angle_embedding(_c(), scale=NAN), ValueError, r"angle_embedding: scale must be finite; got nan"),
    ("angle-no-wires", lambda: qnn.angle_embedding(_c(), wires=[]), ValueError, r"angle_embedding: needs at least one wire; got none"),
    ("amplitude-inf-pad", lambda: qnn.amplitude_embedding(_c(), pad=INF), ValueError,
     r"Circuit: amplitude embedding pad must be finite; got inf"),
    ("amplitude-float-features", lambda: qnn.amplitude_embedding(_c(), n_features=2.5), TypeError,
     r"Circuit: amplitude embedding n_features must be an int; got 2.5"),
    ("amplitude-too-many", lambda: qnn.amplitude_embedding(_c(), n_features=5), ValueError, r"takes 1..4 features; got 5"),
    # --- Param, Gate, Measurement, StatePrep
    ("param-unknown-kind", lambda: Param("feature", 0), ValueError, r"Param: kind must be one of \['input', 'weight', 'const'\]; got 'feature'"),
    ("param-float-index", lambda: Param.input(0.7), TypeError, r"Param: index must be an int; got 0.7"),
    ("param-negative-index", lambda: Param.weight(-2), ValueError, r"Param: index must be an int >= 0; got -2"),
    ("param-nan-scale", lambda: Param.input(0, scale=NAN), ValueError, r"Param: scale must be finite; got nan"),
    ("param-inf-offset", lambda: Param.weight(0, offset=-INF), ValueError, r"Param: offset must be finite; got -inf"),
    ("param-nan-constant", lambda: Param.const(NAN), ValueError, r"Param: offset must be finite; got nan"),
    ("param-const-index", lambda: Param("const", 3), ValueError, r"Param: a constant has no index \(index=-1\); got 3"),
    ("param-str-scale", lambda: Param.input(0, scale="2"), TypeError, r"Param: scale must be a real number; got '2'"),
    ("gate-missing-param", lambda: Gate("RX", (0,), ()), ValueError, r"Gate: RX takes 1 Param\(s\); got \(\)"),
    ("gate-float-wire", lambda: Gate("RX", (0.5,), (Param.const(0.1),)), TypeError, r"Gate: RX wire must be an int; got 0.5"),
    ("gate-unknown", lambda: Gate("U3", (0,), ()), ValueError, r"Gate: unknown gate 'U3'"),
    ("measurement-kind", lambda: Measurement("var", (0,)), ValueError, r"Measurement: kind must be one of \['expval', 'probs', 'hermitian'\]; got 'var'"),
    ("measurement-word-length", lambda: Measurement("expval", (0, 1), "Z"), ValueError,
     r"Measurement: expval needs a Pauli word of I/X/Y/Z with one letter per wire \(2\); got 'Z'"),
    ("stateprep-no-features", lambda: StatePrep(0, 0), ValueError, r"StatePrep: n_features must be an int >= 1; got 0"),
    # --- layers
    ("linear-zero-in", lambda: qnn.QuantumLinear(0, 2), ValueError, r"QuantumLinear: in_features must be an int >= 1; got 0"),
    ("linear-encoding", lambda: qnn.QuantumLinear(3, 2, encoding="phase"), ValueError,
     r"QuantumLinear: encoding must be one of \['angle', 'amplitude', 'reupload'\]; got 'phase'"),
    ("linear-too-many-outputs", lambda: qnn.QuantumLinear(3, 4, n_qubits=3), ValueError,
     r"QuantumLinear: with readout='z' out_features must be <= 3 on 3 qubits; got 4"),
    ("linear-ansatz", lambda: qnn.QuantumLinear(3, 2, ansatz="qaoa"), ValueError, r"QuantumLinear: ansatz must be one of"),
    ("layer-not-a-circuit", lambda: qnn.QuantumLayer("c"), TypeError, r"QuantumLayer: circuit must be a qnn.Circuit; got str"),
    ("layer-init", lambda: qnn.QuantumLayer(_sel(), init="bogus"), ValueError, r"QuantumLayer: init must be one of"),
    ("layer-engine", lambda: qnn.QuantumLayer(_sel(), engine="cirq"), ValueError, r"Unknown engine 'cirq'; valid engines are"),
    ("layer-seed", lambda: qnn.QuantumLayer(_sel(), seed=1.5), TypeError, r"QuantumLayer: seed must be an int or None; got 1.5"),
    ("layer-dtype", lambda: qnn.QuantumLayer(_sel(), dtype=torch.int32), TypeError, r"QuantumLayer: dtype must be torch.float32 or torch.float64"),
    ("layer-engine-option", lambda: qnn.QuantumLayer(_sel(), engine_options={"bogus": 1}), TypeError,
     r"unexpected keyword argument 'bogus'"),
    # --- engine options
    ("torch-mode", lambda: TorchEngine(mode="fast"), ValueError, r"TorchEngine: mode must be one of"),
    ("torch-memory", lambda: TorchEngine(max_memory_bytes=-1), ValueError, r"TorchEngine: max_memory_bytes must be a positive number; got -1"),
    ("torch-block", lambda: TorchEngine(block_size=0), ValueError, r"TorchEngine: block_size must be a positive int; got 0"),
    ("torch-dtype", lambda: TorchEngine(dtype=torch.int32), ValueError, r"TorchEngine: dtype must be complex64/complex128"),
    ("torch-unitary-max", lambda: TorchEngine(unitary_max_qubits=-1), ValueError,
     r"TorchEngine: unitary_max_qubits must be an int >= 0; got -1"),
    ("torch-autograd-max", lambda: TorchEngine(autograd_max_bytes=NAN), ValueError,
     r"TorchEngine: autograd_max_bytes must be a number >= 0; got nan"),
    ("get-engine-options-with-instance", lambda: get_engine(TorchEngine(), mode="gates"), ValueError,
     r"get_engine: options can only be given with an engine name"),
    ("pennylane-diff-method", lambda: _engine_cls("pennylane")(diff_method="magic"), ValueError,
     r"PennyLaneEngine: diff_method must be one of"),
    ("pennylane-device-derivatives", lambda: _engine_cls("pennylane")("default.qubit", diff_method="device"), ValueError,
     r"PennyLaneEngine: device 'default.qubit' does not provide diff_method 'device'"),
    ("pennylane-no-backprop", lambda: _engine_cls("pennylane")("lightning.qubit", diff_method="backprop"), ValueError,
     r"PennyLaneEngine: device 'lightning.qubit' does not provide diff_method 'backprop'"),
    ("pennylane-shots", lambda: _engine_cls("pennylane")(shots=0), ValueError, r"PennyLaneEngine: shots must be None \(analytic\) or a positive int; got 0"),
    ("pennylane-device", lambda: _engine_cls("pennylane")("no.such.device"), ValueError, r"PennyLaneEngine: unknown PennyLane device 'no.such.device'"),
    ("qiskit-shots", lambda: _engine_cls("qiskit")(shots=-5), ValueError, r"QiskitEngine: shots must be None \(exact\) or a positive int; got -5"),
    ("qiskit-noise-without-shots", lambda: _engine_cls("qiskit")(noise_model=object()), ValueError,
     r"QiskitEngine: a noise_model needs shots=<int>"),
    ("qiskit-method", lambda: _engine_cls("qiskit")(shots=10, method="magic"), ValueError, r"QiskitEngine: method must be one of"),
    ("ibm-fake-name", lambda: _engine_cls("ibm")("fake_nowhere"), ValueError, r"unknown fake backend 'fake_nowhere'; valid names are"),
    ("ibm-shots", lambda: _engine_cls("ibm")(_fake_manila(), shots=0), ValueError, r"IBMEngine: shots must be a positive int; got 0"),
    ("ibm-optimization-level", lambda: _engine_cls("ibm")(_fake_manila(), optimization_level=5), ValueError,
     r"IBMEngine: optimization_level must be 0, 1, 2 or 3; got 5"),
]


@pytest.mark.parametrize("call,exc,match", [c[1:] for c in CONSTRUCTION], ids=[c[0] for c in CONSTRUCTION])
def test_construction_refuses(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_table_size():
    assert len(CONSTRUCTION) + len(FORWARD) >= 40


# ------------------------------------------------------------------ forward, on every engine
ENGINES = {
    "torch": lambda: get_engine("torch"),
    "pennylane": lambda: get_engine("pennylane"),
    "qiskit": lambda: get_engine("qiskit"),
    "ibm": lambda: get_engine("ibm", backend=_fake_manila(), shots=64, seed=1),
}
OWNER = {"torch": "TorchEngine", "pennylane": "PennyLaneEngine", "qiskit": "QiskitEngine", "ibm": "IBMEngine"}


def _layer(engine, amplitude=False):
    if amplitude:
        return qnn.QuantumLinear(3, 2, encoding="amplitude", engine=engine, seed=0)
    return qnn.QuantumLinear(3, 2, engine=engine, seed=0)


def _nan_weight(layer):
    with torch.no_grad():
        layer.weight[1] = NAN
    return layer


# (id, call(engine) , exception type, message regex with {owner})
FORWARD = [
    ("layer-last-dim", lambda e: _layer(e)(torch.zeros(2, 5)), ValueError, r"QuantumLinear: expected input with last dimension 3, got 5"),
    ("layer-int-input", lambda e: _layer(e)(torch.zeros(2, 3, dtype=torch.long)), TypeError,
     r"QuantumLinear: expected a float32 or float64 input; got torch.int64"),
    ("layer-list-input", lambda e: _layer(e)([[0.0, 0.0, 0.0]]), TypeError, r"QuantumLinear: expected a torch.Tensor input; got list"),
    ("layer-scalar-input", lambda e: _layer(e)(torch.tensor(0.5)), ValueError, r"QuantumLinear: expected input with last dimension 3, got a scalar"),
    ("layer-nan-input", lambda e: _layer(e)(torch.tensor([[0.1, NAN, 0.2]])), ValueError, r"QuantumLinear: input contains NaN or inf"),
    ("layer-nan-weight", lambda e: _nan_weight(_layer(e))(torch.zeros(2, 3)), ValueError, r"{owner}: weights contain NaN or inf"),
    ("layer-zero-amplitude", lambda e: _layer(e, True)(torch.tensor([[1.0, 0, 0], [0, 0, 0]])), ValueError,
     r"{owner}: amplitude embedding of sample 1 is the all-zero vector \(after padding with 0.0\)"),
    ("run-nan-inputs", lambda e: e.run(_sel(), torch.tensor([[0.1, NAN]]), torch.zeros(6)), ValueError, r"{owner}: inputs contain NaN or inf"),
    ("run-inf-weights", lambda e: e.run(_sel(), torch.zeros(1, 2), torch.full((6,), INF)), ValueError, r"{owner}: weights contain NaN or inf"),
    ("run-input-shape", lambda e: e.run(_sel(), torch.zeros(3, 5), torch.zeros(6)), ValueError,
     r"{owner}: inputs must have shape \(batch, n_inputs=2\); got \(3, 5\)"),
    ("run-weight-shape", lambda e: e.run(_sel(), torch.zeros(3, 2), torch.zeros(2, 3)), ValueError,
     r"{owner}: weights must have shape \(n_weights=6,\); got \(2, 3\)"),
    ("run-half-inputs", lambda e: e.run(_sel(), torch.zeros(1, 2, dtype=torch.float16), torch.zeros(6)), TypeError,
     r"{owner}: inputs must be a float32 or float64 tensor; got torch.float16"),
    ("run-not-a-circuit", lambda e: e.run("circuit", torch.zeros(1, 2), torch.zeros(6)), TypeError,
     r"{owner}: circuit must be a qnn.Circuit; got str"),
    ("run-no-measurements", lambda e: e.run(_c(1), torch.zeros(1, 0), torch.zeros(0)), ValueError, r"{owner}: the circuit has no measurements"),
]


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("call,exc,match", [c[1:] for c in FORWARD], ids=[c[0] for c in FORWARD])
def test_forward_refuses_on_every_engine(engine, call, exc, match):
    eng = ENGINES[engine]()
    with pytest.raises(exc, match=match.format(owner=OWNER[engine])):
        call(eng)


@pytest.mark.parametrize("engine", list(ENGINES))
def test_output_dtype_is_the_inputs(engine):
    """One rule on every engine: outputs have the inputs' dtype, whatever the weights' dtype."""
    eng = ENGINES[engine]()
    c = _sel()
    for xd, wd in ((torch.float32, torch.float64), (torch.float64, torch.float32)):
        y = eng.run(c, torch.full((2, 2), 0.3, dtype=xd), torch.full((6,), 0.2, dtype=wd))
        assert y.dtype == xd, f"{engine}: inputs {xd}, weights {wd} gave {y.dtype}"
        assert math.isfinite(float(y.sum()))
