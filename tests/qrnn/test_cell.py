import math

import pytest
import torch

from qnn.qrnn import QRNN, QRNNCell, num_parameters, qrnn_loss, loss_offset
from qnn.qrnn._reference import explicit_forward, per_sample_forward

F64 = torch.float64


def _formula(W, I, S, d):
    return (W * (S + 1) + I) * (1 + sum(math.comb(W + I - 1, j) for j in range(1, d + 1))) + S * W


class TestParameterCount:
    # (W, I, S, d) -> expected (the three from spec §2 plus others computed from the formula)
    @pytest.mark.parametrize(
        "W,I,S,d,expected",
        [
            (8, 2, 2, 2, 1212),
            (8, 2, 2, 3, 3396),
            (5, 3, 1, 3, 837),
            (7, 2, 2, 2, None),
            (10, 3, 2, 2, None),
            (3, 3, 1, 1, None),
            (4, 2, 1, 3, None),
            (6, 2, 2, 3, 1292),
            (2, 1, 0, 1, None),
            (5, 3, 4, 4, None),
            (1, 1, 3, 1, None),
        ],
    )
    def test_formula(self, W, I, S, d, expected):
        n = num_parameters(W, I, S, d)
        assert n == _formula(W, I, S, d)
        if expected is not None:
            assert n == expected
        if W + I <= 10:
            model = QRNN(I, W, stages=S, degree=d, order=2)
            assert sum(p.numel() for p in model.parameters()) == n


def _model(I, W, S, k, d, mode="postselect", seed=0, spread=0.6):
    torch.manual_seed(seed)
    m = QRNN(I, W, stages=S, order=k, degree=d, mode=mode, dtype=F64)
    m.reset_parameters(spread, spread, spread)
    return m


CONFIGS = [(1, 2, 1, 1, 1), (2, 2, 1, 2, 2), (1, 3, 2, 2, 3), (2, 1, 0, 3, 2), (3, 2, 1, 1, 2)]


class TestAgainstReference:
    @pytest.mark.parametrize("mode", ["postselect", "unitary"])
    @pytest.mark.parametrize("cfg", CONFIGS)
    def test_fast_equals_explicit_ancilla(self, cfg, mode):
        I, W, S, k, d = cfg
        m = _model(I, W, S, k, d, mode)
        g = torch.Generator().manual_seed(1)
        X = torch.randint(0, 1 << I, (3, 5), generator=g)
        Y = torch.randint(0, 1 << I, (3, 5), generator=g)
        hx = torch.randn(3, 1 << W, dtype=F64, generator=g)
        hx = hx / hx.norm(dim=-1, keepdim=True)
        out = m(X, Y, hx=hx)
        ref = explicit_forward(m, X, Y, hx=hx)
        assert torch.allclose(out.probs, ref["probs"], atol=1e-10)
        assert torch.allclose(out.postsel_probs, ref["postsel_probs"], atol=1e-10)
        assert torch.allclose(out.hx, ref["hx"], atol=1e-10)
        if mode == "postselect":
            assert torch.allclose(out.success_prob, ref["success_prob"], rtol=1e-8, atol=1e-14)
        w = torch.randn(out.probs.shape, dtype=F64, generator=g)
        params = [p for p in m.parameters() if p.numel()]
        g1 = torch.autograd.grad((out.probs * w).sum() + out.hx.sum(), params)
        g2 = torch.autograd.grad((ref["probs"] * w).sum() + ref["hx"].sum(), params)
        for a, b in zip(g1, g2):
            assert torch.allclose(a, b, atol=1e-9)

    def test_fast_equals_per_sample(self):
        m = _model(2, 3, 2, 2, 2)
        X = torch.randint(0, 4, (4, 6))
        Y = torch.randint(0, 4, (4, 6))
        out = m(X, Y)
        ref = per_sample_forward(m, X, Y)
        assert torch.allclose(out.probs, ref["probs"], atol=1e-10)

    def test_gradcheck(self):
        m = _model(1, 2, 1, 2, 2)
        X = torch.tensor([[1, 0, 1, 1]])
        params = list(m.parameters())

        def f(*ps):
            with torch.no_grad():
                for p, v in zip(params, ps):
                    p.copy_(v)
            return m(X, X).probs

        # autograd vs central differences on the theta of the first neuron
        th = m.cell.neurons[0].theta
        out = m(X, X).probs.sum()
        (g,) = torch.autograd.grad(out, th)
        eps = 1e-6
        with torch.no_grad():
            th += eps
            up = m(X, X).probs.sum()
            th -= 2 * eps
            dn = m(X, X).probs.sum()
            th += eps
        assert abs(float(g) - float(up - dn) / (2 * eps)) < 1e-6


class TestBehaviour:
    def test_float32_matches_float64(self):
        m64 = _model(2, 4, 2, 2, 2, spread=0.3)
        m32 = QRNN(2, 4, stages=2, order=2, degree=2)
        m32.load_state_dict({k: v.float() for k, v in m64.state_dict().items()})
        X = torch.randint(0, 4, (5, 30))
        Y = torch.randint(0, 4, (5, 30))
        assert torch.allclose(m32(X, Y).probs.double(), m64(X, Y).probs, atol=1e-4)

    def test_checkpointing_same_values_and_grads(self):
        m = _model(2, 3, 1, 2, 2)
        X = torch.randint(0, 4, (3, 12))
        out1 = m(X, X)
        g1 = torch.autograd.grad(qrnn_loss(out1.probs, X[:, 1:]), list(m.parameters()))
        m.checkpoint = True
        out2 = m(X, X)
        g2 = torch.autograd.grad(qrnn_loss(out2.probs, X[:, 1:]), list(m.parameters()))
        assert torch.allclose(out1.probs, out2.probs)
        for a, b in zip(g1, g2):
            assert torch.allclose(a, b, atol=1e-12)

    def test_track_neurons_consistent(self):
        m = _model(2, 3, 2, 2, 2)
        X = torch.randint(0, 4, (3, 6))
        a = m(X, X)
        b = m(X, X, track_neurons=True)
        assert torch.allclose(a.probs, b.probs)
        assert torch.allclose(a.success_prob, b.success_prob, rtol=1e-9)
        n_neurons = m.cell.num_neurons
        assert b.aa_rounds.shape == (3, 5) and bool((b.aa_rounds >= n_neurons).all())

    def test_unitary_mode_workspace_stays_normalised(self):
        m = _model(1, 3, 1, 2, 2, mode="unitary")
        t = m.cell.tables()
        psi = torch.randn(8, 4, dtype=F64)
        psi = psi / psi.norm(dim=0, keepdim=True)
        out, _ = m.cell._workspace(psi, torch.tensor([0, 1, 1, 0]), t, False)
        assert torch.allclose(out.norm(dim=0), torch.ones(4, dtype=F64))

    def test_readout_modes_and_postselect_mask(self):
        m = _model(2, 3, 1, 2, 2)
        X = torch.randint(0, 4, (6, 7))
        Y = torch.randint(0, 4, (6, 7))
        ps = torch.tensor([False, True, True, False, True, False, False])
        g = torch.Generator().manual_seed(0)
        out = m(X, Y, postselect=ps, generator=g)
        assert torch.equal(out.words[:, ps[1:]], Y[:, 1:][:, ps[1:]])
        am = m(X, Y, postselect=torch.zeros(7, dtype=torch.bool), readout="argmax")
        # argmax step 0 must equal argmax of its distribution
        assert torch.equal(am.words[:, 0], am.probs[:, :, 0].argmax(1))
        free = m(X)  # no targets: everything sampled, min_postsel_prob = 1
        assert free.words.shape == (6, 6) and float(free.min_postsel_prob) == 1.0
        assert torch.allclose(out.probs.sum(1), torch.ones(6, 6, dtype=F64))
        assert float(out.min_postsel_prob.detach()) == float(out.postsel_probs[:, ps[1:]].min().detach())

    def test_sampled_mode_reports_attempts(self):
        m = _model(1, 2, 1, 2, 1, mode="sampled")
        X = torch.randint(0, 2, (4, 5))
        out = m(X, X)
        assert out.attempts.shape == (4, 4)
        assert bool((out.attempts >= m.cell.num_neurons).all())
        m2 = _model(1, 2, 1, 2, 1, mode="postselect")
        assert torch.allclose(out.probs, m2(X, X).probs)

    def test_cell_contract(self):
        torch.manual_seed(0)
        cell = QRNNCell(2, 3, stages=1)
        out = cell(torch.tensor([1, 0]))  # unbatched, hx=None
        assert out.probs.shape == (4,) and out.hx.shape == (8,)
        assert abs(float(out.hx.detach().norm()) - 1) < 1e-5
        out2 = cell(torch.tensor([[1, 0], [0, 0]]), target=torch.tensor([0, 2]))
        assert out2.hx.shape == (2, 8) and torch.equal(out2.word, torch.tensor([0, 2]))
        out3 = cell(torch.tensor([[1, 1]]), out2.hx[:1], target=torch.tensor([1]))
        assert out3.probs.shape == (1, 4)
        r = repr(cell)
        assert "2, 3, stages=1, order=2, degree=2 | 91 weights, 7 qubits" in r

    def test_cell_matches_qrnn_step(self):
        m = _model(2, 3, 1, 2, 2)
        X = torch.tensor([[2, 1, 3]])
        out = m(X, X)
        bits = torch.tensor([[1, 0]])
        c = m.cell(bits, target=torch.tensor([1]))
        assert torch.allclose(c.probs, out.probs[:, :, 0])

    def test_state_dict_roundtrip(self):
        m = _model(2, 3, 1, 2, 2)
        m2 = QRNN(2, 3, stages=1, order=2, degree=2, dtype=F64)
        m2.load_state_dict(m.state_dict())
        X = torch.randint(0, 4, (2, 5))
        assert torch.allclose(m(X, X).probs, m2(X, X).probs)

    def test_init_distribution(self):
        torch.manual_seed(0)
        m = QRNN(2, 8, stages=2)
        th = torch.stack([n.theta for n in m.cell.neurons]).detach()
        ph = torch.cat([n.phi for n in m.cell.neurons]).detach()
        assert 0.05 < float(th.std()) < 0.15 and 0.008 < float(ph.std()) < 0.012
        assert float(m.cell.unitary_theta.detach().abs().max()) < 0.05
        assert all(float(n.bias) == pytest.approx(math.pi / 2) for n in m.cell.neurons)

    def test_loss_zero_for_perfect_prediction(self):
        p = torch.zeros(2, 4, 3)
        p[:, 1, :] = 1
        assert float(qrnn_loss(p, torch.ones(2, 3, dtype=torch.long))) == pytest.approx(0.0, abs=1e-6)
        assert loss_offset(3) == pytest.approx(math.log(7 + math.e) - 1)


class TestErrors:
    def test_input_dims(self):
        cell = QRNNCell(2, 2, stages=1)
        with pytest.raises(ValueError, match="QRNNCell: Expected input to be 1D or 2D, got 3D instead"):
            cell(torch.zeros(1, 2, 2))
        with pytest.raises(ValueError, match="QRNNCell: Expected input with last dimension input_size=2; got 3"):
            cell(torch.zeros(4, 3))
        with pytest.raises(ValueError, match=r"QRNNCell: input must be binary \(0/1 bits\)"):
            cell(torch.tensor([[0.5, 1.0]]))
        with pytest.raises(TypeError, match="QRNNCell: input must be a torch.Tensor"):
            cell([[0, 1]])

    def test_hx_and_target(self):
        cell = QRNNCell(2, 2, stages=1)
        with pytest.raises(ValueError, match=r"QRNNCell: Expected hx of shape \(3, 4\); got \(3, 5\)"):
            cell(torch.zeros(3, 2), torch.zeros(3, 5))
        with pytest.raises(ValueError, match="QRNNCell: Expected hx to be 1D or 2D, got 3D instead"):
            cell(torch.zeros(3, 2), torch.zeros(3, 4, 1))
        with pytest.raises(ValueError, match=r"QRNNCell: target must hold words in \[0, 4\); got values in \[0, 7\]"):
            cell(torch.zeros(2, 2), target=torch.tensor([0, 7]))
        with pytest.raises(TypeError, match="QRNNCell: target must be an integer tensor of words"):
            cell(torch.zeros(2, 2), target=torch.tensor([0.0, 1.0]))
        with pytest.raises(ValueError, match=r"QRNNCell: readout must be 'sample' or 'argmax'"):
            cell(torch.zeros(2, 2), readout="max")

    def test_constructor(self):
        with pytest.raises(ValueError, match="QRNNCell: hidden_size must be an int >= 1; got 0"):
            QRNNCell(2, 0)
        with pytest.raises(ValueError, match="QRNNCell: order must be an int >= 1; got 0"):
            QRNNCell(2, 2, order=0)
        with pytest.raises(ValueError, match="QRNNCell: mode must be one of"):
            QRNNCell(2, 2, mode="rus")

    def test_qrnn_inputs(self):
        m = QRNN(2, 2, stages=1)
        with pytest.raises(ValueError, match=r"QRNN: inputs must hold words in \[0, 4\); got values in \[0, 4\]"):
            m(torch.tensor([[0, 4]]))
        with pytest.raises(TypeError, match="QRNN: inputs must be an integer tensor of words; got dtype torch.float32"):
            m(torch.zeros(2, 3))
        with pytest.raises(ValueError, match="QRNN: Expected inputs to be 1D"):
            m(torch.zeros(1, 2, 3, dtype=torch.long))
        with pytest.raises(ValueError, match="QRNN: sequences must have length >= 2; got 1"):
            m(torch.zeros(2, 1, dtype=torch.long))
        with pytest.raises(ValueError, match="QRNN: targets must have the same shape"):
            m(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
        with pytest.raises(ValueError, match="QRNN: postselect was given but targets is None"):
            m(torch.zeros(2, 3, dtype=torch.long), postselect=torch.ones(3, dtype=torch.bool))

    def test_zero_postselection_probability_is_an_error(self):
        m = QRNN(1, 2, stages=1, order=2, degree=1, dtype=F64)
        out_neuron = m.cell.neurons[-1]
        with torch.no_grad():
            out_neuron.phi.zero_()
            out_neuron.theta.fill_(-math.pi / 2)  # eta = 0: the output lane never flips, P(word 1) = 0
        X = torch.zeros(2, 4, dtype=torch.long)
        Y = torch.zeros(2, 4, dtype=torch.long)
        Y[1, 2] = 1
        with pytest.raises(ValueError, match=r"QRNN: postselection probability is zero at step 1 .*batch rows \[1\]"):
            m(X, Y)
        with pytest.raises(ValueError, match="QRNNCell: postselection probability is zero"):
            m.cell(torch.tensor([0]), target=torch.tensor(1))


@pytest.mark.gpu
def test_cuda_matches_cpu():
    m = _model(2, 3, 1, 2, 2)
    X = torch.randint(0, 4, (4, 6))
    ref = m(X, X).probs
    mc = m.to("cuda")
    out = mc(X.cuda(), X.cuda())
    assert out.probs.device.type == "cuda"
    assert torch.allclose(out.probs.cpu(), ref, atol=1e-10)
