"""Tests for qnn.models.kacq (KACQ-DCNN, its ablations, the sklearn wrapper) and the baselines."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from qnn.models import KACQClassifier, KACQDCNN, KerasLSTM, make_pqc
from qnn.models._baselines import QCKANClassifier, QCKANnet, TensorNetworkQNNClassifier, tensor_network_circuit

HAVE_HEART_DATA = (Path(os.environ.get("QNN_DATA_DIR", "/nonexistent")) / "heart/heart_failure_prediction/heart.csv").exists()

ABLATIONS = [
    {},
    {"kan": "mlp"},
    {"embedding": "angle"},
    {"quantum_channel": False},
    {"classical_channel": False},
    {"bilstm": 0},
    {"bilstm": 1},
    {"lstm_bidirectional": False},
    {"dropout": 0.0},
    {"classical_kan": False},
    {"quantum_kan": False},
    {"pqc": "classical"},
    {"n_layers": 4},
    {"lstm_activation": "tanh"},
    {"kan_parameterization": "efficient"},
]


def n_params(m):
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


class TestKerasLSTM:
    def test_matches_torch_lstm_with_tanh(self):
        """With tanh the recurrence is the standard LSTM: compare against torch.nn.LSTM."""
        torch.manual_seed(0)
        m = KerasLSTM(3, 5, bidirectional=True, activation="tanh").double()
        ref = torch.nn.LSTM(3, 5, batch_first=True, bidirectional=True).double()
        with torch.no_grad():
            for d, sfx in enumerate(["", "_reverse"]):
                # torch gate order i, f, g, o == Keras i, f, c, o
                getattr(ref, "weight_ih_l0" + sfx).copy_(m.weight_ih[d].T)
                getattr(ref, "weight_hh_l0" + sfx).copy_(m.weight_hh[d].T)
                getattr(ref, "bias_ih_l0" + sfx).copy_(m.bias[d])
                getattr(ref, "bias_hh_l0" + sfx).zero_()
        x = torch.randn(4, 7, 3, dtype=torch.float64)
        torch.testing.assert_close(m(x), ref(x)[0])

    def test_relu_cell_by_hand(self):
        torch.manual_seed(1)
        m = KerasLSTM(2, 3, bidirectional=False, activation="relu").double()
        x = torch.randn(2, 4, 2, dtype=torch.float64)
        h = torch.zeros(2, 3, dtype=torch.float64)
        c = torch.zeros_like(h)
        W, U, b = m.weight_ih[0], m.weight_hh[0], m.bias[0]
        outs = []
        for t in range(4):
            z = x[:, t] @ W + h @ U + b
            i, f, g, o = z.chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.relu(g)
            h = torch.sigmoid(o) * torch.relu(c)
            outs.append(h)
        torch.testing.assert_close(m(x), torch.stack(outs, 1))
        assert torch.all(m.bias[0, 3:6] == 1)  # unit forget bias

    def test_bad_input(self):
        with pytest.raises(ValueError, match=r"KerasLSTM: expected input \(B, T, 1\); got shape \(3, 4\)"):
            KerasLSTM(1, 4)(torch.rand(3, 4))
        with pytest.raises(ValueError, match="activation must be 'relu' or 'tanh'"):
            KerasLSTM(1, 4, activation="gelu")


class TestKACQDCNN:
    @pytest.mark.parametrize("kw", ABLATIONS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
    def test_forward_shapes_every_switch(self, kw):
        m = KACQDCNN(n_features=11, seed=0, **kw)
        x = torch.rand(5, 11)
        p = m(x)
        assert p.shape == (5,) and torch.all((p > 0) & (p < 1))
        p.sum().backward()
        assert all(q.grad is not None for q in m.parameters() if q.requires_grad)

    def test_param_count(self):
        # 11 features: 2 844 277; with the paper's 12 inputs the same code gives 3 023 221 (spec: ~3.02 M)
        assert n_params(KACQDCNN(n_features=11)) == 2_844_277
        m12 = KACQDCNN(n_features=12)
        assert n_params(m12) == 3_023_221
        q = sum(p.numel() for n, p in m12.named_parameters() if n.startswith(("q_", "circuits")))
        assert q == 1_767_636  # spec: quantum channel 1.768 M
        assert sum(p.numel() for p in m12.q_pre[1].parameters()) == 1_655_984  # spec: Q3 1.656 M
        assert sum(p.numel() for p in m12.circuits.parameters()) == 36  # 3 x (1, 4, 3)
        assert n_params(KACQDCNN(n_features=12, quantum_channel=False)) - 33 == 1_255_520  # classical 1.256 M

    def test_circuits_are_qnn_layers_with_sel_weights(self):
        from qnn.layers import QuantumLayer

        m = KACQDCNN(n_layers=3, seed=0)
        assert len(m.circuits) == 3 and all(isinstance(c, QuantumLayer) for c in m.circuits)
        c = m.circuits[0].circuit
        assert c.n_qubits == 4 and c.n_inputs == 16 and c.n_outputs == 4 and c.n_weights == 3 * 4 * 3
        assert c.state_prep is not None
        assert all(0 <= w < 2 * np.pi for w in m.circuits[0].weight.tolist())

    def test_seed_reproducible(self):
        x = torch.rand(3, 11)
        a, b = KACQDCNN(seed=3).eval(), KACQDCNN(seed=3).eval()
        torch.testing.assert_close(a(x), b(x))
        assert not torch.allclose(KACQDCNN(seed=4).eval()(x), a(x))

    def test_bad_args(self):
        with pytest.raises(ValueError, match="kan must be 'kan' or 'mlp'"):
            KACQDCNN(kan="lin")
        with pytest.raises(ValueError, match="bilstm must be 0, 1 or 2"):
            KACQDCNN(bilstm=3)
        with pytest.raises(ValueError, match="at least one of quantum_channel / classical_channel"):
            KACQDCNN(quantum_channel=False, classical_channel=False)
        with pytest.raises(ValueError, match="embedding must be 'amplitude' or 'angle'"):
            KACQDCNN(embedding="basis")
        with pytest.raises(ValueError, match=r"expected input of shape \(B, 11\); got \(2, 12\)"):
            KACQDCNN()(torch.rand(2, 12))
        with pytest.raises(ValueError, match="Unknown engine"):
            KACQDCNN(engine="nope")
        with pytest.raises(ValueError, match="angle embedding needs n_inputs == n_qubits"):
            make_pqc(16, 4, embedding="angle")

    def test_repr(self):
        r = repr(KACQDCNN(kan="mlp", n_layers=2))
        assert "n_layers=2" in r and "kan='mlp'" in r and "weights" in r and "KerasLSTM" in r

    @pytest.mark.skipif(importlib.util.find_spec("qnn.engines.pennylane_engine") is None,
                        reason="qnn/engines/pennylane_engine.py (written by another helper) is absent")
    def test_engine_switch_pennylane_matches_torch(self):
        a = KACQDCNN(seed=0, engine="torch").eval()
        b = KACQDCNN(seed=0, engine="pennylane").eval()
        b.load_state_dict(a.state_dict())
        x = torch.rand(3, 11)
        torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=1e-4)


def toy(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 11))
    y = (X[:, 0] + X[:, 1] > 1.0).astype(int)
    return X, y


class TestKACQClassifier:
    def test_training_reduces_loss(self):
        """A tiny training run of the full model (both channels, circuits included) lowers the loss."""
        import torch.nn.functional as F

        torch.manual_seed(0)
        m = KACQDCNN(seed=0, dropout=0.0)
        X = torch.rand(32, 11)
        y = (X[:, 0] + X[:, 1] > 1).float()
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        losses = []
        for _ in range(25):
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(m.logits(X), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.85 * losses[0]

    def test_classifier_history(self):
        X, y = toy()
        clf = KACQClassifier(epochs=3, seed=0, verbose=False, patience=100, lr_patience=100,
                             restore="last").fit(X[:100], y[:100], X[100:], y[100:])
        h = clf.history_
        assert len(h) == 3 and clf.best_epoch_ == 3
        assert all(np.isfinite(r["loss"]) and 0 <= r["val_accuracy"] <= 1 for r in h)

    def test_api_and_checkpoint(self):
        X, y = toy()
        labels = np.array(["neg", "pos"])[y]
        clf = KACQClassifier(epochs=3, seed=0, verbose=False, quantum_channel=False).fit(X, labels)
        assert list(clf.classes_) == ["neg", "pos"]
        P = clf.predict_proba(X[:7])
        assert P.shape == (7, 2) and np.allclose(P.sum(1), 1)
        assert set(clf.predict(X)) <= {"neg", "pos"}
        accs = [r["val_accuracy"] for r in clf.history_]
        assert clf.best_epoch_ == 1 + int(np.argmax(accs))  # first epoch with the best val accuracy

    def test_early_stopping_and_backtrack(self):
        X, y = toy()
        clf = KACQClassifier(epochs=40, seed=0, verbose=False, patience=2, lr_patience=1,
                             quantum_channel=False).fit(X, y)
        assert len(clf.history_) < 40
        lrs = [r["lr"] for r in clf.history_]
        assert min(lrs) < 1e-3  # the LR was halved at least once

    def test_deterministic(self):
        X, y = toy(60)
        a = KACQClassifier(epochs=2, seed=5, verbose=False, quantum_channel=False).fit(X, y).predict_proba(X)
        b = KACQClassifier(epochs=2, seed=5, verbose=False, quantum_channel=False).fit(X, y).predict_proba(X)
        np.testing.assert_allclose(a, b)

    def test_errors(self):
        X, y = toy(30)
        with pytest.raises(ValueError, match="not fitted yet"):
            KACQClassifier().predict_proba(X)
        with pytest.raises(ValueError, match="exactly 2 classes"):
            KACQClassifier(verbose=False).fit(X, np.zeros(30))
        with pytest.raises(ValueError, match="X has 30 rows but y has 29"):
            KACQClassifier(verbose=False).fit(X, y[:29])
        with pytest.raises(ValueError, match="restore must be"):
            KACQClassifier(restore="best", verbose=False).fit(X, y)
        clf = KACQClassifier(epochs=1, verbose=False, quantum_channel=False).fit(X, y)
        with pytest.raises(ValueError, match="X has 5 features, but the model was fitted with 11"):
            clf.predict_proba(np.zeros((2, 5)))
        with pytest.raises(ValueError, match="NaN or infinite"):
            clf.predict_proba(np.full((2, 11), np.nan))

    def test_sklearn_clone(self):
        from sklearn.base import clone

        c = clone(KACQClassifier(epochs=3, n_layers=2))
        assert c.epochs == 3 and c.model_kwargs == {"n_layers": 2}


class TestBaselines:
    @pytest.mark.parametrize("net,n_blocks", [("TTN", 3), ("MPS", 4), ("MERA", 5)])
    def test_tn_circuits(self, net, n_blocks):
        c = tensor_network_circuit(net, 18, n_layers=2)
        assert c.n_qubits == 5 and c.n_inputs == 18 and c.n_weights == 2 * n_blocks * 2 and c.n_outputs == 1
        assert [g.name for g in c.gates[:3]] == ["CNOT", "RY", "RY"]

    def test_tn_classifier(self):
        X, y = toy(50)
        clf = TensorNetworkQNNClassifier("MPS", 1, steps=5, seed=0).fit(X, y)
        P = clf.predict_proba(X)
        assert P.shape == (50, 2) and np.all((P >= 0) & (P <= 1))
        with pytest.raises(ValueError, match="network must be one of"):
            tensor_network_circuit("PEPS", 4)

    def test_qckan(self):
        m = QCKANnet(20, seed=0)
        assert m(torch.rand(3, 20)).shape == (3,)
        X, y = toy(40)
        assert QCKANClassifier(epochs=1, seed=0, verbose=False).fit(X, y).predict_proba(X).shape == (40, 2)
        with pytest.raises(ValueError, match="n_features must be >= 5"):
            QCKANnet(4)


class TestExperimentHelpers:
    """Fast checks of experiments/kacq (statistics, and a one-fold resumable CV run)."""

    @pytest.fixture()
    def common(self, monkeypatch, tmp_path):
        import sys
        from pathlib import Path

        exp = Path(__file__).resolve().parents[2] / "experiments" / "kacq"
        monkeypatch.syspath_prepend(str(exp))
        import common as c

        monkeypatch.setattr(c, "CV_CACHE", tmp_path / "cv.jsonl")
        yield c
        sys.modules.pop("common", None)
        sys.modules.pop("run_cv", None)
        sys.modules.pop("summarize_cv", None)

    def test_nadeau_bengio_and_holm(self, common):
        from scipy import stats

        a = np.array([0.9, 0.85, 0.88, 0.91, 0.87])
        b = np.array([0.86, 0.84, 0.85, 0.88, 0.86])
        d = a - b
        t_ref = d.mean() / np.sqrt((1 / 5 + 100 / 900) * d.var(ddof=1))
        t, p = common.nadeau_bengio(a, b, n_train=900, n_test=100)
        assert t == pytest.approx(t_ref) and p == pytest.approx(2 * stats.t.sf(abs(t_ref), 4))
        # the correction makes the test more conservative than the plain paired t-test
        assert p > stats.ttest_rel(a, b).pvalue
        assert common.holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])

    def test_mean_sd(self, common):
        assert common.mean_sd([1.0, 2.0, 3.0]) == "2.0000 ± 1.0000"  # sample sd
        assert common.mean_sd([0.5, None], digits=2) == "0.50"
        assert common.mean_sd([None]) == "-" and common.mean_sd([]) == "-"

    @pytest.mark.skipif(not HAVE_HEART_DATA, reason="heart.csv not found under $QNN_DATA_DIR")
    def test_run_cv_resumes(self, common, monkeypatch, tmp_path):
        import run_cv

        run_cv.run(["LogReg", "Dummy"], repeats=1, prep="clean", fold_filter=[0])
        recs = common.load_cache()
        assert set(recs) == {("clean", "LogReg", 0, 0), ("clean", "Dummy", 0, 0)}
        assert recs[("clean", "LogReg", 0, 0)]["n_test"] in (91, 92) and recs[("clean", "LogReg", 0, 0)]["accuracy"] > 0.7
        n_lines = len(common.CV_CACHE.read_text().splitlines())
        run_cv.run(["LogReg", "Dummy"], repeats=1, prep="clean", fold_filter=[0])  # cached: nothing added
        assert len(common.CV_CACHE.read_text().splitlines()) == n_lines
        # the summary table states the fits and their summed recorded time
        import summarize_cv

        monkeypatch.setattr(common, "RESULTS", tmp_path)
        summarize_cv.main(["--prep", "clean"])
        md = (tmp_path / "cv_table_clean.md").read_text()
        total = sum(r["fit_s"] for r in recs.values())
        assert f"Compute: 2 fits, recorded fit times (`fit_s`, wall, one fit per process) sum to {total:.0f} s" in md
        assert "| LogReg | 1 |" in md
