"""The heart demo's saved model: KACQ-DCNN + clean preprocessing + split-conformal calibration.

:func:`train_demo_model` splits the 918-row heart-failure table (stratified 60 / 20 / 20:
train / calibration / held-out test, one seed), fits :class:`~qnn.datasets.heart.CleanHeartPreprocessor`
and :class:`~qnn.models.KACQClassifier` on the training rows only (its validation rows for
checkpointing are taken from the training rows), calibrates a LAC
:class:`~qnn.conformal.SplitConformalClassifier` on the calibration rows at every level of
:data:`LEVELS`, and measures accuracy, ROC-AUC and conformal coverage on the test rows, which
neither training nor calibration saw.

:meth:`HeartDemoModel.save` writes one file that loads with ``torch.load(weights_only=True)``
(plain dicts, lists, numbers, strings and tensors): the network weights, the raw rows of the three
splits, the fitted preprocessing statistics, the calibration scores and quantiles, the measured
metrics, and a SHA-256 digest of all of it.  :meth:`HeartDemoModel.load` refuses a file that is not
such a bundle or whose digest does not match, rebuilds the preprocessor from the training rows and
the calibration from the calibration rows, and checks both against the stored statistics, so a file
whose weights or data were edited is refused with a clear error rather than served.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from qnn.conformal import SplitConformalClassifier, coverage_score, mean_set_size
from qnn.datasets.heart import (
    CATEGORIES,
    HEART_FEATURES,
    HEART_TARGET,
    CleanHeartPreprocessor,
    load_heart_failure,
    validate_heart_frame,
)
from qnn.models import KACQDCNN, KACQClassifier

__all__ = ["FORMAT", "LEVELS", "BundleError", "HeartDemoModel", "Prediction", "train_demo_model",
           "default_model_path"]

FORMAT = "qnn.apps.heart/1"
LEVELS = (0.8, 0.85, 0.9, 0.95, 0.99)
CLASS_NAMES = ("no heart disease", "heart disease")
# Fast settings: the full KACQ-DCNN topology, few epochs; about a minute on 2 cores.
DEFAULT_SETTINGS = {"epochs": 12, "seed": 0, "batch_size": 32, "lr": 1e-3, "n_layers": 1, "bilstm": 2}


class BundleError(ValueError):
    """A file is not a heart-demo bundle, or its content does not match its digest/statistics."""


def default_model_path() -> Path:
    """``$QNN_MODEL_DIR/heart_demo.pt`` (default ``~/.cache/qnn/models/heart_demo.pt``)."""
    root = os.environ.get("QNN_MODEL_DIR") or Path.home() / ".cache" / "qnn" / "models"
    return Path(root).expanduser() / "heart_demo.pt"


class _RawPipeline:
    """``predict_proba`` on raw heart-failure rows: clean preprocessing, then the classifier."""

    def __init__(self, preprocessor: CleanHeartPreprocessor, classifier: KACQClassifier):
        self.preprocessor = preprocessor
        self.classifier = classifier
        self.classes_ = classifier.classes_
        self.n_evaluations = 0  # rows sent through the network

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        X = self.preprocessor.transform(frame)
        self.n_evaluations += len(X)
        return self.classifier.predict_proba(X)


@dataclass
class Prediction:
    """One patient's result: probability of heart disease and the conformal set at ``level``."""

    probability: float
    level: float
    prediction_set: list[str]
    coverage: float
    mean_set_size: float


def _split(y: np.ndarray, seed: int):
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    tr, rest = train_test_split(idx, train_size=0.6, stratify=y, random_state=seed)
    cal, te = train_test_split(rest, train_size=0.5, stratify=y[rest], random_state=seed)
    return np.sort(tr), np.sort(cal), np.sort(te)


def _frame_to_lists(df: pd.DataFrame) -> dict:
    return {c: df[c].tolist() for c in HEART_FEATURES + [HEART_TARGET]}


def _digest(payload: dict) -> str:
    h = hashlib.sha256()
    meta = {k: v for k, v in payload.items() if k not in ("state_dict", "digest")}
    h.update(json.dumps(meta, sort_keys=True, default=float).encode())
    for k in sorted(payload["state_dict"]):
        t = payload["state_dict"][k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


@dataclass
class HeartDemoModel:
    """A trained heart model with its preprocessing, calibration and held-out measurements."""

    classifier: KACQClassifier
    preprocessor: CleanHeartPreprocessor
    conformal: SplitConformalClassifier
    splits: dict[str, pd.DataFrame]
    settings: dict
    metrics: dict = field(default_factory=dict)

    # ---------------------------------------------------------------- building
    @classmethod
    def _assemble(cls, classifier, splits, settings, metrics=None) -> "HeartDemoModel":
        pre = CleanHeartPreprocessor().fit(splits["train"][HEART_FEATURES])
        pipe = _RawPipeline(pre, classifier)
        cp = SplitConformalClassifier(pipe, confidence_level=list(LEVELS), conformity_score="lac", prefit=True)
        cp.conformalize(splits["cal"][HEART_FEATURES], splits["cal"][HEART_TARGET].to_numpy())
        model = cls(classifier, pre, cp, splits, dict(settings), dict(metrics or {}))
        if metrics is None:
            model.metrics = model._measure()
        return model

    def _measure(self) -> dict:
        from sklearn.metrics import roc_auc_score

        test = self.splits["test"]
        y = test[HEART_TARGET].to_numpy()
        proba, sets = self.conformal.predict_proba_set(test[HEART_FEATURES])
        p1 = proba[:, 1]
        cov = coverage_score(y, sets, classes=self.conformal.classes_)
        size = mean_set_size(sets)
        return {
            "n_train": int(len(self.splits["train"])), "n_calibration": int(len(self.splits["cal"])),
            "n_test": int(len(test)),
            "test_accuracy": float(np.mean((p1 > 0.5).astype(int) == y)),
            "test_roc_auc": float(roc_auc_score(y, p1)),
            "coverage": {f"{lev:g}": float(c) for lev, c in zip(LEVELS, cov)},
            "mean_set_size": {f"{lev:g}": float(s) for lev, s in zip(LEVELS, size)},
            "best_epoch": int(getattr(self.classifier, "best_epoch_", 0)),
        }

    # ---------------------------------------------------------------- inference
    @staticmethod
    def frame(patients: dict | list[dict] | pd.DataFrame) -> pd.DataFrame:
        """Validated raw rows (the 11 features) from dicts or a frame; raises DataError."""
        df = pd.DataFrame([patients] if isinstance(patients, dict) else patients)
        missing = [c for c in HEART_FEATURES if c not in df.columns]
        if missing:
            raise ValueError(f"HeartDemoModel: patient is missing feature(s) {missing}; expected {HEART_FEATURES}")
        df = df[HEART_FEATURES].copy()
        df[HEART_TARGET] = 0
        return validate_heart_frame(df, source="patient")[HEART_FEATURES]

    def predict(self, patients, level: float = 0.9) -> list[Prediction]:
        """Probability and prediction set for each patient: one evaluation of the network."""
        if level not in LEVELS:
            raise ValueError(f"HeartDemoModel: level must be one of {list(LEVELS)}; got {level!r}")
        j = LEVELS.index(level)
        proba, sets = self.conformal.predict_proba_set(self.frame(patients))
        key = f"{level:g}"
        return [
            Prediction(float(proba[i, 1]), level,
                       [CLASS_NAMES[int(c)] for c, inside in zip(self.conformal.classes_, sets[i, :, j]) if inside],
                       self.metrics["coverage"][key], self.metrics["mean_set_size"][key])
            for i in range(len(proba))
        ]

    def explain(self, patient: dict, *, nsamples: int = 64, n_background: int = 8, seed: int = 0) -> tuple[list[tuple[str, Any, float]], float]:
        """Kernel SHAP attributions of the probability of heart disease to the 11 raw features.

        Returns ``(items, base)``: ``items`` are ``(feature, value, shap value)`` sorted by
        decreasing ``|shap value|`` (a positive value pushed this prediction towards heart
        disease); ``base`` is the mean probability over the background, so that
        ``base + sum(shap values)`` is the predicted probability.  The model is evaluated on
        ``n_background + 1 + nsamples * n_background`` rows (one SHAP call).
        """
        from qnn.explain import kernel_shap

        def codes(df: pd.DataFrame) -> np.ndarray:
            out = df[HEART_FEATURES].copy()
            for col, levels in CATEGORIES.items():
                out[col] = out[col].map({v: i for i, v in enumerate(levels)})
            return out.to_numpy(np.float64)

        def decode(X: np.ndarray) -> pd.DataFrame:
            df = pd.DataFrame(X, columns=HEART_FEATURES)
            for col, levels in CATEGORIES.items():
                df[col] = [levels[int(round(v))] for v in df[col]]
            return df

        pre, clf = self.preprocessor, self.classifier

        def f(X: np.ndarray) -> np.ndarray:
            return clf.predict_proba(pre.transform(decode(X)))

        row = self.frame(patient)
        res = kernel_shap(f, codes(self.splits["train"]), codes(row), n_background=n_background,
                          nsamples=nsamples, feature_names=HEART_FEATURES, seed=seed, verbose=False)
        phi = res.values[0, :, 1]
        items = [(name, row.iloc[0][name].item() if hasattr(row.iloc[0][name], "item") else row.iloc[0][name],
                  float(v)) for name, v in zip(HEART_FEATURES, phi)]
        return sorted(items, key=lambda t: -abs(t[2])), float(res.base_values[0, 1])

    # ---------------------------------------------------------------- persistence
    def _payload(self) -> dict:
        pre = self.preprocessor
        payload = {
            "format": FORMAT,
            "settings": self.settings,
            "classes": [int(c) for c in self.classifier.classes_],
            "n_features": int(self.classifier.n_features_in_),
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.classifier.model_.state_dict().items()},
            "splits": {k: _frame_to_lists(v) for k, v in self.splits.items()},
            "preprocessor": {"medians": dict(pre.medians_), "min": pre.min_.tolist(), "max": pre.max_.tolist(),
                             "feature_names": list(pre.feature_names_out_)},
            "conformal": {"levels": list(LEVELS), "score": "lac",
                          "quantiles": np.asarray(self.conformal.quantiles_, float).tolist()},
            "metrics": self.metrics,
        }
        payload["digest"] = _digest(payload)
        return payload

    def save(self, path: str | os.PathLike) -> Path:
        """Write the bundle atomically (``path`` + ``.tmp`` then rename); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(self._payload(), buf)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "HeartDemoModel":
        """Load a bundle written by :meth:`save`; raises :class:`BundleError` for anything else."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"HeartDemoModel: no saved model at {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not our file"
            raise BundleError(f"HeartDemoModel: {path} is not a heart-demo model file "
                              f"(torch.load(weights_only=True) failed: {str(exc).splitlines()[0]})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
            raise BundleError(f"HeartDemoModel: {path} must be a {FORMAT!r} bundle; got format {got!r}")
        if payload.get("digest") != _digest(payload):
            raise BundleError(f"HeartDemoModel: {path} has been modified since it was saved "
                              "(its SHA-256 digest does not match its content); retrain it")
        splits = {k: validate_heart_frame(pd.DataFrame(v), source=f"{path} [{k}]") for k, v in payload["splits"].items()}
        settings = payload["settings"]
        clf = KACQClassifier(verbose=False, **_classifier_kwargs(settings))
        module = KACQDCNN(n_features=payload["n_features"], **_model_kwargs(settings))
        module.load_state_dict(payload["state_dict"])
        module.eval()
        clf.model_, clf.classes_, clf.n_features_in_ = module, np.asarray(payload["classes"]), payload["n_features"]
        model = cls._assemble(clf, splits, settings, payload["metrics"])
        pre, stored = model.preprocessor, payload["preprocessor"]
        same_pre = (np.allclose(pre.min_, stored["min"]) and np.allclose(pre.max_, stored["max"])
                    and pre.medians_ == stored["medians"])
        same_q = np.allclose(model.conformal.quantiles_, payload["conformal"]["quantiles"], atol=1e-5)
        if not (same_pre and same_q):
            raise BundleError(f"HeartDemoModel: {path} is inconsistent: the preprocessing or calibration "
                              "rebuilt from its data differs from the stored one; retrain it")
        return model


def _model_kwargs(settings: dict) -> dict:
    return {"n_layers": settings["n_layers"], "bilstm": settings["bilstm"]}


def _classifier_kwargs(settings: dict) -> dict:
    return {"epochs": settings["epochs"], "seed": settings["seed"], "batch_size": settings["batch_size"],
            "lr": settings["lr"], **_model_kwargs(settings)}


def train_demo_model(*, data_dir: str | os.PathLike | None = None, progress: bool = True,
                     **settings: Any) -> HeartDemoModel:
    """Train the demo model (see the module docstring); ``settings`` override :data:`DEFAULT_SETTINGS`.

    Raises:
        qnn.datasets.DataError: the heart-failure data is not found (the message says where it looked).
        ValueError: an unknown setting.
    """
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError(f"train_demo_model: unknown setting(s) {unknown}; valid settings are {sorted(DEFAULT_SETTINGS)}")
    cfg = {**DEFAULT_SETTINGS, **settings}
    df = load_heart_failure(data_dir)
    y = df[HEART_TARGET].to_numpy()
    tr, cal, te = _split(y, cfg["seed"])
    splits = {"train": df.iloc[tr].reset_index(drop=True), "cal": df.iloc[cal].reset_index(drop=True),
              "test": df.iloc[te].reset_index(drop=True)}
    pre = CleanHeartPreprocessor().fit(splits["train"][HEART_FEATURES])
    t0 = time.perf_counter()
    clf = KACQClassifier(verbose=progress, **_classifier_kwargs(cfg))
    clf.fit(pre.transform(splits["train"][HEART_FEATURES]), splits["train"][HEART_TARGET].to_numpy())
    cfg["fit_seconds"] = round(time.perf_counter() - t0, 1)
    return HeartDemoModel._assemble(clf, splits, cfg)
