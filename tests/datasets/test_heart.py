"""Tests for qnn.datasets.heart: loading, schema errors, preprocessing fitted on train only."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qnn.datasets import DataError
from qnn.datasets.heart import (
    CATEGORIES, HEART_FEATURES, CleanHeartPreprocessor, load_heart_failure, load_uci_heart, paper_encode,
    paper_preprocess, validate_heart_frame,
)

DATA = Path(os.environ.get("QNN_DATA_DIR", "/work/shared/datasets"))
HAVE_HEART = (DATA / "heart/heart_failure_prediction/heart.csv").exists()
HAVE_UCI = (DATA / "heart/uci_heart_disease/processed.cleveland.data").exists()
needs_heart = pytest.mark.skipif(not HAVE_HEART, reason=f"heart.csv not found under {DATA} (set QNN_DATA_DIR)")
needs_uci = pytest.mark.skipif(not HAVE_UCI, reason=f"UCI heart files not found under {DATA} (set QNN_DATA_DIR)")


def tiny_frame(n=8):
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "Age": rng.integers(30, 70, n), "Sex": ["M", "F"] * (n // 2),
        "ChestPainType": (["ASY", "ATA", "NAP", "TA"] * n)[:n], "RestingBP": [120, 0] + [130] * (n - 2),
        "Cholesterol": [0, 200, 0] + list(rng.integers(150, 300, n - 3)), "FastingBS": [0, 1] * (n // 2),
        "RestingECG": (["Normal", "ST", "LVH"] * n)[:n], "MaxHR": rng.integers(90, 190, n),
        "ExerciseAngina": ["N", "Y"] * (n // 2), "Oldpeak": rng.normal(1, 1, n).round(1),
        "ST_Slope": (["Up", "Flat", "Down"] * n)[:n], "HeartDisease": [0, 1] * (n // 2),
    })


def write(tmp_path, df, name="heart.csv"):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


class TestSchema:
    def test_tiny_frame_ok(self, tmp_path):
        df = load_heart_failure(path=write(tmp_path, tiny_frame()))
        assert df.shape == (8, 12) and df["Age"].dtype.kind == "i" and df["Oldpeak"].dtype.kind == "f"

    def test_missing_column(self, tmp_path):
        p = write(tmp_path, tiny_frame().drop(columns=["MaxHR"]))
        with pytest.raises(DataError, match=r"missing column\(s\) \['MaxHR'\]"):
            load_heart_failure(path=p)

    def test_wrong_type(self, tmp_path):
        df = tiny_frame().astype({"Age": object})
        df.loc[3, "Age"] = "forty"
        with pytest.raises(DataError, match="column 'Age' must be numeric; got non-numeric values \\['forty'\\]"):
            load_heart_failure(path=write(tmp_path, df))

    def test_out_of_range(self, tmp_path):
        df = tiny_frame()
        df.loc[2, "MaxHR"] = 900
        with pytest.raises(DataError, match=r"column 'MaxHR' has values outside \[30, 250\]"):
            load_heart_failure(path=write(tmp_path, df))

    def test_unknown_category(self, tmp_path):
        df = tiny_frame()
        df.loc[0, "ST_Slope"] = "Sideways"
        with pytest.raises(DataError, match=r"column 'ST_Slope' must be one of \['Down', 'Flat', 'Up'\]"):
            load_heart_failure(path=write(tmp_path, df))

    def test_target_not_binary(self, tmp_path):
        df = tiny_frame()
        df.loc[0, "HeartDisease"] = 2
        with pytest.raises(DataError, match="column 'HeartDisease' has values outside"):
            load_heart_failure(path=write(tmp_path, df))

    def test_nan(self, tmp_path):
        df = tiny_frame().astype({"Cholesterol": float})
        df.loc[1, "Cholesterol"] = np.nan
        with pytest.raises(DataError, match="column 'Cholesterol' has missing values"):
            load_heart_failure(path=write(tmp_path, df))

    def test_empty_file(self, tmp_path):
        p = tmp_path / "heart.csv"
        p.write_text("")
        with pytest.raises(DataError, match="is empty"):
            load_heart_failure(path=p)

    def test_header_only(self, tmp_path):
        p = tmp_path / "heart.csv"
        p.write_text(",".join(HEART_FEATURES + ["HeartDisease"]) + "\n")
        with pytest.raises(DataError, match="has a header but no data rows"):
            load_heart_failure(path=p)

    def test_all_problems_reported_at_once(self, tmp_path):
        df = tiny_frame()
        df.loc[0, "MaxHR"] = 5
        df.loc[0, "Sex"] = "X"
        with pytest.raises(DataError, match="Sex.*MaxHR"):
            load_heart_failure(path=write(tmp_path, df))

    def test_absent_file_message(self, tmp_path):
        with pytest.raises(DataError, match="not found under"):
            load_heart_failure(data_dir=tmp_path)
        with pytest.raises(DataError, match="kaggle.com/datasets/fedesoriano"):
            load_heart_failure(path=tmp_path / "nope.csv")

    def test_checksum(self, tmp_path):
        with pytest.raises(DataError, match="checksum mismatch"):
            load_heart_failure(path=write(tmp_path, tiny_frame()), check_sha256=True)

    def test_validate_type_error(self):
        with pytest.raises(TypeError, match="expected a pandas DataFrame; got ndarray"):
            validate_heart_frame(np.zeros((2, 12)))

    def test_uci_bad_which(self):
        with pytest.raises(ValueError, match=r"which must be one of \['cleveland'"):
            load_uci_heart("statlog")

    def test_uci_bad_values(self, tmp_path):
        d = tmp_path / "heart/uci_heart_disease"
        d.mkdir(parents=True)
        (d / "processed.va.data").write_text("63,1,9,145,233,1,2,150,0,2.3,3,0,6,0\n")
        with pytest.raises(DataError, match=r"column 'cp' must be one of \[1, 2, 3, 4\]"):
            load_uci_heart("va", data_dir=tmp_path)
        (d / "processed.va.data").write_text("63,1,4,145,233\n")
        with pytest.raises(DataError, match="expected 14 comma-separated columns; got 5"):
            load_uci_heart("va", data_dir=tmp_path)
        (d / "processed.va.data").write_text("")
        with pytest.raises(DataError, match="is empty"):
            load_uci_heart("va", data_dir=tmp_path)


@needs_heart
class TestRealHeart:
    def test_counts(self):
        df = load_heart_failure(DATA, check_sha256=True)
        assert df.shape == (918, 12)
        assert int(df.HeartDisease.sum()) == 508
        assert (df.Cholesterol == 0).sum() == 172 and (df.RestingBP == 0).sum() == 1
        assert df.ChestPainType.value_counts().to_dict() == {"ASY": 496, "NAP": 203, "ATA": 173, "TA": 46}

    def test_paper_codes_alphabetical(self):
        df = load_heart_failure(DATA)
        X, y = paper_encode(df)
        assert X.shape == (918, 11)
        j = HEART_FEATURES.index("ST_Slope")
        assert dict(zip(*np.unique(X[:, j], return_counts=True))) == {0: 63, 1: 460, 2: 395}
        j = HEART_FEATURES.index("Sex")
        assert (X[:, j] == 1).sum() == 725  # M=1

    def test_paper_split_stratified_train_scaling(self):
        df = load_heart_failure(DATA)
        Xtr, Xte, ytr, yte, sc = paper_preprocess(df, test_size=0.3, random_state=3)
        assert len(yte) == 276 and (yte == 0).sum() == 123 and (yte == 1).sum() == 153
        np.testing.assert_allclose(Xtr.min(0), 0, atol=1e-12)
        np.testing.assert_allclose(Xtr.max(0), 1, atol=1e-12)
        X, _ = paper_encode(df)
        # scaler statistics equal the training split's, not the full data's
        assert np.all(sc.data_min_ >= X.min(0)) and np.all(sc.data_max_ <= X.max(0))
        # an extra column is split with the rows and scaled with the training split
        Xtr2, Xte2, ytr2, _, _ = paper_preprocess(df, test_size=0.3, random_state=3, extra=np.arange(len(df)))
        assert Xtr2.shape == (642, 12) and np.array_equal(ytr2, ytr)
        np.testing.assert_allclose(Xtr2[:, :11], Xtr)
        np.testing.assert_allclose(Xte2[:, :11], Xte)
        assert Xtr2[:, 11].min() == 0 and Xtr2[:, 11].max() == 1
        with pytest.raises(ValueError, match=r"paper_preprocess: extra must have shape \(918,\) or \(918, k\); got \(5,\)"):
            paper_preprocess(df, extra=np.zeros(5))

    def test_uci_files(self):
        sizes = {"cleveland": 303, "hungarian": 294, "switzerland": 123, "va": 200}
        for which, n in sizes.items():
            df = load_uci_heart(which, DATA, binary_target=True)
            assert len(df) == n and df.shape[1] == 15
        cle = load_uci_heart("cleveland", DATA)
        assert cle["ca"].isna().sum() == 4 and cle["thal"].isna().sum() == 2
        assert (load_uci_heart("cleveland", DATA, binary_target=True).target == 1).sum() == 139


class TestCleanPreprocessor:
    def test_fit_on_train_only(self):
        df = tiny_frame(8)
        tr, te = df.iloc[:6], df.iloc[6:].copy()
        pre = CleanHeartPreprocessor().fit(tr)
        nz = tr.Cholesterol[tr.Cholesterol != 0]
        assert pre.medians_["Cholesterol"] == pytest.approx(float(np.median(nz)))
        assert pre.medians_["RestingBP"] == pytest.approx(float(np.median(tr.RestingBP[tr.RestingBP != 0])))
        # changing the test rows does not change what was learned
        te2 = te.copy()
        te2["Cholesterol"] = 999
        out1, out2 = pre.transform(te), pre.transform(te2)
        j = pre.feature_names_out_.index("Cholesterol")
        assert out2[0, j] == pytest.approx((999 - pre.min_[j]) / (pre.max_[j] - pre.min_[j]))
        assert np.array_equal(np.delete(out1, j, 1), np.delete(out2, j, 1))
        Xtr = pre.transform(tr)
        np.testing.assert_allclose(Xtr.min(0)[Xtr.max(0) > 0], 0)

    def test_zero_is_missing_and_onehot(self):
        df = tiny_frame(8)
        pre = CleanHeartPreprocessor(scale=False).fit(df)
        X = pre.transform(df)
        names = pre.feature_names_out_
        assert X[0, names.index("Cholesterol")] == pre.medians_["Cholesterol"]
        assert X[0, names.index("Cholesterol_missing")] == 1 and X[1, names.index("RestingBP_missing")] == 1
        onehot = [n for n in names if n.startswith("ChestPainType_")]
        assert onehot == [f"ChestPainType_{c}" for c in CATEGORIES["ChestPainType"]]
        assert np.all(X[:, [names.index(n) for n in onehot]].sum(1) == 1)
        assert len(names) == 20

    def test_in_pipeline(self):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        df = tiny_frame(8)
        pipe = make_pipeline(CleanHeartPreprocessor(), LogisticRegression()).fit(df, df.HeartDisease)
        assert pipe.predict_proba(df).shape == (8, 2)

    def test_errors(self):
        with pytest.raises(ValueError, match="not fitted yet"):
            CleanHeartPreprocessor().transform(tiny_frame())
        with pytest.raises(TypeError, match="X must be a pandas DataFrame"):
            CleanHeartPreprocessor().fit(np.zeros((3, 11)))
        with pytest.raises(ValueError, match=r"missing column\(s\) \['Age'\]"):
            CleanHeartPreprocessor().fit(tiny_frame().drop(columns="Age"))
        df = tiny_frame()
        df["Cholesterol"] = 0
        with pytest.raises(ValueError, match="'Cholesterol' is 0 \\(missing\\) in every training row"):
            CleanHeartPreprocessor().fit(df)


@needs_heart
def test_paper_interaction_column():
    df = load_heart_failure(DATA)
    X, _ = paper_encode(df, interaction=("Age", "MaxHR"))
    assert X.shape == (918, 12)
    np.testing.assert_allclose(X[:, 11], df.Age.to_numpy() * df.MaxHR.to_numpy())
    with pytest.raises(ValueError, match="interaction must be a pair of names"):
        paper_encode(df, interaction=("Age", "Weight"))
