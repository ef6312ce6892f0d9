"""SHAP and LIME explanations for any qnn model, with an evaluation budget and a QPU guard.

Every explainer here sees the model through :func:`as_predict_proba`, a numpy function
``(n, d) -> (n, C)`` built from a scikit-learn style estimator (``predict_proba``), a torch
module returning sigmoid probabilities ``(n,)`` / ``(n, 1)`` or class probabilities ``(n, C)``,
or a plain callable.  Before any model evaluation the explainers

* print the number of model evaluations (rows sent through the model) they are about to
  spend, e.g. Kernel SHAP: ``n_background + n_explained * (1 + nsamples * n_background)``;
* refuse, unless ``force=True``, when the model contains a quantum layer whose engine is a
  QPU (engine name ``"ibm"``): explanation workloads are thousands to millions of circuit
  evaluations; explain a simulator twin of the model instead (same weights, ``engine="torch"``).

Explainers:

* :func:`kernel_shap` -- ``shap.KernelExplainer`` with a ``shap.kmeans`` background summary of the
  training data (model-agnostic; additivity ``base + sum(phi) = f(x)`` holds exactly).
* :func:`gradient_shap` -- ``shap.GradientExplainer`` (expected gradients) through torch
  autograd, for torch models whose quantum layers run on a differentiable simulator engine.
* :func:`lime_explain` -- ``lime.lime_tabular.LimeTabularExplainer`` with a fixed ``random_state``;
  :func:`lime_stability` re-runs it over several seeds and scores how stable the feature
  rankings are (mean top-k Jaccard overlap in [0, 1], plus mean pairwise Spearman correlation).

Plots (matplotlib ``Agg``, written as PNG): :meth:`ShapResult.plot_bar`,
:meth:`ShapResult.plot_beeswarm`, :meth:`ShapResult.plot_waterfall`, :meth:`LimeResult.plot`.

Example:
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.random.default_rng(0).random((60, 3)); y = (X[:, 0] > 0.5).astype(int)
    >>> clf = LogisticRegression().fit(X, y)
    >>> res = kernel_shap(clf, X, X[:2], n_background=4, nsamples=6, verbose=False)
    >>> res.values.shape
    (2, 3, 2)
"""

from __future__ import annotations

import itertools
import os
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "PredictProba",
    "QPUWorkloadError",
    "ShapResult",
    "LimeResult",
    "LimeStability",
    "as_predict_proba",
    "find_qpu_engines",
    "check_no_qpu",
    "kernel_shap",
    "kernel_shap_evaluations",
    "gradient_shap",
    "lime_explain",
    "lime_stability",
    "ranking_overlap",
]

QPU_ENGINE_NAMES = frozenset({"ibm"})


class QPUWorkloadError(RuntimeError):
    """An explanation workload would be sent to a QPU engine and ``force`` was not set."""


# =========================================================================== QPU guard
def _engine_name(obj: Any) -> str | None:
    if obj is None:
        return None
    if isinstance(obj, str):
        return obj
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) else None


def _children(obj: Any) -> list[tuple[str, Any]]:
    out = []
    for attr in ("model_", "module_", "estimator_", "model", "module", "estimator", "net", "net_"):
        try:
            child = getattr(obj, attr, None)
        except Exception:  # noqa: BLE001 - properties may raise when unfitted
            child = None
        if child is not None and child is not obj:
            out.append((attr, child))
    return out


def find_qpu_engines(model: Any, qpu_names: Sequence[str] = tuple(QPU_ENGINE_NAMES)) -> list[tuple[str, str]]:
    """List ``(module path, engine name)`` for every submodule running on a QPU engine.

    Looks through torch submodules (``model.named_modules()``), estimator wrappers
    (``model_``, ``module_``, ``estimator_``, ...) and bound methods (``f.__self__``) for an
    ``engine`` attribute (an engine object with ``.name`` or a name string) or an
    ``engine_name`` string, and reports those whose name is in ``qpu_names``.

    Example:
        >>> import torch
        >>> find_qpu_engines(torch.nn.Linear(2, 1))
        []
    """
    qpu = set(qpu_names)
    found: list[tuple[str, str]] = []
    seen: set[int] = set()

    def visit(obj: Any, path: str, depth: int) -> None:
        if obj is None or id(obj) in seen or depth > 4:
            return
        seen.add(id(obj))
        self_ = getattr(obj, "__self__", None)  # bound method, e.g. clf.predict_proba
        if self_ is not None and not isinstance(self_, types.ModuleType):
            visit(self_, path, depth + 1)
        named = getattr(obj, "named_modules", None)
        mods = list(named()) if callable(named) else [("", obj)]
        for sub, m in mods:
            where = ".".join(p for p in (path, sub) if p) or type(m).__name__
            for attr in ("engine", "engine_name"):
                try:
                    name = _engine_name(getattr(m, attr, None))
                except Exception:  # noqa: BLE001
                    name = None
                obj_ = getattr(m, attr, None) if attr == "engine" else None
                caps = getattr(obj_, "capabilities", None) if obj_ is not None and not isinstance(obj_, str) else None
                hardware = bool(getattr(caps, "hardware", False)) if caps is not None else name in qpu
                if hardware and name is not None and (where, name) not in found:
                    found.append((where, name))
        for attr, child in _children(obj):
            visit(child, f"{path}.{attr}" if path else attr, depth + 1)

    visit(model, "", 0)
    return found


def check_no_qpu(model: Any, n_evaluations: int, *, what: str = "explanation", force: bool = False) -> None:
    """Raise :class:`QPUWorkloadError` if ``model`` runs on a hardware engine (one whose
    ``capabilities.hardware`` is True), unless ``force`` or the planner's budget covers the
    workload's cost estimate (:func:`qnn.planner.evaluation_estimate`).

    Example:
        >>> import torch
        >>> check_no_qpu(torch.nn.Linear(2, 1), 1000)  # a simulator/classical model: fine
    """
    hits = find_qpu_engines(model)
    if not hits or force:
        return
    from qnn.planner import evaluation_estimate, planner_of

    est = evaluation_estimate(model, n_evaluations, what)
    planner = planner_of(model)
    budget = getattr(planner, "budget", None)
    if budget is not None and budget.allows(est):
        return
    where = ", ".join(f"{p!r} (engine {n!r})" for p, n in hits)
    raise QPUWorkloadError(
        f"Refusing to send a {what} workload of {n_evaluations:,} model evaluations to a QPU "
        f"engine: {where}; estimated {est.circuits:,} circuits, {est.jobs:,} jobs, ~{est.qpu_seconds:,.0f} QPU s"
        f"{'' if budget is None else f', over the planner budget {budget!r}'}. Explain a simulator twin of the "
        "model (same weights, engine='torch'), give the planner a Budget that covers it, or pass force=True "
        "to spend the QPU time anyway."
    )


# =========================================================================== adapter
class PredictProba:
    """Numpy ``predict_proba`` view of a model: ``(n, d) float -> (n, C)`` probabilities.

    Counts what it spends: ``n_calls`` and ``n_rows`` (model evaluations).  Build it with
    :func:`as_predict_proba`.
    """

    def __init__(self, fn: Callable[[np.ndarray], Any], *, n_features: int | None, source: Any,
                 output: str = "proba") -> None:
        self._fn = fn
        self.n_features = n_features
        self.source = source
        self.output = output
        self.n_calls = 0
        self.n_rows = 0
        self.n_classes: int | None = None

    def __call__(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            raise ValueError(
                f"predict_proba expects a 2-D array of shape (n_samples, n_features); got shape "
                f"{X.shape} (use X.reshape(1, -1) for one sample)"
            )
        if X.ndim != 2:
            raise ValueError(f"predict_proba expects shape (n_samples, n_features); got shape {X.shape}")
        if self.n_features is not None and X.shape[1] != self.n_features:
            raise ValueError(
                f"predict_proba expects {self.n_features} features; got {X.shape[1]}"
            )
        out = self._fn(X)
        if hasattr(out, "detach"):
            out = out.detach().cpu().numpy()
        p = np.asarray(out, dtype=float)
        self.n_calls += 1
        self.n_rows += X.shape[0]
        p = _to_class_probs(p, X.shape[0], self.output)
        self.n_classes = p.shape[1]
        return p

    def __repr__(self) -> str:
        return f"PredictProba({type(self.source).__name__}, n_rows={self.n_rows})"


def _to_class_probs(p: np.ndarray, n: int, output: str) -> np.ndarray:
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2 or p.shape[0] != n:
        raise ValueError(
            f"the model must return shape ({n},), ({n}, 1) or ({n}, n_classes); got shape {p.shape}"
        )
    if output == "logits":
        if p.shape[1] == 1:
            p = 1.0 / (1.0 + np.exp(-p))
        else:
            z = p - p.max(axis=1, keepdims=True)
            p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    if not np.all(np.isfinite(p)):
        raise ValueError("the model returned NaN or infinite outputs")
    if (p < -1e-6).any() or (p > 1 + 1e-6).any():
        raise ValueError(
            "the model outputs are not probabilities in [0, 1] (min "
            f"{p.min():.3g}, max {p.max():.3g}); pass output='logits' if it returns logits"
        )
    if p.shape[1] == 1:
        p = np.concatenate([1.0 - p, p], axis=1)
    elif not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError(
            f"the model returned {p.shape[1]} columns whose rows do not sum to 1; pass "
            "output='logits' for unnormalised scores"
        )
    return p


def _torch_module(obj: Any):
    try:
        import torch.nn as nn
    except ImportError:  # pragma: no cover
        return None
    if isinstance(obj, nn.Module):
        return obj
    for _, child in _children(obj):
        if isinstance(child, nn.Module):
            return child
    return None


def as_predict_proba(model: Any, *, output: str = "proba", n_features: int | None = None,
                     batch_size: int = 4096) -> PredictProba:
    """Turn a model into a numpy ``predict_proba`` function ``(n, d) -> (n, C)``.

    Args:
        model: an object with ``predict_proba`` (scikit-learn, ``qnn.models.KACQClassifier``),
            a ``torch.nn.Module`` (sigmoid output ``(n,)``/``(n, 1)`` -> two columns
            ``[1 - p, p]``; ``(n, C)`` class probabilities), a :class:`PredictProba`, or a
            callable returning such arrays.
        output: ``"proba"`` (the model returns probabilities) or ``"logits"`` (apply a sigmoid
            / softmax).
        n_features: expected number of input columns (checked on every call; inferred from
            ``n_features_in_`` / ``in_features`` when available).
        batch_size: torch modules are evaluated in batches of this many rows, under
            ``torch.no_grad()`` and in ``eval()`` mode, on the module's device.

    Returns:
        A :class:`PredictProba` (callable; counts its calls and rows).

    Example:
        >>> import torch
        >>> f = as_predict_proba(torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Sigmoid()))
        >>> f(np.zeros((4, 3))).shape
        (4, 2)
    """
    if output not in ("proba", "logits"):
        raise ValueError(f"output must be 'proba' or 'logits'; got {output!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    if isinstance(model, PredictProba):
        return model
    if n_features is None:
        n_features = getattr(model, "n_features_in_", None)
    if hasattr(model, "predict_proba") and callable(model.predict_proba):
        return PredictProba(model.predict_proba, n_features=n_features, source=model, output=output)
    mod = _torch_module(model)
    if mod is not None:
        import torch

        if n_features is None:
            n_features = getattr(mod, "in_features", None) or getattr(mod, "n_features", None)

        def fn(X: np.ndarray) -> np.ndarray:
            try:
                p0 = next(mod.parameters())
                device, dtype = p0.device, (p0.dtype if p0.is_floating_point() else torch.float32)
            except StopIteration:
                device, dtype = torch.device("cpu"), torch.float32
            was_training = mod.training
            mod.eval()
            outs = []
            try:
                with torch.no_grad():
                    for s in range(0, len(X), batch_size):
                        xb = torch.as_tensor(X[s : s + batch_size], dtype=dtype, device=device)
                        outs.append(mod(xb).detach().to("cpu", torch.float64).numpy())
            finally:
                mod.train(was_training)
            return np.concatenate(outs, axis=0)

        return PredictProba(fn, n_features=n_features, source=model, output=output)
    if callable(model):
        return PredictProba(model, n_features=n_features, source=model, output=output)
    raise TypeError(
        "as_predict_proba: expected an estimator with predict_proba, a torch.nn.Module or a "
        f"callable; got {type(model).__name__}"
    )


# =========================================================================== helpers
def _check_2d(X: Any, name: str, n_features: int | None = None) -> np.ndarray:
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D of shape (n_samples, n_features); got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} must contain at least one sample; got 0")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features (as the other data); got {X.shape[1]}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return X


def _feature_names(names: Sequence[str] | None, d: int) -> list[str]:
    if names is None:
        return [f"x{i}" for i in range(d)]
    names = [str(n) for n in names]
    if len(names) != d:
        raise ValueError(f"feature_names must have {d} entries (one per feature); got {len(names)}")
    return names


def _check_positive_int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive int; got {v!r}")
    return int(v)


def _announce(msg: str, verbose: bool) -> None:
    if verbose:
        print(f"[qnn.explain] {msg}", flush=True)


def _resolve_class(class_index: int, n_classes: int) -> int:
    k = class_index + n_classes if class_index < 0 else class_index
    if not 0 <= k < n_classes:
        raise ValueError(f"class_index must be in [-{n_classes}, {n_classes - 1}]; got {class_index}")
    return k


def _save(fig, path: str | os.PathLike) -> str:
    import matplotlib.pyplot as plt

    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"plots are written as PNG; the path must end in '.png'; got {path!r}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _agg():
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def ranking_overlap(a: Sequence[str], b: Sequence[str], k: int | None = None) -> dict:
    """Compare two feature rankings (most important first).

    Returns a dict with ``spearman`` (rank correlation over the common features),
    ``kendall`` and ``top_k_jaccard`` (overlap of the first ``k`` entries; ``k`` defaults to 3).

    Example:
        >>> ranking_overlap(["a", "b", "c"], ["a", "c", "b"], k=1)["top_k_jaccard"]
        1.0
    """
    from scipy import stats

    common = [f for f in a if f in set(b)]
    if len(common) < 2:
        raise ValueError(f"rankings must share at least 2 features; got {common}")
    ra = [list(a).index(f) for f in common]
    rb = [list(b).index(f) for f in common]
    k = 3 if k is None else k
    ta, tb = set(list(a)[:k]), set(list(b)[:k])
    return {
        "n_common": len(common),
        "spearman": float(stats.spearmanr(ra, rb).statistic),
        "kendall": float(stats.kendalltau(ra, rb).statistic),
        "top_k": k,
        "top_k_jaccard": len(ta & tb) / len(ta | tb),
    }


# =========================================================================== SHAP
@dataclass
class ShapResult:
    """SHAP values of ``data`` for every class.

    Attributes:
        values: ``(n, d, C)`` attributions.
        base_values: ``(n, C)`` expected model output over the background.
        data: ``(n, d)`` explained inputs.
        predictions: ``(n, C)`` model outputs on ``data``.
        feature_names: ``d`` names.
        method: ``"kernel"`` or ``"gradient"``.
        n_evaluations: model evaluations actually spent (rows; for gradient SHAP: forward rows).
        info: settings (nsamples, background size, ...).
    """

    values: np.ndarray
    base_values: np.ndarray
    data: np.ndarray
    predictions: np.ndarray
    feature_names: list[str]
    method: str
    n_evaluations: int
    info: dict = field(default_factory=dict)

    def explanation(self, class_index: int = -1):
        """A ``shap.Explanation`` for one class (default: the last, i.e. positive, class)."""
        import shap

        k = _resolve_class(class_index, self.values.shape[2])
        return shap.Explanation(
            values=self.values[:, :, k], base_values=self.base_values[:, k], data=self.data,
            feature_names=self.feature_names,
        )

    def additivity_error(self, class_index: int = -1) -> float:
        """``max |base + sum(phi) - f(x)|`` (0 up to solver precision for Kernel SHAP)."""
        k = _resolve_class(class_index, self.values.shape[2])
        recon = self.base_values[:, k] + self.values[:, :, k].sum(axis=1)
        return float(np.max(np.abs(recon - self.predictions[:, k])))

    def global_importance(self, class_index: int = -1) -> dict[str, float]:
        """Mean ``|phi|`` per feature, sorted from most to least important."""
        k = _resolve_class(class_index, self.values.shape[2])
        imp = np.abs(self.values[:, :, k]).mean(axis=0)
        order = np.argsort(-imp, kind="stable")
        return {self.feature_names[i]: float(imp[i]) for i in order}

    def ranking(self, class_index: int = -1) -> list[str]:
        return list(self.global_importance(class_index))

    def plot_bar(self, path: str | os.PathLike, class_index: int = -1, max_display: int = 20) -> str:
        """Global bar plot of mean ``|SHAP|`` (PNG)."""
        plt = _agg()
        import shap

        plt.figure()
        shap.plots.bar(self.explanation(class_index), max_display=max_display, show=False)
        return _save(plt.gcf(), path)

    def plot_beeswarm(self, path: str | os.PathLike, class_index: int = -1, max_display: int = 20) -> str:
        """Beeswarm summary plot (PNG)."""
        plt = _agg()
        import shap

        plt.figure()
        shap.plots.beeswarm(self.explanation(class_index), max_display=max_display, show=False)
        return _save(plt.gcf(), path)

    def plot_waterfall(self, path: str | os.PathLike, index: int = 0, class_index: int = -1,
                       max_display: int = 12) -> str:
        """Waterfall plot of one explained sample (PNG)."""
        if not -len(self.data) <= index < len(self.data):
            raise ValueError(f"index must be in [0, {len(self.data) - 1}]; got {index}")
        plt = _agg()
        import shap

        plt.figure()
        shap.plots.waterfall(self.explanation(class_index)[index], max_display=max_display, show=False)
        return _save(plt.gcf(), path)

    def to_dict(self, class_index: int = -1) -> dict:
        return {
            "method": self.method,
            "n_explained": int(self.values.shape[0]),
            "n_evaluations": int(self.n_evaluations),
            "base_value": float(np.mean(self.base_values[:, _resolve_class(class_index, self.values.shape[2])])),
            "global_importance": self.global_importance(class_index),
            "ranking": self.ranking(class_index),
            "additivity_error": self.additivity_error(class_index) if self.method == "kernel" else None,
            "info": self.info,
        }


def kernel_shap_evaluations(n_explain: int, n_features: int, nsamples: int | str, n_background: int) -> int:
    """Upper bound on the model rows Kernel SHAP evaluates.

    ``n_background`` (base value) ``+ n_explain * (1 + nsamples_eff * n_background)``, where
    ``nsamples_eff = min(nsamples, 2**d - 2)`` (``"auto"``: ``2 d + 2048``).  Features equal
    to every background row in a sample are skipped by shap, so the actual count can be lower.

    Example:
        >>> kernel_shap_evaluations(3, 4, 10, 5)  # 5 + 3 * (1 + 10 * 5)
        158
    """
    ns = 2 * n_features + 2048 if nsamples == "auto" else int(nsamples)
    if n_features <= 30:
        ns = min(ns, 2**n_features - 2)
    return n_background + n_explain * (1 + max(ns, 0) * n_background)


def kernel_shap(
    model: Any,
    X_background: Any,
    X_explain: Any,
    *,
    n_background: int = 10,
    nsamples: int | str = 200,
    feature_names: Sequence[str] | None = None,
    l1_reg: Any = False,
    output: str = "proba",
    seed: int = 0,
    force: bool = False,
    verbose: bool = True,
    progress: bool = False,
) -> ShapResult:
    """Kernel SHAP with a k-means background summary of the training data.

    Args:
        model: anything :func:`as_predict_proba` accepts.
        X_background: training data, ``(n_train, d)``; summarised by ``shap.kmeans`` into
            ``n_background`` weighted centres (each centre's values rounded to the nearest
            observed value per feature, so label codes stay valid).
        X_explain: rows to explain, ``(n, d)``.
        n_background: number of k-means centres.
        nsamples: coalitions per explained row (``"auto"`` = ``2 d + 2048``).
        l1_reg: passed to shap (default ``False``: no feature selection, all features get a value).
        seed: seeds numpy's global RNG used by shap's coalition sampling and k-means.
        force: allow a QPU engine (see module docstring).
        verbose: print the evaluation budget before starting.
        progress: show shap's tqdm bar.

    Returns:
        :class:`ShapResult` with ``values`` of shape ``(n, d, C)``.

    Raises:
        QPUWorkloadError: the model runs on a QPU engine and ``force`` is False.

    Example:
        >>> from sklearn.linear_model import LogisticRegression
        >>> X = np.random.default_rng(0).random((50, 3)); y = (X[:, 1] > 0.5).astype(int)
        >>> r = kernel_shap(LogisticRegression().fit(X, y), X, X[:2], n_background=3, nsamples=6, verbose=False)
        >>> r.additivity_error() < 1e-6
        True
    """
    import shap

    Xb = _check_2d(X_background, "X_background")
    Xe = _check_2d(X_explain, "X_explain", Xb.shape[1])
    d = Xb.shape[1]
    names = _feature_names(feature_names, d)
    n_background = _check_positive_int(n_background, "n_background")
    if n_background > len(Xb):
        raise ValueError(
            f"n_background must be <= the number of background rows ({len(Xb)}); got {n_background}"
        )
    if not (nsamples == "auto" or (isinstance(nsamples, (int, np.integer)) and not isinstance(nsamples, bool) and nsamples >= 1)):
        raise ValueError(f"nsamples must be a positive int or 'auto'; got {nsamples!r}")
    budget = kernel_shap_evaluations(len(Xe), d, nsamples, n_background)
    check_no_qpu(model, budget, what="Kernel SHAP", force=force)
    f = as_predict_proba(model, output=output, n_features=d)
    _announce(
        f"Kernel SHAP: {len(Xe)} rows x {nsamples} coalitions x {n_background} background rows "
        f"= at most {budget:,} model evaluations",
        verbose,
    )
    np.random.seed(seed)
    bg = shap.kmeans(Xb, n_background)
    start = f.n_rows
    explainer = shap.KernelExplainer(f, bg, feature_names=names)
    sv = explainer.shap_values(Xe, nsamples=nsamples, l1_reg=l1_reg, silent=not progress)
    spent = f.n_rows - start
    preds = f(Xe)
    sv = np.asarray(sv)
    if sv.ndim == 2:  # single output
        sv = sv[:, :, None]
    base = np.broadcast_to(np.atleast_1d(np.asarray(explainer.expected_value, dtype=float)),
                           (len(Xe), sv.shape[2])).copy()
    return ShapResult(
        values=sv, base_values=base, data=Xe, predictions=preds, feature_names=names,
        method="kernel", n_evaluations=int(spent),
        info={"nsamples": nsamples, "n_background": n_background, "seed": seed,
              "budget": int(budget), "l1_reg": str(l1_reg)},
    )


class _ProbaModule:
    """Build (lazily, to keep torch optional) an nn.Module returning ``(B, C)`` probabilities."""

    @staticmethod
    def make(module, output: str):
        import torch
        from torch import nn

        class ProbaModule(nn.Module):
            def __init__(self, inner: nn.Module):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                p = self.inner(x)
                if p.ndim == 1:
                    p = p[:, None]
                if output == "logits":
                    p = torch.sigmoid(p) if p.shape[1] == 1 else torch.softmax(p, dim=1)
                if p.shape[1] == 1:
                    p = torch.cat([1 - p, p], dim=1)
                return p

        return ProbaModule(module)


def gradient_shap(
    model: Any,
    X_background: Any,
    X_explain: Any,
    *,
    n_background: int = 50,
    nsamples: int = 200,
    feature_names: Sequence[str] | None = None,
    output: str = "proba",
    seed: int = 0,
    force: bool = False,
    verbose: bool = True,
) -> ShapResult:
    """Expected-gradients SHAP (``shap.GradientExplainer``) through torch autograd.

    For torch models (or estimators holding one in ``model_``) whose quantum layers run on a
    differentiable simulator engine.  The background is ``n_background`` rows sampled from
    ``X_background`` without replacement (seeded).  Cost: ``n_explained * nsamples`` forward
    and backward passes (printed before starting).  Expected gradients satisfy additivity only
    in expectation, so ``additivity_error`` is a sampling error, not zero.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Sigmoid())
        >>> X = np.random.default_rng(0).random((20, 3))
        >>> gradient_shap(net, X, X[:2], n_background=5, nsamples=8, verbose=False).values.shape
        (2, 3, 2)
    """
    import shap
    import torch

    mod = _torch_module(model)
    if mod is None:
        raise TypeError(
            "gradient_shap needs a torch.nn.Module (or an estimator with a torch module in "
            f"model_); got {type(model).__name__}. Use kernel_shap for other models."
        )
    Xb = _check_2d(X_background, "X_background")
    Xe = _check_2d(X_explain, "X_explain", Xb.shape[1])
    d = Xb.shape[1]
    names = _feature_names(feature_names, d)
    n_background = min(_check_positive_int(n_background, "n_background"), len(Xb))
    nsamples = _check_positive_int(nsamples, "nsamples")
    budget = len(Xe) * nsamples
    check_no_qpu(model, budget, what="Gradient SHAP", force=force)
    _announce(
        f"Gradient SHAP: {len(Xe)} rows x {nsamples} samples = {budget:,} forward+backward "
        f"model evaluations (background {n_background} rows)",
        verbose,
    )
    rng = np.random.default_rng(seed)
    bg = Xb[rng.choice(len(Xb), n_background, replace=False)]
    try:
        p0 = next(mod.parameters())
        device, dtype = p0.device, p0.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    wrapped = _ProbaModule.make(mod, output).to(device)
    was_training = mod.training
    mod.eval()
    try:
        explainer = shap.GradientExplainer(wrapped, torch.as_tensor(bg, dtype=dtype, device=device))
        sv = explainer.shap_values(torch.as_tensor(Xe, dtype=dtype, device=device), nsamples=nsamples, rseed=seed)
        with torch.no_grad():
            base = wrapped(torch.as_tensor(bg, dtype=dtype, device=device)).mean(0).cpu().double().numpy()
            preds = wrapped(torch.as_tensor(Xe, dtype=dtype, device=device)).cpu().double().numpy()
    finally:
        mod.train(was_training)
    if isinstance(sv, list):  # pragma: no cover - older shap returns one array per output
        sv = np.stack(sv, axis=-1)
    sv = np.asarray(sv, dtype=float)
    return ShapResult(
        values=sv, base_values=np.broadcast_to(base, (len(Xe), len(base))).copy(), data=Xe,
        predictions=preds, feature_names=names, method="gradient", n_evaluations=int(budget),
        info={"nsamples": nsamples, "n_background": n_background, "seed": seed},
    )


# =========================================================================== LIME
@dataclass
class LimeResult:
    """LIME explanations of ``data`` for one class.

    Attributes:
        weights: ``(n, d)`` local linear weights per feature (0 for features LIME left out).
        conditions: per sample, the list of ``(condition text, weight)`` LIME reports.
        intercepts: ``(n,)``; local_predictions: ``(n,)`` LIME's surrogate at the sample;
        scores: ``(n,)`` R^2 of the surrogate; predictions: ``(n, C)`` model outputs.
        class_index, class_names, feature_names, random_state, n_evaluations.
    """

    weights: np.ndarray
    conditions: list[list[tuple[str, float]]]
    intercepts: np.ndarray
    local_predictions: np.ndarray
    scores: np.ndarray
    predictions: np.ndarray
    data: np.ndarray
    class_index: int
    class_names: list[str]
    feature_names: list[str]
    random_state: int
    n_evaluations: int

    def global_importance(self) -> dict[str, float]:
        """Mean ``|weight|`` per feature, sorted."""
        imp = np.abs(self.weights).mean(axis=0)
        order = np.argsort(-imp, kind="stable")
        return {self.feature_names[i]: float(imp[i]) for i in order}

    def ranking(self) -> list[str]:
        return list(self.global_importance())

    def plot(self, path: str | os.PathLike, index: int = 0, max_display: int = 12) -> str:
        """LIME bar chart for one sample: condition -> weight (PNG)."""
        if not -len(self.data) <= index < len(self.data):
            raise ValueError(f"index must be in [0, {len(self.data) - 1}]; got {index}")
        plt = _agg()
        items = sorted(self.conditions[index], key=lambda t: abs(t[1]), reverse=True)[:max_display][::-1]
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(items) + 1.2))
        ax.barh([c for c, _ in items], [w for _, w in items],
                color=["tab:red" if w > 0 else "tab:blue" for _, w in items])
        ax.axvline(0, color="k", lw=0.8)
        cname = self.class_names[self.class_index]
        ax.set_title(f"LIME, sample {index}: P({cname}) = {self.predictions[index, self.class_index]:.3f}")
        ax.set_xlabel(f"weight toward {cname}")
        return _save(fig, path)

    def plot_global(self, path: str | os.PathLike, max_display: int = 20) -> str:
        """Bar chart of mean ``|weight|`` per feature (PNG)."""
        plt = _agg()
        imp = list(self.global_importance().items())[:max_display][::-1]
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(imp) + 1.2))
        ax.barh([k for k, _ in imp], [v for _, v in imp], color="tab:purple")
        ax.set_xlabel("mean |LIME weight|")
        ax.set_title(f"LIME global importance ({len(self.data)} samples)")
        return _save(fig, path)

    def to_dict(self) -> dict:
        return {
            "n_explained": int(len(self.data)),
            "n_evaluations": int(self.n_evaluations),
            "random_state": self.random_state,
            "class": self.class_names[self.class_index],
            "global_importance": self.global_importance(),
            "ranking": self.ranking(),
            "mean_surrogate_r2": float(np.mean(self.scores)),
        }


def lime_explain(
    model: Any,
    X_train: Any,
    X_explain: Any,
    *,
    num_samples: int = 5000,
    class_index: int = -1,
    class_names: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
    categorical_features: Sequence[int] | None = None,
    discretize_continuous: bool = True,
    random_state: int = 0,
    output: str = "proba",
    force: bool = False,
    verbose: bool = True,
    progress: bool = False,
) -> LimeResult:
    """Tabular LIME (``lime.lime_tabular.LimeTabularExplainer``) with a fixed seed.

    All ``d`` features are kept (``num_features=d``) so the weights form a full ``(n, d)``
    matrix.  Same ``random_state`` -> identical weights.  Cost: ``n * num_samples`` model
    evaluations (printed before starting).

    Example:
        >>> from sklearn.linear_model import LogisticRegression
        >>> X = np.random.default_rng(0).random((50, 3)); y = (X[:, 2] > 0.5).astype(int)
        >>> r = lime_explain(LogisticRegression().fit(X, y), X, X[:2], num_samples=200, verbose=False)
        >>> r.weights.shape, r.ranking()[0]
        ((2, 3), 'x2')
    """
    from lime.lime_tabular import LimeTabularExplainer

    Xt = _check_2d(X_train, "X_train")
    Xe = _check_2d(X_explain, "X_explain", Xt.shape[1])
    d = Xt.shape[1]
    names = _feature_names(feature_names, d)
    num_samples = _check_positive_int(num_samples, "num_samples")
    budget = len(Xe) * num_samples
    check_no_qpu(model, budget, what="LIME", force=force)
    f = as_predict_proba(model, output=output, n_features=d)
    _announce(f"LIME: {len(Xe)} rows x {num_samples} perturbations = {budget:,} model evaluations", verbose)
    preds = f(Xe)
    C = preds.shape[1]
    k = _resolve_class(class_index, C)
    cnames = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(C)]
    if len(cnames) != C:
        raise ValueError(f"class_names must have {C} entries (model outputs); got {len(cnames)}")
    explainer = LimeTabularExplainer(
        Xt, mode="classification", feature_names=names, class_names=cnames,
        categorical_features=list(categorical_features) if categorical_features is not None else None,
        discretize_continuous=discretize_continuous, random_state=random_state,
    )
    W = np.zeros((len(Xe), d))
    conds, inter, local, scores = [], np.zeros(len(Xe)), np.zeros(len(Xe)), np.zeros(len(Xe))
    start = f.n_rows
    it = range(len(Xe))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"LIME seed {random_state}")
    for i in it:
        e = explainer.explain_instance(Xe[i], f, labels=(k,), num_features=d, num_samples=num_samples)
        for j, w in e.as_map()[k]:
            W[i, j] = w
        conds.append([(c, float(w)) for c, w in e.as_list(label=k)])
        inter[i] = float(e.intercept[k])
        local[i] = float(np.ravel(e.local_pred)[0])
        scores[i] = float(e.score)
    return LimeResult(
        weights=W, conditions=conds, intercepts=inter, local_predictions=local, scores=scores,
        predictions=preds, data=Xe, class_index=k, class_names=cnames, feature_names=names,
        random_state=random_state, n_evaluations=int(f.n_rows - start),
    )


@dataclass
class LimeStability:
    """Stability of LIME feature rankings across seeds.

    Attributes:
        score: mean over samples and seed pairs of the top-``k`` Jaccard overlap of the
            features ranked by ``|weight|`` -- in [0, 1], 1 = identical top-k sets.
        spearman: mean pairwise Spearman correlation of ``|weight|`` vectors, in [-1, 1].
        global_spearman: mean pairwise Spearman correlation of the global rankings.
        per_sample: ``(n,)`` top-k overlap per sample.
        seeds, top_k, results (the LimeResult per seed).
    """

    score: float
    spearman: float
    global_spearman: float
    per_sample: np.ndarray
    seeds: list[int]
    top_k: int
    results: list[LimeResult]

    def to_dict(self) -> dict:
        return {"score_top_k_jaccard": self.score, "spearman": self.spearman,
                "global_spearman": self.global_spearman, "seeds": self.seeds, "top_k": self.top_k}


def lime_stability(
    model: Any,
    X_train: Any,
    X_explain: Any,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    top_k: int = 3,
    verbose: bool = True,
    **lime_kwargs: Any,
) -> LimeStability:
    """Run :func:`lime_explain` once per seed and measure how much the rankings move.

    Example:
        >>> from sklearn.linear_model import LogisticRegression
        >>> X = np.random.default_rng(0).random((50, 3)); y = (X[:, 2] > 0.5).astype(int)
        >>> s = lime_stability(LogisticRegression().fit(X, y), X, X[:2], seeds=(0, 1),
        ...                    num_samples=200, verbose=False)
        >>> 0.0 <= s.score <= 1.0
        True
    """
    from scipy import stats

    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must hold at least 2 distinct ints; got {seeds}")
    Xe = _check_2d(X_explain, "X_explain")
    d = Xe.shape[1]
    top_k = _check_positive_int(top_k, "top_k")
    if top_k > d:
        raise ValueError(f"top_k must be <= the number of features ({d}); got {top_k}")
    n_samples = lime_kwargs.get("num_samples", 5000)
    _announce(
        f"LIME stability: {len(seeds)} seeds x {len(Xe)} rows x {n_samples} perturbations = "
        f"{len(seeds) * len(Xe) * n_samples:,} model evaluations", verbose,
    )
    results = [lime_explain(model, X_train, Xe, random_state=s, verbose=False, **lime_kwargs) for s in seeds]
    per = np.zeros(len(Xe))
    rho = []
    pairs = list(itertools.combinations(range(len(seeds)), 2))
    for a, b in pairs:
        Wa, Wb = np.abs(results[a].weights), np.abs(results[b].weights)
        for i in range(len(Xe)):
            ta = set(np.argsort(-Wa[i], kind="stable")[:top_k])
            tb = set(np.argsort(-Wb[i], kind="stable")[:top_k])
            per[i] += len(ta & tb) / len(ta | tb)
            r = stats.spearmanr(Wa[i], Wb[i]).statistic
            rho.append(0.0 if not np.isfinite(r) else float(r))
    per /= len(pairs)
    g = []
    for a, b in pairs:
        g.append(ranking_overlap(results[a].ranking(), results[b].ranking(), top_k)["spearman"])
    return LimeStability(
        score=float(per.mean()), spearman=float(np.mean(rho)), global_spearman=float(np.mean(g)),
        per_sample=per, seeds=seeds, top_k=top_k, results=results,
    )
