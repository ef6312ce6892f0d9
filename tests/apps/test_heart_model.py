"""The heart demo's saved model and page (Flask test client); the browser test is test_heart_browser.py."""

import re

import numpy as np
import pytest
import torch

from qnn.apps.heart import LEVELS, BundleError, HeartDemoModel, create_app
from qnn.apps.heart._form import FIELDS, parse_form
from qnn.conformal import coverage_score
from qnn.datasets.heart import HEART_FEATURES, HEART_TARGET


def test_bundle_round_trip_and_weights_only(heart_bundle):
    model, path = heart_bundle
    payload = torch.load(path, weights_only=True)  # plain data only
    assert payload["format"] == "qnn.apps.heart/1"
    loaded = HeartDemoModel.load(path)
    test = model.splits["test"]
    a, b = model.predict(test.head(20)), loaded.predict(test.head(20))
    np.testing.assert_allclose([p.probability for p in a], [p.probability for p in b], atol=1e-6)
    assert [p.prediction_set for p in a] == [p.prediction_set for p in b]
    assert loaded.metrics == model.metrics


def test_splits_are_disjoint_and_coverage_is_measured_on_test(heart_bundle):
    model, _ = heart_bundle
    keys = {k: set(map(tuple, v.astype(str).to_numpy())) for k, v in model.splits.items()}
    sizes = {k: len(v) for k, v in model.splits.items()}
    assert sizes == {"train": 550, "cal": 184, "test": 184}
    # heart.csv has no duplicate rows, so disjoint index sets give disjoint row sets
    assert not (keys["train"] & keys["cal"]) and not (keys["train"] & keys["test"]) and not (keys["cal"] & keys["test"])
    test = model.splits["test"]
    _, sets = model.conformal.predict_proba_set(test[HEART_FEATURES])
    cov = coverage_score(test[HEART_TARGET].to_numpy(), sets)
    assert [model.metrics["coverage"][f"{lev:g}"] for lev in LEVELS] == pytest.approx(cov.tolist())
    assert cov[LEVELS.index(0.95)] > 0.85  # split conformal covers on held-out data


def test_one_evaluation_per_prediction(heart_bundle):
    model, _ = heart_bundle
    pipe = model.conformal.estimator_
    before = pipe.n_evaluations
    model.predict(model.splits["test"].head(3), 0.9)
    assert pipe.n_evaluations - before == 3  # each row through the network once


def test_tampered_and_foreign_files_are_refused(heart_bundle, tmp_path):
    _, path = heart_bundle
    payload = torch.load(path, weights_only=True)
    key = next(iter(payload["state_dict"]))
    payload["state_dict"][key] = payload["state_dict"][key] + 0.5
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(BundleError, match="modified since it was saved"):
        HeartDemoModel.load(tmp_path / "tampered.pt")
    torch.save({"format": "something/else"}, tmp_path / "foreign.pt")
    with pytest.raises(BundleError, match="must be a 'qnn.apps.heart/1' bundle; got format 'something/else'"):
        HeartDemoModel.load(tmp_path / "foreign.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(BundleError, match="is not a heart-demo model file"):
        HeartDemoModel.load(tmp_path / "junk.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a pickled module: refused, not executed
    with pytest.raises(BundleError, match="weights_only"):
        HeartDemoModel.load(tmp_path / "module.pt")
    with pytest.raises(FileNotFoundError, match="no saved model at"):
        HeartDemoModel.load(tmp_path / "absent.pt")


def test_explanation_is_additive(heart_bundle):
    model, _ = heart_bundle
    patient = model.splits["test"].iloc[0][HEART_FEATURES].to_dict()
    items, base = model.explain(patient)
    assert sorted(name for name, _, _ in items) == sorted(HEART_FEATURES)
    (pred,) = model.predict(patient)
    assert base + sum(v for _, _, v in items) == pytest.approx(pred.probability, abs=1e-6)


@pytest.mark.parametrize("field,value,message", [
    ("Age", "", "Age is required"),
    ("Age", "abc", "Age must be a whole number; got 'abc'"),
    ("Age", "54.5", "Age must be a whole number; got '54.5'"),
    ("MaxHR", "999", "Maximum heart rate achieved must be from 30 to 250 bpm; got 999"),
    ("Oldpeak", "nan", "must be a finite number"),
    ("Sex", "X", "Sex must be one of F, M; got 'X'"),
])
def test_form_validation_messages(field, value, message):
    form = {f.name: f.example for f in FIELDS}
    form[field] = value
    patient, errors = parse_form(form)
    assert list(errors) == [field] and message in errors[field]
    assert field not in patient and len(patient) == 10


def test_page_predicts_and_survives_bad_input(heart_bundle):
    model, _ = heart_bundle
    client = create_app(model, explain_samples=16).test_client()
    assert client.get("/").status_code == 200
    row = model.splits["test"].iloc[1]
    form = {k: str(row[k]) for k in HEART_FEATURES} | {"level": "0.95"}
    page = client.post("/", data=form).get_data(as_text=True)
    (pred,) = model.predict(row[HEART_FEATURES].to_dict(), 0.95)
    shown = float(re.search(r'data-probability="([0-9.]+)"', page).group(1))
    assert shown == pytest.approx(pred.probability, abs=1e-9)
    assert re.search(r'data-labels="([^"]*)"', page).group(1).split("|") == pred.prediction_set
    assert 'id="explanation"' in page and "not a medical device" in page
    bad = client.post("/", data=form | {"Age": "-3", "Cholesterol": "x", "level": "2"})
    text = bad.get_data(as_text=True)
    assert bad.status_code == 400
    assert 'id="error-Age"' in text and 'id="error-Cholesterol"' in text and 'id="error-level"' in text
    assert 'id="probability"' not in text
    assert client.post("/", data={}).status_code == 400  # nothing at all
    assert client.post("/", data=b"\xff\xfe", content_type="application/octet-stream").status_code == 400
    assert client.get("/nowhere").status_code == 404
    assert client.post("/", data=form).status_code == 200  # still serving
