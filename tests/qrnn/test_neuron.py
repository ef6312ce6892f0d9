import itertools
import math

import pytest
import torch

from qnn.qrnn import QuantumNeuron, activation, branch_coefficients, num_subsets, subset_masks, subset_sum
from qnn.qrnn._reference import explicit_neuron


def _subset_matrix(n, d):
    rows = []
    for x in range(1 << n):
        bits = [(x >> (n - 1 - p)) & 1 for p in range(n)]
        rows.append([float(all(bits[p] for p in T)) for j in range(1, d + 1) for T in itertools.combinations(range(n), j)])
    return torch.tensor(rows, dtype=torch.float64)


class TestSubsets:
    @pytest.mark.parametrize("n,d", [(1, 1), (3, 2), (5, 1), (5, 3), (6, 6), (4, 9)])
    def test_subset_sum_equals_matrix_product(self, n, d):
        phi = torch.randn(num_subsets(n, d), dtype=torch.float64)
        assert torch.allclose(subset_sum(phi, n, d), _subset_matrix(n, min(d, n)) @ phi, atol=1e-12)

    def test_masks_order(self):
        assert subset_masks(3, 1) == [4, 2, 1]
        assert len(subset_masks(9, 2)) == 9 + 36

    def test_bad_phi_length(self):
        with pytest.raises(ValueError, match="subset_sum: phi must have last dimension 3; got 2"):
            subset_sum(torch.zeros(2), 2, 2)


class TestActivation:
    @pytest.mark.parametrize("k,p1", [(1, 0.8547), (2, 0.9719), (3, 0.9992)])
    def test_spec_numbers(self, k, p1):
        # a = eta/2 = 1.0; P(out = 1) = sin^2 q_k (spec §1)
        q = activation(torch.tensor(2.0, dtype=torch.float64), k)
        assert abs(float(torch.sin(q) ** 2) - p1) < 5e-5
        n = QuantumNeuron(2, out=1, degree=1, order=k, dtype=torch.float64)
        with torch.no_grad():
            n.phi.zero_()
            n.theta.fill_(2.0 - math.pi / 2)
        psi = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)
        out = n(psi).state
        assert abs(float(out[1] ** 2) - p1) < 5e-5

    @pytest.mark.parametrize("k", [1, 2, 3])
    def test_slope_and_fold(self, k):
        a = torch.tensor(math.pi / 4, dtype=torch.float64, requires_grad=True)
        q = activation(2 * a, k)
        (g,) = torch.autograd.grad(q, a)
        assert abs(float(g) - 2**k) < 1e-9
        b = torch.tensor(0.3, dtype=torch.float64)
        assert torch.allclose(activation(2 * b, k), activation(2 * (math.pi - b), k))


class TestModes:
    def test_global_renormalisation_example(self):
        # spec §1 "semantic trap": source in |+>, ord 2, phi = 1.2 -> source marginal 0.1255 / 0.8745
        n = QuantumNeuron(2, out=1, degree=1, order=2, dtype=torch.float64)
        with torch.no_grad():
            n.phi.fill_(1.2)
            n.theta.zero_()
        psi = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64) / math.sqrt(2)
        out = n(psi).state.view(2, 2)
        marg = out.pow(2).sum(1)
        assert abs(float(marg[0]) - 0.1255) < 5e-4 and abs(float(marg[1]) - 0.8745) < 5e-4
        # unitary mode keeps the source marginal
        n.mode = "unitary"
        out = n(psi).state.view(2, 2)
        assert torch.allclose(out.pow(2).sum(1), torch.tensor([0.5, 0.5], dtype=torch.float64))

    @pytest.mark.parametrize("order", [1, 2, 3])
    def test_unitary_preserves_norm_without_renormalising(self, order):
        torch.manual_seed(order)
        n = QuantumNeuron(4, out=2, degree=2, order=order, mode="unitary", dtype=torch.float64)
        n.reset_parameters(1.0, 1.0)
        psi = 3.0 * torch.randn(5, 16, dtype=torch.float64)  # deliberately not normalised
        out = n(psi).state
        assert torch.allclose(out.norm(dim=-1), psi.norm(dim=-1), atol=1e-12)
        c, s = branch_coefficients(n.angles(), order, unitary=True)
        assert torch.allclose(c * c + s * s, torch.ones_like(c))
        # the same map is linear: no state-dependent factor
        assert torch.allclose(n(2 * psi).state, 2 * out, atol=1e-12)

    @pytest.mark.parametrize("order", [1, 2, 3])
    def test_success_probability_formula_and_floor(self, order):
        torch.manual_seed(0)
        n = QuantumNeuron(3, out=0, degree=2, order=order, dtype=torch.float64)
        n.reset_parameters(1.0, 1.0)
        psi = torch.randn(4, 8, dtype=torch.float64)
        psi = psi / psi.norm(dim=-1, keepdim=True)
        res = n(psi)
        a = n.angles() / 2
        e = 1 << (order + 1)
        expected = (psi.pow(2) * (torch.cos(a) ** e + torch.sin(a) ** e)).sum(-1)
        assert torch.allclose(res.success_prob, expected, atol=1e-12)
        assert bool((res.success_prob >= 2.0 ** (1 - 2**order) - 1e-12).all())
        assert torch.allclose(res.aa_rounds, 1 / expected.sqrt())
        assert torch.allclose(res.state.norm(dim=-1), torch.ones(4, dtype=torch.float64))

    def test_sampled_attempts_are_geometric(self):
        torch.manual_seed(0)
        n = QuantumNeuron(2, out=1, degree=1, order=2, mode="sampled", max_attempts=1000)
        with torch.no_grad():
            n.phi.zero_()
            n.theta.zero_()  # a = pi/4: p = 1/8 exactly
        psi = torch.zeros(20000, 4)
        psi[:, 0] = 1
        res = n(psi)
        assert torch.allclose(res.success_prob, torch.full((20000,), 0.125), atol=1e-6)
        assert int(res.attempts.min()) >= 1
        assert abs(float(res.attempts.float().mean()) - 8.0) < 0.3
        # same state as postselect mode
        n.mode = "postselect"
        assert torch.allclose(n(psi).state, res.state)
        # a tiny budget is reported as exhausted (attempts = max + 1)
        n.mode, n.max_attempts = "sampled", 2
        att = n(psi).attempts
        assert int(att.max()) == 3 and abs(float((att == 3).float().mean()) - (7 / 8) ** 2) < 0.02


class TestExplicitEquivalence:
    @pytest.mark.parametrize("order,degree,n_sys", [(1, 1, 3), (2, 2, 3), (3, 2, 3), (2, 3, 4)])
    def test_fast_equals_explicit_ancilla_circuit(self, order, degree, n_sys):
        torch.manual_seed(order * 10 + degree)
        for out in range(n_sys):
            n = QuantumNeuron(n_sys, out=out, degree=degree, order=order, dtype=torch.float64)
            n.reset_parameters(0.7, 0.7)
            psi = torch.randn(3, 1 << n_sys, dtype=torch.float64)
            psi = psi / psi.norm(dim=-1, keepdim=True)
            fast = n(psi)
            big = torch.zeros(3, 1 << n_sys, 1 << order, dtype=torch.float64)
            big[:, :, 0] = psi
            ref, p = explicit_neuron(big.view(3, -1), n, n_sys)
            ref = ref.view(3, 1 << n_sys, 1 << order)
            assert ref[:, :, 1:].abs().max() < 1e-12  # ancillas back in |0>
            assert torch.allclose(fast.state, ref[:, :, 0], atol=1e-10)
            assert torch.allclose(fast.success_prob, p, atol=1e-10)
            w = torch.randn(3, 1 << n_sys, dtype=torch.float64)
            g1 = torch.autograd.grad((fast.state * w).sum(), [n.phi, n.theta])
            g2 = torch.autograd.grad((ref[:, :, 0] * w).sum(), [n.phi, n.theta])
            for a, b in zip(g1, g2):
                assert torch.allclose(a, b, atol=1e-9)


class TestErrors:
    @pytest.mark.parametrize(
        "kwargs,msg",
        [
            ({"n_qubits": 1, "out": 0}, "n_qubits must be an int >= 2; got 1"),
            ({"n_qubits": 3, "out": 3}, r"out must be an int in \[0, 3\); got 3"),
            ({"n_qubits": 3, "out": 0, "degree": 0}, "degree must be an int >= 1; got 0"),
            ({"n_qubits": 3, "out": 0, "order": 0}, "order must be an int >= 1; got 0"),
            ({"n_qubits": 3, "out": 0, "mode": "fpoaa"}, "mode must be one of"),
        ],
    )
    def test_constructor(self, kwargs, msg):
        n_qubits = kwargs.pop("n_qubits")
        out = kwargs.pop("out")
        with pytest.raises(ValueError, match=msg):
            QuantumNeuron(n_qubits, out, **kwargs)

    def test_state_shape(self):
        n = QuantumNeuron(3, 0)
        with pytest.raises(ValueError, match=r"Expected state of shape \(B, 8\) or \(8,\); got \(2, 4\)"):
            n(torch.zeros(2, 4))
        with pytest.raises(TypeError, match="state must be a torch.Tensor"):
            n([1.0] * 8)

    def test_repr_and_params(self):
        n = QuantumNeuron(10, 3, degree=2, order=2)
        assert sum(p.numel() for p in n.parameters()) == 1 + 9 + 36
        assert "46 weights" in repr(n)
