"""Tests for qnn.explain: adapters, Kernel/Gradient SHAP, LIME, stability, QPU guard, plots."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from qnn.explain import (
    PredictProba,
    QPUWorkloadError,
    as_predict_proba,
    find_qpu_engines,
    gradient_shap,
    kernel_shap,
    kernel_shap_evaluations,
    lime_explain,
    lime_stability,
    ranking_overlap,
)


@pytest.fixture(scope="module")
def tab():
    rng = np.random.default_rng(0)
    X = rng.random((200, 5))
    logit = 6 * (X[:, 0] - 0.5) + 3 * (X[:, 1] - 0.5) + 0.3 * (X[:, 4] - 0.5)
    y = (logit + rng.normal(0, 0.5, 200) > 0).astype(int)
    clf = LogisticRegression(C=10.0).fit(X, y)
    return X, y, clf


def _torch_sigmoid_net(seed=0, d=5):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(d, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1), torch.nn.Sigmoid())
    with torch.no_grad():  # make feature 0 dominant so rankings are meaningful
        net[0].weight[:, 0] *= 4
    return net


class Flat(torch.nn.Module):
    """Sigmoid output of shape (B,) like qnn.models.KACQDCNN."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x).squeeze(-1)


# ----------------------------------------------------------------------- adapter
class TestAdapter:
    def test_sklearn(self, tab):
        X, _, clf = tab
        f = as_predict_proba(clf)
        np.testing.assert_allclose(f(X[:7]), clf.predict_proba(X[:7]))
        assert f.n_calls == 1 and f.n_rows == 7

    @pytest.mark.parametrize("flat", [False, True])
    def test_torch_sigmoid(self, flat):
        net = _torch_sigmoid_net()
        model = Flat(net) if flat else net
        X = np.random.default_rng(1).random((9, 5))
        p = as_predict_proba(model, batch_size=4)(X)
        with torch.no_grad():
            ref = net(torch.tensor(X, dtype=torch.float32)).numpy().ravel()
        assert p.shape == (9, 2)
        np.testing.assert_allclose(p[:, 1], ref, rtol=1e-6)
        np.testing.assert_allclose(p.sum(1), 1.0)

    def test_torch_multiclass_and_logits(self):
        torch.manual_seed(0)
        lin = torch.nn.Linear(4, 3)
        X = np.random.default_rng(0).random((6, 4))
        p = as_predict_proba(lin, output="logits")(X)
        with torch.no_grad():
            ref = torch.softmax(lin(torch.tensor(X, dtype=torch.float32)), 1).numpy()
        np.testing.assert_allclose(p, ref, rtol=1e-5)
        with pytest.raises(ValueError, match="not probabilities in \\[0, 1\\]|do not sum to 1"):
            as_predict_proba(lin)(X * 10)

    def test_keeps_training_mode(self):
        net = _torch_sigmoid_net()
        net.train()
        as_predict_proba(net)(np.zeros((2, 5)))
        assert net.training

    def test_errors(self, tab):
        X, _, clf = tab
        with pytest.raises(TypeError, match="expected an estimator with predict_proba, a torch.nn.Module or a callable; got int"):
            as_predict_proba(3)
        with pytest.raises(ValueError, match="output must be 'proba' or 'logits'; got 'prob'"):
            as_predict_proba(clf, output="prob")
        f = as_predict_proba(clf)
        with pytest.raises(ValueError, match=r"expects a 2-D array .* got shape \(5,\)"):
            f(X[0])
        with pytest.raises(ValueError, match="expects 5 features; got 4"):
            f(X[:, :4])
        g = as_predict_proba(lambda Z: np.ones((len(Z), 2, 1)))
        with pytest.raises(ValueError, match=r"must return shape \(3,\), \(3, 1\) or \(3, n_classes\)"):
            g(X[:3])


# ----------------------------------------------------------------------- Kernel SHAP
class TestKernelShap:
    def test_additivity_and_shapes(self, tab, capsys):
        X, _, clf = tab
        res = kernel_shap(clf, X, X[:6], n_background=8, nsamples=40, feature_names=list("abcde"))
        assert res.values.shape == (6, 5, 2) and res.base_values.shape == (6, 2)
        # sum(phi) + E[f] = f(x), per class
        for k in (0, 1):
            np.testing.assert_allclose(
                res.base_values[:, k] + res.values[:, :, k].sum(1), clf.predict_proba(X[:6])[:, k], atol=1e-6
            )
        assert res.additivity_error() < 1e-6
        assert res.ranking()[0] == "a"
        # the printed budget is correct: shap evaluated exactly 6 * (1 + 30 * 8) rows (2^5-2 = 30 < 40)
        out = capsys.readouterr().out
        assert "Kernel SHAP" in out
        printed = int(re.search(r"at most ([\d,]+) model evaluations", out).group(1).replace(",", ""))
        assert printed == kernel_shap_evaluations(6, 5, 40, 8) == 8 + 6 * (1 + 30 * 8)
        assert res.n_evaluations == printed  # base value (8 rows) + 6 explained rows

    def test_torch_model_and_seed_repeatable(self, tab):
        X = tab[0]
        model = Flat(_torch_sigmoid_net())
        a = kernel_shap(model, X, X[:3], n_background=5, nsamples=12, seed=3, verbose=False)
        b = kernel_shap(model, X, X[:3], n_background=5, nsamples=12, seed=3, verbose=False)
        np.testing.assert_array_equal(a.values, b.values)
        assert a.additivity_error() < 1e-5

    def test_plots(self, tab, tmp_path):
        X, _, clf = tab
        res = kernel_shap(clf, X, X[:8], n_background=5, nsamples=20, verbose=False)
        paths = [res.plot_bar(tmp_path / "bar.png"), res.plot_beeswarm(tmp_path / "bee.png"),
                 res.plot_waterfall(tmp_path / "wf.png", index=2)]
        for p in paths:
            with open(p, "rb") as fh:
                assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        with pytest.raises(ValueError, match="must end in '.png'"):
            res.plot_bar(tmp_path / "bar.pdf")
        with pytest.raises(ValueError, match=r"index must be in \[0, 7\]; got 9"):
            res.plot_waterfall(tmp_path / "x.png", index=9)
        d = res.to_dict()
        assert d["ranking"] == res.ranking() and d["n_explained"] == 8

    def test_errors(self, tab):
        X, _, clf = tab
        with pytest.raises(ValueError, match="X_explain must have 5 features"):
            kernel_shap(clf, X, X[:2, :3], verbose=False)
        with pytest.raises(ValueError, match="n_background must be <= the number of background rows"):
            kernel_shap(clf, X[:4], X[:2], n_background=10, verbose=False)
        with pytest.raises(ValueError, match="nsamples must be a positive int or 'auto'"):
            kernel_shap(clf, X, X[:2], nsamples=0, verbose=False)
        with pytest.raises(ValueError, match="feature_names must have 5 entries"):
            kernel_shap(clf, X, X[:2], feature_names=["a"], verbose=False)
        with pytest.raises(ValueError, match="X_background contains NaN"):
            kernel_shap(clf, np.full((5, 5), np.nan), X[:2], verbose=False)
        with pytest.raises(ValueError, match="class_index must be in"):
            kernel_shap(clf, X, X[:1], n_background=2, nsamples=4, verbose=False).global_importance(5)


# ----------------------------------------------------------------------- Gradient SHAP
def test_gradient_shap_torch(tab, capsys):
    X = tab[0]
    model = Flat(_torch_sigmoid_net())
    res = gradient_shap(model, X, X[:4], n_background=30, nsamples=100, feature_names=list("abcde"))
    assert res.values.shape == (4, 5, 2)
    assert "Gradient SHAP: 4 rows x 100 samples = 400" in capsys.readouterr().out
    # expected gradients: additive in expectation; the sampling error is small here
    assert res.additivity_error() < 0.05
    # agrees with model-agnostic Kernel SHAP on the same model (same background rows)
    ks = kernel_shap(model, X, X[:4], n_background=30, nsamples="auto", verbose=False,
                     feature_names=list("abcde"))
    assert res.ranking()[0] == ks.ranking()[0]
    assert np.corrcoef(res.values[:, :, 1].ravel(), ks.values[:, :, 1].ravel())[0, 1] > 0.9
    with pytest.raises(TypeError, match="gradient_shap needs a torch.nn.Module"):
        gradient_shap(tab[2], X, X[:2], verbose=False)


# ----------------------------------------------------------------------- LIME
class TestLime:
    def test_seed_determinism_and_shapes(self, tab, capsys):
        X, _, clf = tab
        a = lime_explain(clf, X, X[:3], num_samples=300, random_state=7, class_names=["neg", "pos"])
        assert "LIME: 3 rows x 300 perturbations = 900 model evaluations" in capsys.readouterr().out
        b = lime_explain(clf, X, X[:3], num_samples=300, random_state=7, verbose=False)
        c = lime_explain(clf, X, X[:3], num_samples=300, random_state=8, verbose=False)
        np.testing.assert_array_equal(a.weights, b.weights)
        assert not np.array_equal(a.weights, c.weights)
        assert a.weights.shape == (3, 5) and a.n_evaluations == 900
        assert a.ranking()[0] == "x0"
        assert all(len(cs) == 5 for cs in a.conditions)

    def test_torch_model_and_plots(self, tab, tmp_path):
        X = tab[0]
        res = lime_explain(Flat(_torch_sigmoid_net()), X, X[:2], num_samples=200, verbose=False,
                           class_names=["Normal", "Heart Failure"])
        for p in (res.plot(tmp_path / "lime0.png", index=0), res.plot_global(tmp_path / "lime_g.png")):
            with open(p, "rb") as fh:
                assert fh.read(4) == b"\x89PNG"
        assert res.to_dict()["class"] == "Heart Failure"

    def test_stability(self, tab, capsys):
        X, _, clf = tab
        st = lime_stability(clf, X, X[:4], seeds=(0, 1, 2), top_k=2, num_samples=300)
        assert "LIME stability: 3 seeds x 4 rows x 300 perturbations = 3,600" in capsys.readouterr().out
        assert 0.0 <= st.score <= 1.0 and -1.0 <= st.spearman <= 1.0
        assert st.score > 0.5  # the two strong features are found whatever the seed
        assert st.per_sample.shape == (4,)
        # a model with no signal: rankings are noise, stability is lower
        rng = np.random.default_rng(0)
        W = rng.normal(size=(5, 2)) * 1e-3
        noise = lambda Z: np.column_stack([0.5 - Z @ W[:, 0], 0.5 + Z @ W[:, 0]])  # noqa: E731
        st0 = lime_stability(noise, X, X[:4], seeds=(0, 1, 2), top_k=2, num_samples=300, verbose=False)
        assert 0.0 <= st0.score <= 1.0

    def test_errors(self, tab):
        X, _, clf = tab
        with pytest.raises(ValueError, match="seeds must hold at least 2 distinct ints"):
            lime_stability(clf, X, X[:2], seeds=(1, 1))
        with pytest.raises(ValueError, match="top_k must be <= the number of features"):
            lime_stability(clf, X, X[:2], top_k=9)
        with pytest.raises(ValueError, match="num_samples must be a positive int; got 0"):
            lime_explain(clf, X, X[:2], num_samples=0)
        with pytest.raises(ValueError, match="class_names must have 2 entries"):
            lime_explain(clf, X, X[:1], num_samples=50, class_names=["a"], verbose=False)


def test_ranking_overlap():
    r = ranking_overlap(["a", "b", "c", "d"], ["a", "b", "d", "c"], k=2)
    assert r["top_k_jaccard"] == 1.0 and 0 < r["spearman"] < 1
    assert ranking_overlap(list("abcd"), list("dcba"))["spearman"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="share at least 2 features"):
        ranking_overlap(["a"], ["a"])


# ----------------------------------------------------------------------- QPU guard
class FakeIBMEngine:
    name = "ibm"

    def run(self, circuit, inputs, weights):  # pragma: no cover - never reached
        raise AssertionError("the QPU must not be called")


class FakeQPUModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pre = torch.nn.Linear(5, 4)
        self.q = torch.nn.Module()
        self.q.engine = FakeIBMEngine()  # a qnn quantum layer stores its engine here
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return torch.sigmoid(self.pre(x).sum(-1))


class Wrapper:
    """An estimator holding the module in model_, like qnn.models.KACQClassifier."""

    def __init__(self, model):
        self.model_ = model

    def predict_proba(self, X):
        p = as_predict_proba(self.model_)(X)
        return p


class TestQPUGuard:
    def test_detection(self):
        m = FakeQPUModel()
        assert find_qpu_engines(m) == [("q", "ibm")]
        assert find_qpu_engines(Wrapper(m)) == [("model_.q", "ibm")]
        assert find_qpu_engines(Wrapper(m).predict_proba) == [("model_.q", "ibm")]
        assert find_qpu_engines(_torch_sigmoid_net()) == []

    @pytest.mark.parametrize("which", ["kernel", "lime", "gradient"])
    def test_refusal_before_any_evaluation(self, tab, which):
        X = tab[0]
        m = FakeQPUModel()
        fn = {"kernel": lambda mod: kernel_shap(mod, X, X[:2], n_background=3, nsamples=10, verbose=False),
              "lime": lambda mod: lime_explain(mod, X, X[:2], num_samples=100, verbose=False),
              "gradient": lambda mod: gradient_shap(mod, X, X[:2], nsamples=10, verbose=False)}[which]
        with pytest.raises(QPUWorkloadError, match=r"Refusing to send .* to a QPU engine: 'q' \(engine 'ibm'\).*force=True"):
            fn(m)
        assert m.calls == 0
        with pytest.raises(QPUWorkloadError, match=r"'model_.q' \(engine 'ibm'\)"):
            fn(Wrapper(m)) if which != "gradient" else gradient_shap(Wrapper(m), X, X[:2], nsamples=10, verbose=False)
        assert m.calls == 0

    def test_force_runs(self, tab):
        X = tab[0]
        m = FakeQPUModel()
        res = kernel_shap(m, X, X[:1], n_background=2, nsamples=6, force=True, verbose=False)
        assert res.values.shape == (1, 5, 2) and m.calls > 0

    def test_real_quantum_layer_on_an_engine_declaring_hardware(self, tab):
        """A qnn.layers.QuantumLayer on an engine whose capabilities say hardware is refused,
        whatever its name, with the workload's cost estimate in the message."""
        layers = pytest.importorskip("qnn.layers")
        from qnn.circuit import Circuit, angle_embedding, basic_entangler_layers
        from qnn.engines import Capabilities, Engine

        class OfflineIBM(Engine):
            name = "offline-qpu"
            capabilities = Capabilities(hardware=True, shots=100, exact_gradients=True, cost_per_evaluation=0.025)

            def run(self, circuit, inputs, weights):  # pragma: no cover
                raise AssertionError("the QPU must not be called")

        c = Circuit(2)
        angle_embedding(c)
        basic_entangler_layers(c, 1)
        c.measure_z()
        model = torch.nn.Sequential(torch.nn.Linear(5, 2), layers.QuantumLayer(c, engine=OfflineIBM()))
        assert find_qpu_engines(model) == [("1", "offline-qpu")]
        with pytest.raises(QPUWorkloadError, match=r"engine 'offline-qpu'\); estimated 10 circuits, 1 jobs, ~2 QPU s"):
            lime_explain(model, tab[0], tab[0][:1], num_samples=10, verbose=False)

    def test_predict_proba_counts(self, tab):
        f = as_predict_proba(tab[2])
        assert isinstance(f, PredictProba) and as_predict_proba(f) is f
