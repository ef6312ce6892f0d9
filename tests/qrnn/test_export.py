import numpy as np
import pytest
import torch

from qnn.qrnn import QRNNCell
from qnn.qrnn._export import cell_step_ops, postselect_counts, qiskit_statevector, to_pennylane, to_qiskit

F64 = torch.float64


def _cell(I, W, S, k, d, seed=0):
    torch.manual_seed(seed)
    c = QRNNCell(I, W, stages=S, order=k, degree=d, dtype=F64)
    c.reset_parameters(0.6, 0.6, 0.6)
    return c


def _hx(W, seed=1):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(1 << W, dtype=F64, generator=g)
    return h / h.norm()


class TestQiskit:
    @pytest.mark.parametrize("cfg,word", [((1, 2, 1, 2, 2), 1), ((2, 1, 1, 1, 2), 2), ((1, 2, 0, 3, 1), 0)])
    def test_statevector_equals_fast_path(self, cfg, word):
        pytest.importorskip("qiskit")
        I, W, S, k, d = cfg
        cell = _cell(*cfg)
        hx = _hx(W)
        qc, post = to_qiskit(cell, word, hx=hx)
        amp, p = qiskit_statevector(qc, post)
        N = I + W
        amp = amp.reshape(1 << N, 1 << k)
        assert np.abs(amp[:, 1:]).max() < 1e-12  # ancillas reset to |0>
        full = cell.full_state(hx.unsqueeze(0), torch.tensor([word]))[0].detach().numpy()
        assert np.allclose(amp[:, 0], full, atol=1e-10)  # amplitudes, signs included
        t = cell.tables()
        _, _, _, succ, _ = cell._step_core(hx.unsqueeze(1), torch.tensor([word]), t, False)
        assert p == pytest.approx(float(succ[0].detach()), rel=1e-9)
        # with a measured target: the workspace after measurement equals hx of the fast cell
        out = cell(torch.tensor([(word >> (I - 1 - i)) & 1 for i in range(I)]), hx, target=torch.tensor(1))
        qc2, post2 = to_qiskit(cell, word, hx=hx, target=1)
        amp2, _ = qiskit_statevector(qc2, post2)
        amp2 = amp2.reshape(1 << I, 1 << W, 1 << k)
        assert np.allclose(amp2[0, :, 0], out.hx.detach().numpy(), atol=1e-10)
        assert np.abs(amp2).sum() == pytest.approx(np.abs(amp2[0, :, 0]).sum())

    def test_shots_with_discarding(self):
        pytest.importorskip("qiskit_aer")
        from qiskit_aer import AerSimulator

        cell = _cell(1, 1, 0, 1, 1, seed=3)
        qc, post = to_qiskit(cell, 1)
        n_mcm = len(post)
        sim = AerSimulator(seed_simulator=7)
        shots = 20000
        counts = sim.run(qc, shots=shots).result().get_counts()
        kept = postselect_counts(counts, post, n_mcm)
        n_kept = sum(kept.values())
        out = cell(torch.tensor([1]))
        t = cell.tables()
        _, _, _, succ, _ = cell._step_core(torch.tensor([[1.0], [0.0]], dtype=F64), torch.tensor([1]), t, False)
        # fraction of kept shots = single-pass success probability of all neurons
        p = float(succ[0].detach())
        assert abs(n_kept / shots - p) < 5 * np.sqrt(p * (1 - p) / shots)
        p1 = float(out.probs[1].detach())
        est = kept.get(1, 0) / n_kept
        assert abs(est - p1) < 5 * np.sqrt(p1 * (1 - p1) / n_kept) + 1e-3

    def test_unitary_mode_rejected(self):
        cell = QRNNCell(1, 1, stages=0, mode="unitary")
        with pytest.raises(ValueError, match="cell_step_ops: the unitary"):
            cell_step_ops(cell, 0)
        with pytest.raises(ValueError, match=r"cell_step_ops: word must be in \[0, 2\); got 2"):
            cell_step_ops(QRNNCell(1, 1, stages=0), 2)


class TestPennyLane:
    @pytest.mark.parametrize("cfg,word,target", [((1, 2, 1, 1, 2), 1, None), ((2, 1, 0, 2, 1), 3, None), ((1, 2, 1, 1, 1), 0, 1)])
    def test_probs_equal_fast_path(self, cfg, word, target):
        pytest.importorskip("pennylane")
        I, W, S, k, d = cfg
        cell = _cell(*cfg)
        hx = _hx(W, seed=2)
        probs = np.asarray(to_pennylane(cell, word, hx=hx, target=target)())
        if target is None:
            full = cell.full_state(hx.unsqueeze(0), torch.tensor([word]))[0].detach().numpy()
            assert np.allclose(probs, full**2, atol=1e-10)
        else:
            bits = torch.tensor([(word >> (I - 1 - i)) & 1 for i in range(I)])
            out = cell(bits, hx, target=torch.tensor(target))
            expected = np.zeros((1 << I, 1 << W))
            expected[0] = out.hx.detach().numpy() ** 2
            assert np.allclose(probs, expected.reshape(-1), atol=1e-10)
