"""Split conformal classification: LAC, APS and RAPS scores, standard or Mondrian.

The API follows MAPIE v1 (``SplitConformalClassifier``): state a ``confidence_level``
(``1 - alpha``), then ``fit`` (skipped when ``prefit=True``) -> ``conformalize`` on a
calibration set disjoint from the training data -> ``predict_set``.  Any estimator with a
``predict_proba(X) -> (n_samples, n_classes)`` method works (scikit-learn models, qnn torch
models wrapped as estimators, ...).

Conformity scores (higher = less conforming; ``p`` = predicted class probabilities):

* ``"lac"`` (Sadinle, Lei & Wasserman 2019; MAPIE's ``"lac"``, formerly ``"score"``):
  ``s(x, y) = 1 - p_y(x)``.
* ``"aps"`` (Romano, Sesia & Candes 2020): sort the labels by decreasing probability and let
  ``c_y`` be the cumulated probability up to *and including* ``y``.  Randomised (default):
  ``s(x, y) = c_y - u * p_y`` with ``u ~ U(0, 1)`` drawn once per sample; non-randomised:
  ``s(x, y) = c_y``.
* ``"raps"`` (Angelopoulos, Bates, Malik & Jordan 2021): the APS score plus
  ``lambda_reg * max(0, rank(y) - k_reg)`` (``rank`` 1-based), which penalises large sets.

Whatever the score, the prediction set is exactly ``{y : s(x, y) <= q_hat}`` (with the same
``u`` for all labels of one test sample), so the calibration scores and the test scores are
exchangeable and ``P(y in C(x)) >= 1 - alpha`` holds in finite samples.  Sets may be empty
(LAC, randomised APS/RAPS).  A tolerance of ``1e-8`` is added to ``q_hat`` in the comparison,
as in MAPIE, so floating-point ties are included.

Quantile: with ``n`` calibration scores, ``q_hat`` is the ``k``-th smallest score,
``k = ceil((n + 1)(1 - alpha))`` -- the split-conformal order statistic, equal to
``np.quantile(scores, k / n, method="lower")`` (what MAPIE 1.6 computes).  Note that
``method="higher"`` at level ``k / n`` returns the ``(k+1)``-th smallest score when
``k < n``, one order statistic more conservative than needed.  When ``k > n`` (too few
calibration points for the requested level: ``n < 1/alpha - 1``), ``q_hat = +inf`` and every
set contains every label; a :class:`UserWarning` says so.  With ``mondrian=True`` the
quantile is computed per class from the calibration points of that class (``n`` is then
the class count) and label ``y`` enters the set iff ``s(x, y) <= q_hat[y]``, which gives
``P(y in C(x) | Y = y) >= 1 - alpha`` for every class.

Differences with MAPIE 1.6 (checked in ``tests/test_conformal.py``):

* LAC: identical quantiles and sets.
* APS: MAPIE always randomises the calibration scores (``c_y - u p_y``) and, by default
  (``include_last_label=True``), deterministically includes the label whose cumulated
  probability first reaches ``q_hat`` at prediction time -- a conservative hybrid.  Our
  ``randomized=True`` equals MAPIE with ``include_last_label="randomized"`` (same scores, same
  sets when both use the same random stream); ``randomized=False`` is the deterministic
  variant ``s = c_y`` of Angelopoulos & Bates' tutorial, which MAPIE does not offer.
* RAPS: MAPIE tunes ``k_reg`` / ``lambda`` on a held-out part of the calibration data; here
  they are given by the user (defaults ``k_reg=1``, ``lambda_reg=0.01``).
"""

from __future__ import annotations

import math
import numbers
import warnings
from decimal import Decimal
from typing import Any, Iterable

import numpy as np
from sklearn.base import clone
from sklearn.utils import check_random_state

__all__ = [
    "SplitConformalClassifier",
    "conformity_scores",
    "conformal_quantile",
    "coverage_score",
    "mean_set_size",
    "per_class_coverage",
    "set_size_counts",
]

SCORES = ("lac", "aps", "raps")
_EPS = 1e-8


# --------------------------------------------------------------------------- helpers
def _as_levels(confidence_level: Any, owner: str = "SplitConformalClassifier") -> list[float]:
    """Validate ``confidence_level`` (a float or a non-empty iterable of floats in (0, 1))."""
    if isinstance(confidence_level, (str, bytes)) or confidence_level is None:
        raise TypeError(
            f"The 'confidence_level' parameter of {owner} must be a float in (0, 1) or a list "
            f"of such floats. Got {confidence_level!r} instead."
        )
    levels = (
        list(confidence_level)
        if isinstance(confidence_level, Iterable)
        else [confidence_level]
    )
    if len(levels) == 0:
        raise ValueError(
            f"The 'confidence_level' parameter of {owner} must not be empty. Got "
            f"{confidence_level!r} instead."
        )
    out = []
    for c in levels:
        if isinstance(c, bool) or not isinstance(c, numbers.Real):
            raise TypeError(
                f"The 'confidence_level' parameter of {owner} must be a float in (0, 1) or a "
                f"list of such floats. Got {c!r} instead."
            )
        if not (0.0 < float(c) < 1.0) or not math.isfinite(float(c)):
            raise ValueError(
                f"The 'confidence_level' parameter of {owner} must be in the open interval "
                f"(0, 1). Got {c!r} instead."
            )
        out.append(float(c))
    return out


def _order_index(n: int, confidence_level: float) -> int:
    """``k = ceil((n + 1) * confidence_level)`` computed in exact decimal arithmetic."""
    k = (Decimal(n + 1) * Decimal(str(confidence_level))).to_integral_value(rounding="ROUND_CEILING")
    return int(k)


def conformal_quantile(scores: Any, confidence_level: float) -> float:
    """Split-conformal quantile: the ``ceil((n+1)(1-alpha))``-th smallest score.

    Args:
        scores: calibration conformity scores, shape ``(n,)``.
        confidence_level: ``1 - alpha`` in (0, 1).

    Returns:
        ``q_hat`` (``+inf`` when ``ceil((n+1)(1-alpha)) > n``, i.e. too few scores).

    Example:
        >>> conformal_quantile([0.1, 0.2, 0.3, 0.4], 0.6)  # k = ceil(5 * 0.6) = 3
        0.3
    """
    s = np.asarray(scores, dtype=float).ravel()
    (level,) = _as_levels(confidence_level, owner="conformal_quantile")
    n = s.size
    if n == 0:
        return math.inf
    k = _order_index(n, level)
    if k > n:
        return math.inf
    return float(np.partition(s, k - 1)[k - 1])


def _sorted_stats(proba: np.ndarray):
    """Per-label cumulated probability (incl. the label) and 1-based rank, original order."""
    order = np.argsort(-proba, axis=1, kind="stable")
    sorted_p = np.take_along_axis(proba, order, axis=1)
    cum_sorted = np.cumsum(sorted_p, axis=1)
    inv = np.argsort(order, axis=1)
    cum = np.take_along_axis(cum_sorted, inv, axis=1)
    rank = inv + 1
    return cum, rank


def conformity_scores(
    proba: Any,
    *,
    score: str = "lac",
    u: np.ndarray | None = None,
    k_reg: int = 1,
    lambda_reg: float = 0.01,
) -> np.ndarray:
    """Conformity score of every (sample, label) pair.

    Args:
        proba: predicted probabilities, shape ``(n_samples, n_classes)``.
        score: ``"lac"``, ``"aps"`` or ``"raps"``.
        u: uniform draws of shape ``(n_samples,)`` for randomised APS/RAPS, ``None`` for the
            non-randomised variants (ignored for LAC).
        k_reg: RAPS: number of labels that are not penalised.
        lambda_reg: RAPS: penalty per extra label.

    Returns:
        Array of shape ``(n_samples, n_classes)``; the set at threshold ``q`` is
        ``scores <= q``.

    Example:
        >>> conformity_scores([[0.7, 0.3]], score="aps")
        array([[0.7, 1. ]])
    """
    p = np.asarray(proba, dtype=float)
    if p.ndim != 2:
        raise ValueError(f"proba must have shape (n_samples, n_classes); got shape {p.shape}")
    if score == "lac":
        return 1.0 - p
    if score not in ("aps", "raps"):
        raise ValueError(f"score must be one of {list(SCORES)}; got {score!r}")
    cum, rank = _sorted_stats(p)
    s = cum.copy()
    if u is not None:
        u = np.asarray(u, dtype=float).reshape(-1, 1)
        if u.shape[0] != p.shape[0]:
            raise ValueError(f"u must have shape ({p.shape[0]},); got {u.shape[0]} values")
        s = s - u * p
    if score == "raps":
        s = s + lambda_reg * np.maximum(0, rank - k_reg)
    return s


def _check_sets(sets: Any) -> np.ndarray:
    s = np.asarray(sets)
    if s.ndim not in (2, 3):
        raise ValueError(
            "sets must be a boolean array of shape (n_samples, n_classes) or "
            f"(n_samples, n_classes, n_levels); got shape {s.shape}"
        )
    if s.dtype != bool:
        if not np.isin(s, (0, 1)).all():
            raise ValueError("sets must be boolean (or 0/1); got other values")
        s = s.astype(bool)
    return s


def _y_index(y: Any, n_samples: int, classes: Any | None, n_classes: int) -> np.ndarray:
    y = np.asarray(y).ravel()
    if y.shape[0] != n_samples:
        raise ValueError(
            f"y and sets must have the same number of samples; got {y.shape[0]} and {n_samples}"
        )
    if classes is None:
        classes = np.arange(n_classes)
    classes = np.asarray(classes)
    if classes.shape[0] != n_classes:
        raise ValueError(
            f"classes must have {n_classes} entries (one per set column); got {classes.shape[0]}"
        )
    idx = np.searchsorted(classes, y) if np.all(classes[:-1] <= classes[1:]) else None
    if idx is None or np.any(idx >= n_classes) or np.any(classes[np.minimum(idx, n_classes - 1)] != y):
        lookup = {c: i for i, c in enumerate(classes.tolist())}
        bad = [v for v in y.tolist() if v not in lookup]
        if bad:
            raise ValueError(
                f"y contains labels not in classes {classes.tolist()}: {sorted(set(bad))[:5]}"
            )
        idx = np.array([lookup[v] for v in y.tolist()])
    return idx


def coverage_score(y_true: Any, sets: Any, classes: Any | None = None) -> np.ndarray:
    """Fraction of samples whose true label is in the prediction set.

    Args:
        y_true: labels, shape ``(n_samples,)``.
        sets: boolean sets, shape ``(n_samples, n_classes)`` or
            ``(n_samples, n_classes, n_levels)``.
        classes: the label of each set column (default ``0..n_classes-1``).

    Returns:
        Array of shape ``(n_levels,)`` (``(1,)`` for 2-D sets).

    Example:
        >>> import numpy as np
        >>> coverage_score([0, 1], np.array([[True, False], [True, False]]))
        array([0.5])
    """
    s = _check_sets(sets)
    if s.ndim == 2:
        s = s[:, :, None]
    idx = _y_index(y_true, s.shape[0], classes, s.shape[1])
    hit = s[np.arange(s.shape[0]), idx, :]
    return hit.mean(axis=0)


def per_class_coverage(y_true: Any, sets: Any, classes: Any | None = None) -> np.ndarray:
    """Coverage within each true class, shape ``(n_classes, n_levels)`` (NaN for absent classes).

    Example:
        >>> import numpy as np
        >>> per_class_coverage([0, 1, 1], np.array([[1, 0], [0, 1], [1, 0]], bool))
        array([[1. ],
               [0.5]])
    """
    s = _check_sets(sets)
    if s.ndim == 2:
        s = s[:, :, None]
    idx = _y_index(y_true, s.shape[0], classes, s.shape[1])
    hit = s[np.arange(s.shape[0]), idx, :]
    out = np.full((s.shape[1], s.shape[2]), np.nan)
    for c in range(s.shape[1]):
        m = idx == c
        if m.any():
            out[c] = hit[m].mean(axis=0)
    return out


def mean_set_size(sets: Any) -> np.ndarray:
    """Mean number of labels per set, shape ``(n_levels,)``.

    Example:
        >>> import numpy as np
        >>> mean_set_size(np.array([[True, True], [False, True]]))
        array([1.5])
    """
    s = _check_sets(sets)
    if s.ndim == 2:
        s = s[:, :, None]
    return s.sum(axis=1).mean(axis=0)


def set_size_counts(sets: Any) -> np.ndarray:
    """How many sets have size 0, 1, ..., n_classes: shape ``(n_classes + 1, n_levels)``.

    Example:
        >>> import numpy as np
        >>> set_size_counts(np.array([[True, True], [False, True], [False, False]]))[:, 0]
        array([1, 1, 1])
    """
    s = _check_sets(sets)
    if s.ndim == 2:
        s = s[:, :, None]
    sizes = s.sum(axis=1)
    return np.stack(
        [(sizes == k).sum(axis=0) for k in range(s.shape[1] + 1)], axis=0
    )


# --------------------------------------------------------------------------- estimator
class SplitConformalClassifier:
    """Split conformal classifier (MAPIE v1 style) with LAC, APS, RAPS and Mondrian calibration.

    Parameters
    ----------
    estimator : object with ``predict_proba`` (and ``fit`` when ``prefit=False``)
        The base classifier.  With ``prefit=True`` it must already be fitted.
    confidence_level : float or list of float, default=0.9
        Target coverage ``1 - alpha`` for each level, each in (0, 1).
    conformity_score : {"lac", "aps", "raps"}, default="lac"
    mondrian : bool, default=False
        Class-conditional (Mondrian) calibration: one quantile per class.
    prefit : bool, default=True
        ``True``: the estimator is fitted already, ``fit`` must not be called.
        ``False``: ``fit(X_train, y_train)`` fits a clone of the estimator first.
    randomized : bool, default=True
        APS/RAPS only: use the randomised score ``c_y - u p_y`` (exact ``1 - alpha``
        coverage on average, possibly empty sets) instead of the deterministic ``c_y``
        (coverage ``>= 1 - alpha``, larger sets, not empty).
    k_reg : int, default=1
        RAPS: labels ranked ``<= k_reg`` are not penalised.
    lambda_reg : float, default=0.01
        RAPS: penalty per label ranked beyond ``k_reg``.
    random_state : int, RandomState instance or None, default=None
        Source of the uniform draws of randomised APS/RAPS.  With an ``int``, calibration
        uses the first ``n_cal`` draws of ``RandomState(seed)`` and every ``predict_set`` call
        the next ``n_test`` ones (so repeated calls give the same sets); with a
        ``RandomState`` instance the stream simply continues (MAPIE's behaviour).

    Attributes
    ----------
    estimator_ : the fitted base estimator.
    classes_ : ndarray of shape (n_classes,)
    confidence_levels_ : ndarray of shape (n_levels,)
    alphas_ : ndarray of shape (n_levels,)
    conformity_scores_ : ndarray of shape (n_cal,)
        Calibration scores of the true labels.
    quantiles_ : ndarray of shape (n_levels,) or (n_classes, n_levels) when ``mondrian``
    n_calibration_ : int, or ndarray of per-class counts when ``mondrian``

    Example:
        >>> from sklearn.datasets import make_classification
        >>> from sklearn.linear_model import LogisticRegression
        >>> X, y = make_classification(600, random_state=0)
        >>> clf = LogisticRegression().fit(X[:300], y[:300])
        >>> cp = SplitConformalClassifier(clf, confidence_level=[0.8, 0.9])
        >>> labels, sets = cp.conformalize(X[300:500], y[300:500]).predict_set(X[500:])
        >>> sets.shape
        (100, 2, 2)
    """

    def __init__(
        self,
        estimator: Any = None,
        *,
        confidence_level: float | Iterable[float] = 0.9,
        conformity_score: str = "lac",
        mondrian: bool = False,
        prefit: bool = True,
        randomized: bool = True,
        k_reg: int = 1,
        lambda_reg: float = 0.01,
        random_state: Any = None,
    ) -> None:
        self.estimator = estimator
        self.confidence_level = confidence_level
        self.conformity_score = conformity_score
        self.mondrian = mondrian
        self.prefit = prefit
        self.randomized = randomized
        self.k_reg = k_reg
        self.lambda_reg = lambda_reg
        self.random_state = random_state

    # sklearn-style parameter access (so that the object can be cloned / repr'd)
    def get_params(self, deep: bool = False) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "estimator", "confidence_level", "conformity_score", "mondrian", "prefit",
                "randomized", "k_reg", "lambda_reg", "random_state",
            )
        }

    def set_params(self, **params: Any) -> "SplitConformalClassifier":
        valid = self.get_params()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(
                    f"Invalid parameter {k!r} for SplitConformalClassifier; valid parameters "
                    f"are {sorted(valid)}"
                )
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        defaults = SplitConformalClassifier().get_params()
        parts = []
        for k, v in self.get_params().items():
            if k == "estimator":
                parts.append(repr(v))
            elif v != defaults[k]:
                parts.append(f"{k}={v!r}")
        return f"SplitConformalClassifier({', '.join(parts)})"

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        name = type(self).__name__
        if self.estimator is None or not hasattr(self.estimator, "predict_proba"):
            raise TypeError(
                f"The 'estimator' parameter of {name} must have a predict_proba method. Got "
                f"{type(self.estimator).__name__} instead."
            )
        _as_levels(self.confidence_level, name)
        if self.conformity_score not in SCORES:
            raise ValueError(
                f"The 'conformity_score' parameter of {name} must be one of {list(SCORES)}. "
                f"Got {self.conformity_score!r} instead."
            )
        for flag in ("mondrian", "prefit", "randomized"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise TypeError(
                    f"The '{flag}' parameter of {name} must be a bool. Got "
                    f"{getattr(self, flag)!r} instead."
                )
        if isinstance(self.k_reg, bool) or not isinstance(self.k_reg, numbers.Integral) or self.k_reg < 0:
            raise ValueError(
                f"The 'k_reg' parameter of {name} must be an int >= 0. Got {self.k_reg!r} instead."
            )
        if (
            isinstance(self.lambda_reg, bool)
            or not isinstance(self.lambda_reg, numbers.Real)
            or not self.lambda_reg >= 0
        ):
            raise ValueError(
                f"The 'lambda_reg' parameter of {name} must be a float >= 0. Got "
                f"{self.lambda_reg!r} instead."
            )
        try:
            check_random_state(self.random_state)
        except ValueError as e:
            raise ValueError(
                f"The 'random_state' parameter of {name} must be None, an int or a "
                f"numpy RandomState. Got {self.random_state!r} instead."
            ) from e

    @staticmethod
    def _check_X(X: Any, what: str) -> Any:
        if X is None:
            raise ValueError(f"{what} must not be None")
        n = len(X) if hasattr(X, "__len__") else None
        if n is None:
            raise TypeError(f"{what} must be array-like with a length; got {type(X).__name__}")
        if n == 0:
            raise ValueError(f"{what} must contain at least one sample; got 0")
        return X

    @staticmethod
    def _check_y(y: Any, n: int, what: str) -> np.ndarray:
        y = np.asarray(y)
        if y.ndim != 1:
            if y.ndim == 2 and y.shape[1] == 1:
                raise ValueError(
                    f"{what} must be 1-D of shape (n_samples,); got shape {y.shape} "
                    "(use y.ravel())"
                )
            raise ValueError(f"{what} must be 1-D of shape (n_samples,); got shape {y.shape}")
        if y.shape[0] != n:
            raise ValueError(
                f"{what} must have one label per sample: X has {n} samples, {what} has "
                f"{y.shape[0]}"
            )
        return y

    def _proba(self, X: Any) -> np.ndarray:
        p = self.estimator_.predict_proba(X)
        if hasattr(p, "detach"):  # torch tensor
            p = p.detach().cpu().numpy()
        p = np.asarray(p, dtype=float)
        n = len(X)
        if p.ndim == 1 or (p.ndim == 2 and p.shape[1] == 1):
            raise ValueError(
                "predict_proba must return shape (n_samples, n_classes); got shape "
                f"{p.shape} (wrap a sigmoid model with qnn.explain.as_predict_proba)"
            )
        if p.ndim != 2 or p.shape[0] != n:
            raise ValueError(
                f"predict_proba must return shape ({n}, n_classes); got shape {p.shape}"
            )
        if hasattr(self, "classes_") and p.shape[1] != len(self.classes_):
            raise ValueError(
                f"predict_proba returned {p.shape[1]} columns but the estimator has "
                f"{len(self.classes_)} classes"
            )
        if not np.all(np.isfinite(p)) or (p < -1e-6).any() or (p > 1 + 1e-6).any():
            raise ValueError("predict_proba must return finite probabilities in [0, 1]")
        return p

    def _uniforms(self, n: int, offset: int) -> np.ndarray | None:
        if self.conformity_score == "lac" or not self.randomized:
            return None
        if isinstance(self.random_state, numbers.Integral):
            rng = np.random.RandomState(int(self.random_state))
            if offset:
                rng.uniform(size=offset)
            return rng.uniform(size=n)
        return self._rng.uniform(size=n)

    # ------------------------------------------------------------------ lifecycle
    def fit(self, X_train: Any, y_train: Any, fit_params: dict | None = None) -> "SplitConformalClassifier":
        """Fit a clone of the estimator on training data (only when ``prefit=False``).

        Raises:
            ValueError: when ``prefit=True`` or when called twice.
        """
        self._validate_params()
        if self.prefit:
            raise ValueError(
                "The fit method must be skipped when the prefit parameter is set to True. "
                "Use the conformalize method directly after instantiation."
            )
        if getattr(self, "_is_fitted", False):
            raise ValueError("fit method already called; create a new SplitConformalClassifier.")
        self._check_X(X_train, "X_train")
        y_train = self._check_y(y_train, len(X_train), "y_train")
        if not hasattr(self.estimator, "fit"):
            raise TypeError(
                f"prefit=False needs an estimator with a fit method; got "
                f"{type(self.estimator).__name__}"
            )
        try:
            est = clone(self.estimator)
        except TypeError:
            import copy

            est = copy.deepcopy(self.estimator)
        est.fit(X_train, y_train, **(fit_params or {}))
        self.estimator_ = est
        self._is_fitted = True
        return self

    def conformalize(self, X_conformalize: Any, y_conformalize: Any) -> "SplitConformalClassifier":
        """Compute calibration scores and quantiles on data disjoint from the training data.

        Raises:
            ValueError: wrong call order, labels outside ``classes_``, wrong shapes.
        """
        self._validate_params()
        if not self.prefit and not getattr(self, "_is_fitted", False):
            raise ValueError("Incorrect method order: call fit before calling conformalize.")
        if getattr(self, "_is_conformalized", False):
            raise ValueError(
                "conformalize method already called; create a new SplitConformalClassifier to "
                "calibrate again."
            )
        if self.prefit:
            self.estimator_ = self.estimator
        X = self._check_X(X_conformalize, "X_conformalize")
        y = self._check_y(y_conformalize, len(X), "y_conformalize")
        est_classes = getattr(self.estimator_, "classes_", None)
        p = self._proba(X)
        if est_classes is not None:
            classes = np.asarray(est_classes)
        else:
            classes = np.arange(p.shape[1])
        if classes.shape[0] != p.shape[1]:
            raise ValueError(
                f"the estimator has {classes.shape[0]} classes_ but predict_proba returned "
                f"{p.shape[1]} columns"
            )
        self.classes_ = classes
        y_idx = _y_index(y, len(y), classes, len(classes))
        self.confidence_levels_ = np.asarray(_as_levels(self.confidence_level))
        self.alphas_ = np.array(
            [float(Decimal(1) - Decimal(str(c))) for c in self.confidence_levels_]
        )
        self._rng = check_random_state(self.random_state)
        u = self._uniforms(len(y), 0)
        all_scores = conformity_scores(
            p, score=self.conformity_score, u=u, k_reg=self.k_reg, lambda_reg=self.lambda_reg
        )
        s = all_scores[np.arange(len(y)), y_idx]
        self.conformity_scores_ = s
        self.n_calibration_ = len(y)
        levels = self.confidence_levels_
        if self.mondrian:
            q = np.empty((len(classes), len(levels)))
            counts = np.bincount(y_idx, minlength=len(classes))
            for c in range(len(classes)):
                for j, lev in enumerate(levels):
                    q[c, j] = conformal_quantile(s[y_idx == c], lev)
            self.n_calibration_ = counts
            bad = [(classes[c], lev) for c in range(len(classes)) for j, lev in enumerate(levels) if np.isinf(q[c, j])]
            if bad:
                warnings.warn(
                    "Too few calibration samples in some classes for the requested level "
                    f"(class, confidence_level) = {bad[:5]} (counts {counts.tolist()}): "
                    "those labels are always included in the sets (quantile = +inf).",
                    UserWarning,
                    stacklevel=2,
                )
        else:
            q = np.array([conformal_quantile(s, lev) for lev in levels])
            if np.isinf(q).any():
                warnings.warn(
                    f"Too few calibration samples ({len(y)}) for confidence_level "
                    f"{levels[np.isinf(q)].tolist()}: need n >= 1/alpha - 1; every label is "
                    "included in the sets (quantile = +inf).",
                    UserWarning,
                    stacklevel=2,
                )
        self.quantiles_ = q
        self._n_cal_draws = len(y)
        self._is_conformalized = True
        return self

    def _check_conformalized(self, method: str) -> None:
        if not getattr(self, "_is_conformalized", False):
            raise ValueError(f"Incorrect method order: call conformalize before calling {method}.")

    def predict(self, X: Any) -> np.ndarray:
        """Point predictions: the estimator's ``predict`` or the most probable class."""
        self._check_conformalized("predict")
        self._check_X(X, "X")
        if hasattr(self.estimator_, "predict"):
            out = np.asarray(self.estimator_.predict(X))
            if out.ndim == 1 and out.shape[0] == len(X):
                return out
        return self.classes_[np.argmax(self._proba(X), axis=1)]

    def predict_proba_set(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and prediction sets from one evaluation of the estimator.

        Returns:
            ``(proba, sets)``: ``proba`` of shape ``(n_samples, n_classes)`` as returned by the
            estimator's ``predict_proba`` (called once), boolean ``sets`` of shape
            ``(n_samples, n_classes, n_levels)``; column ``j`` is ``classes_[j]``.
        """
        return self._proba_set(X, "predict_proba_set")

    def _proba_set(self, X: Any, method: str) -> tuple[np.ndarray, np.ndarray]:
        self._check_conformalized(method)
        self._check_X(X, "X")
        p = self._proba(X)
        u = self._uniforms(p.shape[0], self._n_cal_draws)
        s = conformity_scores(
            p, score=self.conformity_score, u=u, k_reg=self.k_reg, lambda_reg=self.lambda_reg
        )
        q = self.quantiles_
        if self.mondrian:
            sets = s[:, :, None] <= q[None, :, :] + _EPS
        else:
            sets = s[:, :, None] <= q[None, None, :] + _EPS
        return p, sets

    def predict_set(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Point predictions and prediction sets, from one evaluation of the estimator.

        The point prediction is the most probable class of the same probabilities the sets are
        built from (:meth:`predict_proba_set`); the estimator's own ``predict`` is not called.

        Returns:
            ``(labels, sets)`` with ``labels`` of shape ``(n_samples,)`` and boolean ``sets``
            of shape ``(n_samples, n_classes, n_levels)``; column ``j`` is ``classes_[j]``.
        """
        p, sets = self._proba_set(X, "predict_set")
        return self.classes_[np.argmax(p, axis=1)], sets
