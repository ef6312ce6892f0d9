"""Heart-disease tabular data: the 918-row Kaggle "Heart Failure Prediction" set and the four
UCI "processed" Heart Disease files, with schema validation and two preprocessing recipes.

* :func:`load_heart_failure` reads ``heart/heart_failure_prediction/heart.csv`` (918 x 12).
  Kaggle offers no unauthenticated download, so on a machine without the file pass ``path=`` or
  ``data_dir=``; a clear :class:`~qnn.datasets.DataError` says where it looked.
* :func:`load_uci_heart` reads ``heart/uci_heart_disease/processed.<which>.data`` (downloaded from
  the UCI archive, SHA-256 checked, when ``download=True``).
* :func:`paper_preprocess` reproduces the KACQ-DCNN preprocessing (alphabetical LabelEncoder codes,
  MinMax scaling fitted on the training split only).
* :class:`CleanHeartPreprocessor` is a scikit-learn transformer for the clean protocol:
  ``Cholesterol == 0`` and ``RestingBP == 0`` become missing values (plus missing flags), imputed
  with training-fold medians, nominal features one-hot encoded, everything MinMax-scaled, all of it
  fitted in :meth:`~CleanHeartPreprocessor.fit` only.

Every loader validates the whole file (columns, types, ranges, emptiness) before returning anything.

Example:
    >>> from qnn.datasets.heart import load_heart_failure, paper_preprocess
    >>> df = load_heart_failure()                      # doctest: +SKIP
    >>> Xtr, Xte, ytr, yte, scaler = paper_preprocess(df, test_size=0.3, random_state=0)  # doctest: +SKIP
    >>> Xtr.shape, Xte.shape                           # doctest: +SKIP
    ((642, 11), (276, 11))
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

from qnn.datasets._base import DataError, fetch_file, sha256_of

__all__ = [
    "HEART_FEATURES",
    "HEART_TARGET",
    "CATEGORIES",
    "FEATURE_RANGES",
    "INTEGER_FEATURES",
    "load_heart_failure",
    "load_uci_heart",
    "validate_heart_frame",
    "paper_encode",
    "paper_preprocess",
    "CleanHeartPreprocessor",
    "UCI_COLUMNS",
]

HEART_FEATURES = [
    "Age", "Sex", "ChestPainType", "RestingBP", "Cholesterol", "FastingBS",
    "RestingECG", "MaxHR", "ExerciseAngina", "Oldpeak", "ST_Slope",
]
HEART_TARGET = "HeartDisease"
HEART_SHA256 = "948420b084d8a3a0ca42b8419fce9aee175879e43f8aedf712377899a67aa49b"
HEART_RELPATH = "heart/heart_failure_prediction/heart.csv"

# Categorical levels in alphabetical order = sklearn LabelEncoder codes used by the paper.
CATEGORIES: dict[str, list[str]] = {
    "Sex": ["F", "M"],
    "ChestPainType": ["ASY", "ATA", "NAP", "TA"],
    "RestingECG": ["LVH", "Normal", "ST"],
    "ExerciseAngina": ["N", "Y"],
    "ST_Slope": ["Down", "Flat", "Up"],
}
# Plausible physical ranges (inclusive); 0 is allowed for RestingBP/Cholesterol (missing codes).
_NUMERIC_RANGES: dict[str, tuple[float, float]] = {
    "Age": (1, 120),
    "RestingBP": (0, 300),
    "Cholesterol": (0, 1000),
    "FastingBS": (0, 1),
    "MaxHR": (30, 250),
    "Oldpeak": (-10, 10),
    HEART_TARGET: (0, 1),
}
_INTEGER_COLUMNS = {"Age", "RestingBP", "Cholesterol", "FastingBS", "MaxHR", HEART_TARGET}
# Public, read-only views of the schema for forms and validators outside this module.
FEATURE_RANGES: dict[str, tuple[float, float]] = {k: v for k, v in _NUMERIC_RANGES.items() if k != HEART_TARGET}
INTEGER_FEATURES: frozenset[str] = frozenset(_INTEGER_COLUMNS - {HEART_TARGET})

UCI_COLUMNS = [
    "age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach",
    "exang", "oldpeak", "slope", "ca", "thal", "num",
]
_UCI_BASE = "https://archive.ics.uci.edu/ml/machine-learning-databases/heart-disease/"
_UCI_FILES: dict[str, tuple[str, str, int]] = {
    # which -> (file name, sha256, rows)
    "cleveland": ("processed.cleveland.data",
                  "a74b7efa387bc9d108d7d0115d831fe9b414b29ae7124f331b622b4efa0427c8", 303),
    "hungarian": ("processed.hungarian.data",
                  "d1ad108f785768cd3d7e82dc522e6f5a61eea93cccfb3a46ee8076f73fc3d796", 294),
    "switzerland": ("processed.switzerland.data",
                    "834a405ccf5b66ab4056bb77794adc8df0b7125186454c0a1d002d33c6c3b314", 123),
    "va": ("processed.va.data",
           "e7c93d8d0d2acdadfa4c5e8de768e2191e7f618b952e29623f1f0d5949ff6b8f", 200),
}
# (low, high) inclusive, or a set of allowed codes
_UCI_RANGES: dict[str, tuple[float, float] | set] = {
    "age": (1, 120), "sex": {0, 1}, "cp": {1, 2, 3, 4}, "trestbps": (0, 300),
    "chol": (0, 1000), "fbs": {0, 1}, "restecg": {0, 1, 2}, "thalach": (30, 250),
    "exang": {0, 1}, "oldpeak": (-10, 10), "slope": {1, 2, 3}, "ca": (0, 3),
    "thal": {3, 6, 7}, "num": {0, 1, 2, 3, 4},
}


def _read_csv(path: Path, **kw) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise DataError(f"heart data file {path} is empty (0 bytes)")
    try:
        df = pd.read_csv(path, **kw)
    except pd.errors.EmptyDataError as e:
        raise DataError(f"heart data file {path} is empty: {e}") from e
    except pd.errors.ParserError as e:
        raise DataError(f"heart data file {path} could not be parsed as CSV: {e}") from e
    if len(df) == 0:
        raise DataError(f"heart data file {path} has a header but no data rows")
    return df


def validate_heart_frame(df: pd.DataFrame, *, source: str = "data") -> pd.DataFrame:
    """Check a heart-failure frame against the schema and return a clean typed copy.

    Raises:
        DataError: empty frame, a missing column, a non-numeric value in a numeric column, an
            unknown category, a NaN, or a value outside its plausible range.  Every problem is
            found before anything is returned (nothing is half-loaded).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"validate_heart_frame: expected a pandas DataFrame; got {type(df).__name__}")
    if len(df) == 0:
        raise DataError(f"{source}: heart-failure table is empty (0 rows)")
    expected = HEART_FEATURES + [HEART_TARGET]
    missing = [c for c in expected if c not in df.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {missing}; expected columns {expected}, got {list(df.columns)}"
        )
    out = df[expected].copy()
    problems: list[str] = []
    for col in expected:
        s = out[col]
        if s.isna().any():
            rows = list(np.flatnonzero(s.isna().to_numpy())[:5])
            problems.append(f"column {col!r} has missing values (NaN) at rows {rows}")
            continue
        if col in CATEGORIES:
            bad = ~s.astype(str).isin(CATEGORIES[col])
            if bad.any():
                vals = sorted(set(s[bad].astype(str)))[:5]
                problems.append(
                    f"column {col!r} must be one of {CATEGORIES[col]}; got {vals}"
                )
            out[col] = s.astype(str)
            continue
        num = pd.to_numeric(s, errors="coerce")
        if num.isna().any():
            vals = list(s[num.isna()].astype(str).unique()[:5])
            problems.append(f"column {col!r} must be numeric; got non-numeric values {vals}")
            continue
        if col in _INTEGER_COLUMNS and not np.all(np.equal(np.mod(num.to_numpy(float), 1), 0)):
            problems.append(f"column {col!r} must hold integers; got non-integer values")
            continue
        lo, hi = _NUMERIC_RANGES[col]
        bad = (num < lo) | (num > hi)
        if bad.any():
            vals = list(num[bad].unique()[:5])
            problems.append(f"column {col!r} has values outside [{lo}, {hi}]: {vals}")
            continue
        out[col] = num.astype(int) if col in _INTEGER_COLUMNS else num.astype(float)
    if problems:
        raise DataError(f"{source}: invalid heart-failure data: " + "; ".join(problems))
    return out.reset_index(drop=True)


def load_heart_failure(
    data_dir: str | os.PathLike | None = None,
    *,
    path: str | os.PathLike | None = None,
    check_sha256: bool = False,
) -> pd.DataFrame:
    """Load the 918-row Kaggle heart-failure table (11 features + ``HeartDisease``).

    Args:
        data_dir: data root (default ``$QNN_DATA_DIR`` or ``~/.cache/qnn/data``); the file is
            ``<data_dir>/heart/heart_failure_prediction/heart.csv``.
        path: explicit path of a ``heart.csv`` (overrides ``data_dir``).
        check_sha256: also require the SHA-256 of the distributed file (``948420b0...``).

    Returns:
        DataFrame with the columns of :data:`HEART_FEATURES` + ``HeartDisease``; string columns
        keep their labels (``"M"``, ``"ASY"``, ...).

    Raises:
        DataError: the file is absent (Kaggle has no anonymous download URL: download it from
            kaggle.com/datasets/fedesoriano/heart-failure-prediction and pass ``path=``), its
            checksum is wrong, or it breaks the schema.

    Example:
        >>> df = load_heart_failure()  # doctest: +SKIP
        >>> df.shape, int(df.HeartDisease.sum())  # doctest: +SKIP
        ((918, 12), 508)
    """
    if path is None:
        p = fetch_file(HEART_RELPATH, url=None, sha256=HEART_SHA256, data_dir=data_dir, download=False)
    else:
        p = Path(path).expanduser()
        if not p.exists():
            raise DataError(
                f"heart-failure CSV not found at {p}; download heart.csv from "
                "https://www.kaggle.com/datasets/fedesoriano/heart-failure-prediction and pass its path"
            )
    if check_sha256:
        got = sha256_of(p)
        if got != HEART_SHA256:
            raise DataError(f"checksum mismatch for {p}: expected sha256 {HEART_SHA256}, got {got}")
    df = _read_csv(p)
    return validate_heart_frame(df, source=str(p))


def load_uci_heart(
    which: str = "cleveland",
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    binary_target: bool = False,
) -> pd.DataFrame:
    """Load one of the four UCI Heart Disease "processed" files (14 columns, ``?`` -> NaN).

    Args:
        which: ``"cleveland"`` (303 rows), ``"hungarian"`` (294), ``"switzerland"`` (123) or
            ``"va"`` (200).
        data_dir: data root; the file is ``<data_dir>/heart/uci_heart_disease/processed.<which>.data``.
        download: fetch the file from the UCI archive (SHA-256 checked) if it is absent.
        binary_target: add ``target = (num > 0)``.

    Returns:
        DataFrame with :data:`UCI_COLUMNS` as float columns (NaN where the file has ``?``).

    Raises:
        ValueError: unknown ``which``.
        DataError: file absent/empty/corrupt, wrong column count, non-numeric or out-of-range values.

    Example:
        >>> df = load_uci_heart("cleveland")  # doctest: +SKIP
        >>> df.shape  # doctest: +SKIP
        (303, 14)
    """
    if which not in _UCI_FILES:
        raise ValueError(f"load_uci_heart: which must be one of {list(_UCI_FILES)}; got {which!r}")
    fname, sha, _rows = _UCI_FILES[which]
    p = fetch_file(f"heart/uci_heart_disease/{fname}", url=_UCI_BASE + fname, sha256=sha,
                   data_dir=data_dir, download=download)
    df = _read_csv(p, header=None, na_values=["?"], dtype=str, keep_default_na=False)
    if df.shape[1] != len(UCI_COLUMNS):
        raise DataError(f"{p}: expected {len(UCI_COLUMNS)} comma-separated columns; got {df.shape[1]}")
    df.columns = UCI_COLUMNS
    problems = []
    out = pd.DataFrame(index=df.index)
    for col in UCI_COLUMNS:
        s = df[col]
        num = pd.to_numeric(s, errors="coerce")
        bad_type = num.isna() & s.notna()
        if bad_type.any():
            problems.append(f"column {col!r} must be numeric or '?'; got {list(s[bad_type].unique()[:5])}")
            continue
        rng = _UCI_RANGES[col]
        v = num.dropna()
        if isinstance(rng, set):
            bad = ~v.isin(rng)
            if bad.any():
                problems.append(f"column {col!r} must be one of {sorted(rng)}; got {sorted(set(v[bad]))[:5]}")
                continue
        else:
            bad = (v < rng[0]) | (v > rng[1])
            if bad.any():
                problems.append(f"column {col!r} has values outside [{rng[0]}, {rng[1]}]: {list(v[bad][:5])}")
                continue
        out[col] = num.astype(float)
    if not problems and out["num"].isna().any():
        problems.append("column 'num' (target) has missing values")
    if problems:
        raise DataError(f"{p}: invalid UCI heart data: " + "; ".join(problems))
    if binary_target:
        out["target"] = (out["num"] > 0).astype(int)
    return out


def paper_encode(df: pd.DataFrame, interaction: tuple[str, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Alphabetical label codes (sklearn ``LabelEncoder`` order) for the 5 string columns.

    Args:
        df: heart-failure frame.
        interaction: optional pair of feature names whose product (of the codes / raw values)
            is appended as a 12th column (the paper's Keras model took 12 inputs; which 12th
            column it used is unknown).

    Returns:
        ``(X, y)``: float64 array of shape (n, 11) (or (n, 12)) in :data:`HEART_FEATURES` order,
        int array (n,).
    """
    df = validate_heart_frame(df)
    X = df[HEART_FEATURES].copy()
    for col, levels in CATEGORIES.items():
        X[col] = X[col].map({v: i for i, v in enumerate(levels)})
    X = X.to_numpy(np.float64)
    if interaction is not None:
        if len(interaction) != 2 or any(c not in HEART_FEATURES for c in interaction):
            raise ValueError(
                f"paper_encode: interaction must be a pair of names from {HEART_FEATURES}; got {interaction!r}"
            )
        a, b = (HEART_FEATURES.index(c) for c in interaction)
        X = np.column_stack([X, X[:, a] * X[:, b]])
    return X, df[HEART_TARGET].to_numpy(np.int64)


def paper_preprocess(
    df: pd.DataFrame,
    *,
    test_size: float = 0.3,
    random_state: int | None = None,
    stratify: bool = True,
    interaction: tuple[str, str] | None = None,
    extra: np.ndarray | None = None,
):
    """The KACQ-DCNN preprocessing: label codes, stratified split, MinMax fitted on train only.

    Args:
        df: output of :func:`load_heart_failure`.
        test_size: test fraction (0.3 gives 276 test rows: 123 negative / 153 positive).
        random_state: split seed (the paper's is unknown).
        stratify: stratify on the target (the KACQ split is stratified).
        interaction: optional 12th column, see :func:`paper_encode`.
        extra: optional further columns, ``(n,)`` or ``(n, k)`` with one row per row of ``df``,
            appended after the encoded features (split and scaled with them).

    Returns:
        ``(X_train, X_test, y_train, y_test, scaler)``, arrays scaled to [0, 1] on the training
        split (test values may fall slightly outside).
    """
    X, y = paper_encode(df, interaction)
    if extra is not None:
        extra = np.asarray(extra, dtype=np.float64)
        if extra.ndim not in (1, 2) or len(extra) != len(X):
            raise ValueError(
                f"paper_preprocess: extra must have shape ({len(X)},) or ({len(X)}, k); got {extra.shape}"
            )
        X = np.column_stack([X, extra])
    Xtr, Xte, ytr, yte = train_test_split(
        X, y, test_size=test_size, random_state=random_state, stratify=y if stratify else None
    )
    scaler = MinMaxScaler().fit(Xtr)
    return scaler.transform(Xtr), scaler.transform(Xte), ytr, yte, scaler


class CleanHeartPreprocessor(TransformerMixin, BaseEstimator):
    """Leak-free preprocessing of the heart-failure table, fitted on training rows only.

    * ``Cholesterol == 0`` and ``RestingBP == 0`` are missing values: replaced by the training
      median of the non-zero values, with a 0/1 missing flag column added for each (if ``add_flags``).
    * Nominal features (``ChestPainType``, ``RestingECG``, and ``ST_Slope`` unless
      ``ordinal_slope``) are one-hot encoded with the fixed category lists of :data:`CATEGORIES`;
      binary ones (``Sex``, ``ExerciseAngina``) become 0/1.
    * All columns are MinMax-scaled with the training min/max.

    Args:
        add_flags: add ``Cholesterol_missing`` / ``RestingBP_missing`` columns.
        ordinal_slope: keep ``ST_Slope`` as an ordinal code (Down < Flat < Up) instead of one-hot.
        scale: apply MinMax scaling.

    Attributes:
        medians_ (dict): training medians used for imputation.
        min_, max_ (ndarray): training minimum / maximum per output column.
        feature_names_out_ (list[str]): output column names.

    Example:
        >>> import pandas as pd
        >>> from qnn.datasets.heart import CleanHeartPreprocessor, load_heart_failure
        >>> df = load_heart_failure()  # doctest: +SKIP
        >>> pre = CleanHeartPreprocessor().fit(df.iloc[:600])  # doctest: +SKIP
        >>> pre.transform(df.iloc[600:]).shape  # doctest: +SKIP
        (318, 20)
    """

    _IMPUTE = ("Cholesterol", "RestingBP")

    def __init__(self, add_flags: bool = True, ordinal_slope: bool = False, scale: bool = True):
        self.add_flags = add_flags
        self.ordinal_slope = ordinal_slope
        self.scale = scale

    def _frame(self, X) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            missing = [c for c in HEART_FEATURES if c not in X.columns]
            if missing:
                raise ValueError(f"CleanHeartPreprocessor: missing column(s) {missing}; got {list(X.columns)}")
            df = X.copy()
            if HEART_TARGET not in df.columns:
                df[HEART_TARGET] = 0
            return validate_heart_frame(df, source="CleanHeartPreprocessor input")[HEART_FEATURES]
        raise TypeError(
            "CleanHeartPreprocessor: X must be a pandas DataFrame with the heart-failure columns "
            f"{HEART_FEATURES}; got {type(X).__name__}"
        )

    def _encode(self, df: pd.DataFrame, medians: dict) -> pd.DataFrame:
        cols: dict[str, np.ndarray] = {}
        for c in ("Age", "RestingBP", "Cholesterol", "FastingBS", "MaxHR", "Oldpeak"):
            v = df[c].to_numpy(np.float64).copy()
            if c in self._IMPUTE:
                miss = v == 0
                v[miss] = medians[c]
                cols[c] = v
                if self.add_flags:
                    cols[c + "_missing"] = miss.astype(np.float64)
            else:
                cols[c] = v
        cols["Sex"] = (df["Sex"] == "M").to_numpy(np.float64)
        cols["ExerciseAngina"] = (df["ExerciseAngina"] == "Y").to_numpy(np.float64)
        nominal = ["ChestPainType", "RestingECG"] + ([] if self.ordinal_slope else ["ST_Slope"])
        if self.ordinal_slope:
            cols["ST_Slope"] = df["ST_Slope"].map({"Down": 0.0, "Flat": 1.0, "Up": 2.0}).to_numpy(np.float64)
        for c in nominal:
            for level in CATEGORIES[c]:
                cols[f"{c}_{level}"] = (df[c] == level).to_numpy(np.float64)
        return pd.DataFrame(cols, index=df.index)

    def fit(self, X, y=None):
        """Learn imputation medians and scaling ranges from ``X`` (training rows only)."""
        df = self._frame(X)
        self.medians_ = {}
        for c in self._IMPUTE:
            v = df[c].to_numpy(np.float64)
            v = v[v != 0]
            if v.size == 0:
                raise ValueError(f"CleanHeartPreprocessor: column {c!r} is 0 (missing) in every training row")
            self.medians_[c] = float(np.median(v))
        enc = self._encode(df, self.medians_)
        self.feature_names_out_ = list(enc.columns)
        arr = enc.to_numpy(np.float64)
        self.min_ = arr.min(axis=0)
        self.max_ = arr.max(axis=0)
        self.n_features_in_ = len(HEART_FEATURES)
        return self

    def transform(self, X) -> np.ndarray:
        """Impute, encode and scale ``X`` with the statistics learned in :meth:`fit`."""
        if not hasattr(self, "medians_"):
            raise ValueError("This CleanHeartPreprocessor instance is not fitted yet. Call 'fit' first.")
        arr = self._encode(self._frame(X), self.medians_).to_numpy(np.float64)
        if self.scale:
            rng = self.max_ - self.min_
            rng[rng == 0] = 1.0
            arr = (arr - self.min_) / rng
        return arr

    def get_feature_names_out(self, input_features=None):
        return np.asarray(self.feature_names_out_, dtype=object)
