"""Tests of the engine-independent circuit description and its builders."""

from __future__ import annotations

import pytest

import qnn
from qnn.circuit import (
    ANSATZE,
    GATES,
    Circuit,
    Param,
    amplitude_embedding,
    angle_embedding,
    basic_entangler_layers,
    hardware_efficient_layers,
    strongly_entangling_layers,
)


class TestValidation:
    def test_n_qubits(self):
        for bad in (0, -1, 2.0, True, "3"):
            with pytest.raises(ValueError, match="n_qubits must be a positive int"):
                Circuit(bad)

    def test_unknown_gate_lists_valid_names(self):
        with pytest.raises(ValueError, match=r"unknown gate 'CX'; valid gates are \['CNOT', 'CRX'"):
            Circuit(2).add("CX", (0, 1))

    def test_bad_wires(self):
        c = Circuit(2)
        with pytest.raises(ValueError, match=r"RX wire must be in \[0, 1\]; got 2"):
            c.add("RX", 2, [0.1])
        with pytest.raises(ValueError, match=r"CNOT wires must be distinct; got \(1, 1\)"):
            c.add("CNOT", (1, 1))
        with pytest.raises(ValueError, match=r"CNOT acts on 2 wire\(s\); got 1"):
            c.add("CNOT", 0)
        with pytest.raises(ValueError, match="MCRY needs >= 2 wires"):
            c.add("MCRY", 0, [0.1])
        with pytest.raises(ValueError, match=r"measure_z wire must be in \[0, 1\]; got 5"):
            c.measure_z([5])

    def test_wrong_param_count(self):
        c = Circuit(1)
        with pytest.raises(ValueError, match=r"Rot takes 3 angle\(s\); got 1"):
            c.add("Rot", 0, [0.1])
        with pytest.raises(ValueError, match=r"H takes 0 angle\(s\); got 1"):
            c.add("H", 0, [0.1])

    def test_unreserved_indices(self):
        c = Circuit(1)
        with pytest.raises(ValueError, match=r"input index 0 not reserved \(n_inputs=0\)"):
            c.add("RX", 0, [Param.input(0)])
        with pytest.raises(ValueError, match=r"weight index 2 not reserved \(n_weights=0\)"):
            c.add("RX", 0, [Param.weight(2)])

    def test_amplitude_must_be_first(self):
        c = Circuit(2)
        c.add("H", 0)
        with pytest.raises(ValueError, match="amplitude embedding must be the first operation"):
            amplitude_embedding(c)
        c = Circuit(2)
        amplitude_embedding(c, 3)
        with pytest.raises(ValueError, match="amplitude embedding must be the first operation"):
            amplitude_embedding(c, 3)
        with pytest.raises(ValueError, match=r"takes 1..4 features; got 5"):
            amplitude_embedding(Circuit(2), 5)

    def test_bad_pauli_word(self):
        c = Circuit(3)
        with pytest.raises(ValueError, match="Pauli word must use letters I, X, Y, Z; got 'XA'"):
            c.measure_pauli("XA")
        with pytest.raises(ValueError, match="Pauli word must use letters"):
            c.measure_pauli("")
        with pytest.raises(ValueError, match=r"Pauli word 'XZ' needs 2 wires; got 3"):
            c.measure_pauli("XZ", [0, 1, 2])

    def test_builder_arguments(self):
        with pytest.raises(ValueError, match="rotation must be 'X', 'Y' or 'Z'; got 'W'"):
            angle_embedding(Circuit(2), rotation="W")
        with pytest.raises(ValueError, match="need 2 ranges; got 1"):
            strongly_entangling_layers(Circuit(3), 2, ranges=[1])
        with pytest.raises(KeyError, match="no weight block named 'x'"):
            Circuit(1).weight_block("x")


class TestBuilders:
    @pytest.mark.parametrize("n_layers,n", [(1, 1), (2, 3), (3, 5)])
    def test_weight_shapes(self, n_layers, n):
        assert strongly_entangling_layers.shape(n_layers, n) == (n_layers, n, 3)
        assert basic_entangler_layers.shape(n_layers, n) == (n_layers, n)
        assert hardware_efficient_layers.shape(n_layers, n) == (n_layers, n)
        for name, builder in ANSATZE.items():
            c = Circuit(n)
            idx = builder(c, n_layers)
            assert c.weight_blocks[-1].shape == builder.shape(n_layers, n)
            assert len(idx) == c.n_weights == c.weight_blocks[-1].size

    def test_sizes_of_documented_example(self):
        c = qnn.Circuit(3)
        qnn.angle_embedding(c, rotation="Y")
        qnn.strongly_entangling_layers(c, n_layers=2)
        c.measure_z()
        assert (c.n_inputs, c.n_weights, c.n_outputs) == (3, 18, 3)
        assert c.n_params == 3 + 18
        assert len(c.gates) == 3 + 2 * (3 + 3)

    def test_sel_structure(self):
        c = Circuit(4)
        strongly_entangling_layers(c, 2)
        cnots = [g.wires for g in c.gates if g.name == "CNOT"]
        assert cnots[:4] == [(0, 1), (1, 2), (2, 3), (3, 0)]  # range 1
        assert cnots[4:] == [(0, 2), (1, 3), (2, 0), (3, 1)]  # range 2
        rot = c.gates[0]
        assert rot.name == "Rot" and [p.index for p in rot.params] == [0, 1, 2]

    def test_basic_entangler_two_wires_single_cnot(self):
        c = Circuit(2)
        basic_entangler_layers(c, 1)
        assert [g.name for g in c.gates] == ["RX", "RX", "CNOT"]

    def test_hardware_efficient_chain(self):
        c = Circuit(3)
        hardware_efficient_layers(c, 1)
        assert [(g.name, g.wires) for g in c.gates] == [
            ("RY", (0,)), ("RY", (1,)), ("RY", (2,)), ("CZ", (0, 1)), ("CZ", (1, 2))]

    def test_measurement_sizes(self):
        c = Circuit(3)
        c.measure_z([0, 2])
        c.measure_pauli("XY", [1, 2])
        c.measure_probs([0, 1])
        assert c.n_outputs == 2 + 1 + 4
        assert [m.kind for m in c.measurements] == ["expval", "expval", "expval", "probs"]

    def test_amplitude_sizes_and_repr(self):
        c = Circuit(3)
        idx = amplitude_embedding(c, 5, pad=0.1)
        assert idx == [0, 1, 2, 3, 4] and c.n_inputs == 5
        assert c.state_prep.n_features == 5 and c.state_prep.pad == 0.1
        assert "amplitude_prep" in repr(c)

    def test_gate_table(self):
        assert set(GATES) >= {"RX", "RY", "RZ", "Rot", "PhaseShift", "H", "X", "Y", "Z", "CNOT", "CZ",
                              "CRX", "CRY", "CRZ", "SWAP", "MCRY"}
        c = Circuit(4)
        c.add("MCRY", (0, 1, 2, 3), [0.2])
        assert c.gates[0].params[0] == Param.const(0.2)
