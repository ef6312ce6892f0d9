"""Tests for qnn.conformal: cross-checks against MAPIE 1.6 and crepes, empirical coverage
over many random calibration/test splits, API order and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from qnn.conformal import (
    SplitConformalClassifier,
    conformal_quantile,
    conformity_scores,
    coverage_score,
    mean_set_size,
    per_class_coverage,
    set_size_counts,
)

LEVELS = [0.8, 0.9, 0.95]


@pytest.fixture(scope="module")
def data3():
    """3-class synthetic data, a model fitted on the first 800 rows, cal 500, test 700."""
    X, y = make_classification(
        2000, n_features=8, n_informative=5, n_classes=3, random_state=0
    )
    clf = LogisticRegression(max_iter=500).fit(X[:800], y[:800])
    return clf, X[800:1300], y[800:1300], X[1300:], y[1300:]


@pytest.fixture(scope="module")
def pool2():
    """Binary data (heart-like: 2 classes, noisy), model fitted once, a large pool to split."""
    X, y = make_classification(
        12_000, n_features=6, n_informative=4, flip_y=0.1, class_sep=0.8, random_state=1
    )
    clf = LogisticRegression(max_iter=500).fit(X[:1000], y[:1000])
    return clf, X[1000:], y[1000:]


# ----------------------------------------------------------------------- quantile
class TestQuantile:
    def test_order_statistic(self):
        s = np.arange(1, 11) / 10.0  # 0.1 .. 1.0, n = 10
        # k = ceil(11 * 0.8) = 9 -> 0.9 ; k = ceil(11 * 0.5) = 6 -> 0.6
        assert conformal_quantile(s, 0.8) == pytest.approx(0.9)
        assert conformal_quantile(s, 0.5) == pytest.approx(0.6)
        # exact decimal arithmetic: 11 * 0.9 = 9.9 -> 10 (not 11 by float error)
        assert conformal_quantile(s, 0.9) == pytest.approx(1.0)

    def test_matches_numpy_lower_and_higher_is_one_more(self):
        rng = np.random.default_rng(0)
        s = rng.random(500)
        for lev in LEVELS:
            k = math.ceil(501 * lev)
            lower = np.quantile(s, k / 500, method="lower")
            higher = np.quantile(s, k / 500, method="higher")
            assert conformal_quantile(s, lev) == lower
            assert higher == np.sort(s)[k]  # the (k+1)-th smallest: one too conservative

    def test_too_few_samples_gives_inf(self):
        assert conformal_quantile([0.1, 0.2, 0.3], 0.9) == math.inf  # ceil(4*.9)=4 > 3
        assert conformal_quantile([], 0.9) == math.inf


# ----------------------------------------------------------------------- scores
class TestScores:
    def test_lac(self):
        p = np.array([[0.7, 0.2, 0.1]])
        np.testing.assert_allclose(conformity_scores(p, score="lac"), [[0.3, 0.8, 0.9]])

    def test_aps_nonrandom_and_random(self):
        p = np.array([[0.2, 0.7, 0.1]])
        np.testing.assert_allclose(conformity_scores(p, score="aps"), [[0.9, 0.7, 1.0]])
        np.testing.assert_allclose(
            conformity_scores(p, score="aps", u=np.array([0.5])), [[0.8, 0.35, 0.95]]
        )

    def test_raps_penalty(self):
        p = np.array([[0.2, 0.7, 0.1]])
        got = conformity_scores(p, score="raps", k_reg=1, lambda_reg=0.5)
        np.testing.assert_allclose(got, [[0.9 + 0.5, 0.7, 1.0 + 1.0]])

    def test_aps_sets_are_prefixes(self):
        rng = np.random.default_rng(0)
        p = rng.dirichlet(np.ones(5), size=200)
        for u in (None, rng.random(200)):
            s = conformity_scores(p, score="raps", u=u, k_reg=1, lambda_reg=0.05)
            order = np.argsort(-p, axis=1, kind="stable")
            s_sorted = np.take_along_axis(s, order, axis=1)
            assert (np.diff(s_sorted, axis=1) >= -1e-12).all()

    def test_bad_score_name(self):
        with pytest.raises(ValueError, match="score must be one of"):
            conformity_scores(np.ones((1, 2)) / 2, score="top_k")


# ----------------------------------------------------------------------- MAPIE / crepes
class TestAgainstReferences:
    def test_lac_identical_to_mapie(self, data3):
        from mapie.classification import SplitConformalClassifier as MapieSCC

        clf, Xc, yc, Xt, _ = data3
        ref = MapieSCC(clf, confidence_level=LEVELS, conformity_score="lac", prefit=True)
        ref.conformalize(Xc, yc)
        ref_labels, ref_sets = ref.predict_set(Xt)
        ours = SplitConformalClassifier(clf, confidence_level=LEVELS).conformalize(Xc, yc)
        labels, sets = ours.predict_set(Xt)
        np.testing.assert_allclose(ours.quantiles_, ref._mapie_classifier.quantiles_)
        np.testing.assert_allclose(ours.conformity_scores_, ref.conformity_scores.ravel())
        assert sets.shape == ref_sets.shape == (len(Xt), 3, 3)
        np.testing.assert_array_equal(sets, ref_sets)
        np.testing.assert_array_equal(labels, ref_labels)

    def test_randomized_aps_identical_to_mapie_randomized(self, data3):
        from mapie.classification import SplitConformalClassifier as MapieSCC

        clf, Xc, yc, Xt, _ = data3
        ref = MapieSCC(
            clf, confidence_level=LEVELS, conformity_score="aps", prefit=True,
            random_state=np.random.RandomState(3),
        ).conformalize(Xc, yc)
        _, ref_sets = ref.predict_set(Xt, conformity_score_params={"include_last_label": "randomized"})
        ours = SplitConformalClassifier(
            clf, confidence_level=LEVELS, conformity_score="aps", randomized=True,
            random_state=np.random.RandomState(3),
        ).conformalize(Xc, yc)
        _, sets = ours.predict_set(Xt)
        np.testing.assert_allclose(ours.conformity_scores_, ref.conformity_scores.ravel())
        np.testing.assert_allclose(ours.quantiles_, ref._mapie_classifier.quantiles_)
        np.testing.assert_array_equal(sets, ref_sets)

    def test_mapie_default_aps_is_superset_of_randomized(self, data3):
        """MAPIE's default include_last_label=True keeps the crossing label: a superset."""
        from mapie.classification import SplitConformalClassifier as MapieSCC

        clf, Xc, yc, Xt, _ = data3
        ref = MapieSCC(clf, confidence_level=LEVELS, conformity_score="aps", prefit=True,
                       random_state=np.random.RandomState(3)).conformalize(Xc, yc)
        _, ref_sets = ref.predict_set(Xt)
        ours = SplitConformalClassifier(clf, confidence_level=LEVELS, conformity_score="aps",
                                        random_state=np.random.RandomState(3)).conformalize(Xc, yc)
        _, sets = ours.predict_set(Xt)
        assert (sets <= ref_sets).all() and (sets < ref_sets).any()

    @pytest.mark.parametrize("mondrian", [False, True])
    def test_lac_against_crepes(self, data3, mondrian):
        """crepes (smoothing=False) keeps y iff p-value >= 1 - confidence; we keep y iff
        p-value > alpha (the order statistic).  They agree except when (n+1)*alpha is an
        integer, where crepes includes one order statistic more."""
        from crepes import ConformalClassifier
        from crepes.extras import hinge

        clf, Xc, yc, Xt, _ = data3
        a_cal = hinge(clf.predict_proba(Xc), clf.classes_, yc)
        a_t = hinge(clf.predict_proba(Xt))
        cc = ConformalClassifier().fit(a_cal, bins=yc) if mondrian else ConformalClassifier().fit(a_cal)
        ours = SplitConformalClassifier(clf, confidence_level=LEVELS, mondrian=mondrian)
        _, sets = ours.conformalize(Xc, yc).predict_set(Xt)
        counts = np.bincount(yc) if mondrian else np.array([len(yc)])
        n_equal = 0
        for j, lev in enumerate(LEVELS):
            if mondrian:
                ref = np.stack([
                    cc.predict_set(a_t[:, [k]], bins=np.full(len(a_t), k), confidence=lev,
                                   smoothing=False)[:, 0] for k in range(3)], axis=1).astype(bool)
            else:
                ref = cc.predict_set(a_t, confidence=lev, smoothing=False).astype(bool)
            assert (sets[:, :, j] <= ref).all()
            integer_case = any(
                abs((n + 1) * (1 - lev) - round((n + 1) * (1 - lev))) < 1e-9 for n in counts
            )
            if not integer_case:
                np.testing.assert_array_equal(sets[:, :, j], ref)
                n_equal += 1
        assert n_equal >= 2


# ----------------------------------------------------------------------- coverage
def _beta_binom_lower(n_cal: int, n_test: int, level: float, q: float = 1e-4) -> float:
    """Lower q-quantile of test coverage: count ~ BetaBinomial(n_test, k, n_cal + 1 - k)."""
    k = math.ceil((n_cal + 1) * level - 1e-9)
    return stats.betabinom.ppf(q, n_test, k, n_cal + 1 - k) / n_test


SPLITS = 200
N_CAL = 500


@pytest.mark.parametrize(
    "score,randomized",
    [("lac", True), ("aps", True), ("aps", False), ("raps", True), ("raps", False)],
)
def test_marginal_coverage_over_random_splits(pool2, score, randomized):
    clf, X, y = pool2
    rng = np.random.default_rng(123)
    n_test = 1000
    proba_all = clf.predict_proba(X)  # cache: the estimator is a fixed prefit model

    class Cached:
        classes_ = clf.classes_

        def predict_proba(self, Xi):
            return proba_all[Xi]

        def predict(self, Xi):
            return clf.classes_[proba_all[Xi].argmax(1)]

    idx_all = np.arange(len(X)).reshape(-1, 1)
    cov = np.empty((SPLITS, len(LEVELS)))
    sizes = np.empty((SPLITS, len(LEVELS)))
    for i in range(SPLITS):
        perm = rng.permutation(len(X))
        cal, test = perm[:N_CAL], perm[N_CAL:N_CAL + n_test]
        cp = SplitConformalClassifier(
            Cached(), confidence_level=LEVELS, conformity_score=score, randomized=randomized,
            random_state=i, k_reg=1, lambda_reg=0.1,
        ).conformalize(idx_all[cal, 0], y[cal])
        _, sets = cp.predict_set(idx_all[test, 0])
        cov[i] = coverage_score(y[test], sets)
        sizes[i] = mean_set_size(sets)
    mean, sd = cov.mean(0), cov.std(0, ddof=1)
    for j, lev in enumerate(LEVELS):
        assert mean[j] >= lev - 3 * sd[j] / math.sqrt(SPLITS), (score, lev, mean[j])
        assert cov[:, j].min() >= _beta_binom_lower(N_CAL, n_test, lev), (score, lev)
        if score == "lac" or randomized:  # exact methods are not over-conservative either
            assert mean[j] <= lev + 1 / (N_CAL + 1) + 3 * sd[j] / math.sqrt(SPLITS)
    # sets grow with the level (deterministic APS/RAPS on noisy binary data may already
    # return both labels at the lowest level, hence only >= there)
    d = np.diff(sizes.mean(0))
    assert (d > 0).all() if (score == "lac" or randomized) else (d >= 0).all()


@pytest.mark.parametrize("score", ["lac", "aps"])
def test_mondrian_per_class_coverage_over_random_splits(score):
    # imbalanced classes: plain split conformal under-covers the minority class here
    X, y = make_classification(
        12_000, n_features=6, n_informative=3, weights=[0.8, 0.2], flip_y=0.15,
        class_sep=0.6, random_state=2,
    )
    clf = LogisticRegression(max_iter=500).fit(X[:1000], y[:1000])
    Xp, yp = X[1000:], y[1000:]
    proba_all = clf.predict_proba(Xp)

    class Cached:
        classes_ = clf.classes_

        def predict_proba(self, Xi):
            return proba_all[Xi]

    rng = np.random.default_rng(7)
    lev = 0.9
    cov_m, cov_std = [], []
    for i in range(SPLITS):
        perm = rng.permutation(len(Xp))
        cal, test = perm[:N_CAL], perm[N_CAL:N_CAL + 1500]
        res = {}
        for mondrian in (True, False):
            cp = SplitConformalClassifier(
                Cached(), confidence_level=lev, conformity_score=score, mondrian=mondrian,
                random_state=i,
            ).conformalize(cal, yp[cal])
            _, sets = cp.predict_set(test)
            res[mondrian] = per_class_coverage(yp[test], sets)[:, 0]
            if mondrian:
                n_k = cp.n_calibration_
                for c in range(2):
                    n_test_c = int((yp[test] == c).sum())
                    assert res[True][c] >= _beta_binom_lower(int(n_k[c]), n_test_c, lev), (c, i)
        cov_m.append(res[True])
        cov_std.append(res[False])
    cov_m, cov_std = np.array(cov_m), np.array(cov_std)
    for c in range(2):
        sd = cov_m[:, c].std(ddof=1)
        assert cov_m[:, c].mean() >= lev - 3 * sd / math.sqrt(SPLITS), (c, cov_m[:, c].mean())
    # the point of Mondrian: the class that standard CP under-covers is fixed
    worst = cov_std.mean(0).argmin()
    assert cov_std[:, worst].mean() < lev - 0.01
    assert cov_m[:, worst].mean() >= lev - 0.01


def test_calibrating_on_training_data_undercovers():
    """The paper's flaw: scores of an over-fitted model on its own training data are too
    small, so the quantile is too small and held-out coverage falls below 1 - alpha."""
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(3000, n_features=8, flip_y=0.1, random_state=5)
    rf = RandomForestClassifier(n_estimators=50, random_state=0).fit(X[:1000], y[:1000])
    bad = SplitConformalClassifier(rf, confidence_level=0.9).conformalize(X[:1000], y[:1000])
    good = SplitConformalClassifier(rf, confidence_level=0.9).conformalize(X[1000:2000], y[1000:2000])
    cov_bad = coverage_score(y[2000:], bad.predict_set(X[2000:])[1])[0]
    cov_good = coverage_score(y[2000:], good.predict_set(X[2000:])[1])[0]
    assert cov_bad < 0.87 < 0.88 <= cov_good


# ----------------------------------------------------------------------- API
class TestAPI:
    def test_shapes_attributes_and_single_level(self, data3):
        clf, Xc, yc, Xt, yt = data3
        cp = SplitConformalClassifier(clf, confidence_level=0.9, mondrian=True)
        assert not hasattr(cp, "quantiles_")
        assert cp.conformalize(Xc, yc) is cp
        assert cp.quantiles_.shape == (3, 1)
        assert cp.n_calibration_.sum() == len(yc)
        labels, sets = cp.predict_set(Xt)
        assert labels.shape == (len(Xt),) and sets.shape == (len(Xt), 3, 1)
        assert sets.dtype == bool
        np.testing.assert_array_equal(cp.classes_, clf.classes_)
        np.testing.assert_allclose(cp.alphas_, [0.1])
        assert per_class_coverage(yt, sets).shape == (3, 1)
        assert set_size_counts(sets).sum() == len(Xt)

    def test_string_labels(self, data3):
        clf, Xc, yc, Xt, yt = data3
        names = np.array(["a", "b", "c"])
        clf2 = LogisticRegression(max_iter=500).fit(Xc, names[yc])
        X2, y2 = Xt[:350], names[yt[:350]]
        cp = SplitConformalClassifier(clf2, confidence_level=0.9).conformalize(X2, y2)
        labels, sets = cp.predict_set(Xt[350:])
        assert set(labels) <= set(names)
        assert 0.8 < coverage_score(names[yt[350:]], sets, classes=cp.classes_)[0] <= 1.0

    def test_prefit_false_fits_a_clone(self, data3):
        clf, Xc, yc, Xt, yt = data3
        base = LogisticRegression(max_iter=500)
        cp = SplitConformalClassifier(base, prefit=False).fit(Xc, yc).conformalize(Xt, yt)
        assert not hasattr(base, "coef_") and hasattr(cp.estimator_, "coef_")

    def test_randomized_int_seed_repeatable(self, data3):
        clf, Xc, yc, Xt, _ = data3
        cp = SplitConformalClassifier(clf, conformity_score="raps", random_state=0)
        cp.conformalize(Xc, yc)
        np.testing.assert_array_equal(cp.predict_set(Xt)[1], cp.predict_set(Xt)[1])

    def test_too_few_calibration_points_warns_and_includes_all(self, data3):
        clf, Xc, yc, Xt, _ = data3
        cp = SplitConformalClassifier(clf, confidence_level=0.99)
        with pytest.warns(UserWarning, match="Too few calibration samples"):
            cp.conformalize(Xc[:50], yc[:50])
        assert np.isinf(cp.quantiles_).all()
        assert cp.predict_set(Xt)[1].all()

    def test_repr(self, data3):
        cp = SplitConformalClassifier(data3[0], conformity_score="aps", mondrian=True)
        r = repr(cp)
        assert "conformity_score='aps'" in r and "mondrian=True" in r and "prefit" not in r


class TestErrors:
    def test_conformalize_before_fit(self):
        cp = SplitConformalClassifier(LogisticRegression(), prefit=False)
        with pytest.raises(ValueError, match="Incorrect method order: call fit before calling conformalize"):
            cp.conformalize(np.zeros((4, 2)), np.array([0, 1, 0, 1]))

    @pytest.mark.parametrize("method", ["predict_set", "predict"])
    def test_predict_before_conformalize(self, data3, method):
        cp = SplitConformalClassifier(data3[0])
        with pytest.raises(ValueError, match=f"Incorrect method order: call conformalize before calling {method}"):
            getattr(cp, method)(data3[3])

    def test_fit_in_prefit_mode(self, data3):
        cp = SplitConformalClassifier(data3[0], prefit=True)
        with pytest.raises(ValueError, match="fit method must be skipped when the prefit"):
            cp.fit(data3[1], data3[2])

    def test_conformalize_twice(self, data3):
        clf, Xc, yc, *_ = data3
        cp = SplitConformalClassifier(clf).conformalize(Xc, yc)
        with pytest.raises(ValueError, match="conformalize method already called"):
            cp.conformalize(Xc, yc)

    @pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.1, [0.9, 1.2], float("nan")])
    def test_bad_confidence_level_value(self, data3, bad):
        cp = SplitConformalClassifier(data3[0], confidence_level=bad)
        with pytest.raises(ValueError, match="'confidence_level' parameter .* must be in the open interval"):
            cp.conformalize(data3[1], data3[2])

    @pytest.mark.parametrize("bad", ["0.9", None, [0.9, "x"], True])
    def test_bad_confidence_level_type(self, data3, bad):
        cp = SplitConformalClassifier(data3[0], confidence_level=bad)
        with pytest.raises(TypeError, match="'confidence_level' parameter"):
            cp.conformalize(data3[1], data3[2])

    def test_empty_confidence_list(self, data3):
        with pytest.raises(ValueError, match="must not be empty"):
            SplitConformalClassifier(data3[0], confidence_level=[]).conformalize(data3[1], data3[2])

    def test_bad_score(self, data3):
        with pytest.raises(ValueError, match="'conformity_score' parameter .* must be one of"):
            SplitConformalClassifier(data3[0], conformity_score="naive").conformalize(data3[1], data3[2])

    @pytest.mark.parametrize("kw,match", [
        ({"k_reg": -1}, "'k_reg' parameter"), ({"lambda_reg": -0.1}, "'lambda_reg' parameter"),
        ({"mondrian": "yes"}, "'mondrian' parameter"), ({"random_state": "seed"}, "'random_state' parameter"),
    ])
    def test_bad_params(self, data3, kw, match):
        with pytest.raises((ValueError, TypeError), match=match):
            SplitConformalClassifier(data3[0], **kw).conformalize(data3[1], data3[2])

    def test_estimator_without_predict_proba(self, data3):
        with pytest.raises(TypeError, match="must have a predict_proba method"):
            SplitConformalClassifier(object()).conformalize(data3[1], data3[2])

    def test_unknown_label(self, data3):
        clf, Xc, yc, *_ = data3
        y = yc.copy()
        y[0] = 7
        with pytest.raises(ValueError, match=r"labels not in classes \[0, 1, 2\]: \[7\]"):
            SplitConformalClassifier(clf).conformalize(Xc, y)

    def test_length_mismatch(self, data3):
        clf, Xc, yc, *_ = data3
        with pytest.raises(ValueError, match="X has 500 samples, y_conformalize has 499"):
            SplitConformalClassifier(clf).conformalize(Xc, yc[:-1])

    def test_2d_y(self, data3):
        clf, Xc, yc, *_ = data3
        with pytest.raises(ValueError, match=r"y_conformalize must be 1-D .* got shape \(500, 1\)"):
            SplitConformalClassifier(clf).conformalize(Xc, yc[:, None])

    def test_sigmoid_column_rejected(self, data3):
        class Sig:
            def predict_proba(self, X):
                return np.full((len(X), 1), 0.5)

        with pytest.raises(ValueError, match=r"must return shape \(n_samples, n_classes\); got shape \(500, 1\)"):
            SplitConformalClassifier(Sig()).conformalize(data3[1], data3[2])

    def test_bad_sets_for_metrics(self):
        with pytest.raises(ValueError, match="sets must be a boolean array of shape"):
            coverage_score([0, 1], np.zeros(2, bool))
        with pytest.raises(ValueError, match="same number of samples; got 3 and 2"):
            coverage_score([0, 1, 1], np.zeros((2, 2), bool))
        with pytest.raises(ValueError, match="sets must be boolean"):
            mean_set_size(np.full((2, 2), 0.5))


# ----------------------------------------------------------------------- qnn models
def test_torch_model_through_adapter():
    """A torch sigmoid model, seen through qnn.explain.as_predict_proba, is conformalised."""
    import torch

    from qnn.explain import as_predict_proba

    torch.manual_seed(0)
    X, y = make_classification(900, n_features=4, random_state=3)
    net = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Sigmoid())
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    Xt, yt = torch.tensor(X[:300], dtype=torch.float32), torch.tensor(y[:300], dtype=torch.float32)
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy(net(Xt).squeeze(-1), yt).backward()
        opt.step()

    class TorchEstimator:
        classes_ = np.array([0, 1])
        predict_proba = staticmethod(as_predict_proba(net))

    cp = SplitConformalClassifier(TorchEstimator(), confidence_level=[0.8, 0.9], mondrian=True)
    labels, sets = cp.conformalize(X[300:600], y[300:600]).predict_set(X[600:])
    assert sets.shape == (300, 2, 2)
    assert (coverage_score(y[600:], sets) > [0.7, 0.8]).all()


def test_kacq_classifier():
    models = pytest.importorskip("qnn.models", reason="qnn.models (KACQClassifier) not importable")
    X, y = make_classification(160, n_features=11, random_state=4)
    X = (X - X.min(0)) / (X.max(0) - X.min(0))
    clf = models.KACQClassifier(epochs=1, seed=0, verbose=False).fit(X[:60], y[:60])
    cp = SplitConformalClassifier(clf, confidence_level=0.8, conformity_score="aps").conformalize(X[60:110], y[60:110])
    labels, sets = cp.predict_set(X[110:])
    assert sets.shape == (50, 2, 1) and set(labels) <= {0, 1}
    np.testing.assert_array_equal(cp.classes_, [0, 1])


class _CountingEstimator:
    """Counts the rows sent through predict_proba / predict (model evaluations)."""

    classes_ = np.array([0, 1, 2])

    def __init__(self, clf):
        self.clf, self.proba_calls, self.predict_calls = clf, 0, 0

    def predict_proba(self, X):
        self.proba_calls += 1
        return self.clf.predict_proba(X)

    def predict(self, X):
        self.predict_calls += 1
        return self.clf.predict(X)


def test_predict_set_and_predict_proba_set_evaluate_the_model_once(data3):
    clf, Xc, yc, Xt, _ = data3
    est = _CountingEstimator(clf)
    cp = SplitConformalClassifier(est, confidence_level=[0.8, 0.9]).conformalize(Xc, yc)
    est.proba_calls = 0
    labels, sets = cp.predict_set(Xt)
    assert (est.proba_calls, est.predict_calls) == (1, 0)
    proba, sets2 = cp.predict_proba_set(Xt)
    assert (est.proba_calls, est.predict_calls) == (2, 0)
    np.testing.assert_array_equal(proba, clf.predict_proba(Xt))
    np.testing.assert_array_equal(sets, sets2)
    np.testing.assert_array_equal(labels, clf.classes_[proba.argmax(1)])
    # LAC: label j is in the set iff 1 - p_j <= q_hat
    np.testing.assert_array_equal(sets2[:, :, 1], 1 - proba <= cp.quantiles_[1] + 1e-8)


def test_predict_proba_set_before_conformalize(data3):
    clf = data3[0]
    with pytest.raises(ValueError, match="call conformalize before calling predict_proba_set"):
        SplitConformalClassifier(clf).predict_proba_set(data3[3])
