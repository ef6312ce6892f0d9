"""The 11 clinical inputs of the heart demo: label, unit, allowed values, and per-field validation."""

from __future__ import annotations

import math
from dataclasses import dataclass

from qnn.datasets.heart import CATEGORIES, FEATURE_RANGES, HEART_FEATURES, INTEGER_FEATURES

__all__ = ["FIELDS", "Field", "parse_form"]


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    unit: str = ""
    low: float | None = None
    high: float | None = None
    integer: bool = False
    choices: tuple[tuple[str, str], ...] = ()  # (value, label)
    hint: str = ""
    example: str = ""

    @property
    def allowed(self) -> str:
        if self.choices:
            return ", ".join(v for v, _ in self.choices)
        lo, hi = (int(self.low), int(self.high)) if self.integer else (self.low, self.high)
        return f"{lo} to {hi}" + (f" {self.unit}" if self.unit else "")


def _numeric(name, label, unit, hint, example) -> Field:
    lo, hi = FEATURE_RANGES[name]
    return Field(name, label, unit, float(lo), float(hi), name in INTEGER_FEATURES, hint=hint, example=example)


def _choice(name, label, names: dict[str, str], example) -> Field:
    return Field(name, label, choices=tuple((v, f"{v} - {names[v]}") for v in CATEGORIES[name]), example=example)


FIELDS: tuple[Field, ...] = (
    _numeric("Age", "Age", "years", "", "54"),
    _choice("Sex", "Sex", {"F": "female", "M": "male"}, "M"),
    _choice("ChestPainType", "Chest pain type",
            {"ASY": "asymptomatic", "ATA": "atypical angina", "NAP": "non-anginal pain", "TA": "typical angina"},
            "ASY"),
    _numeric("RestingBP", "Resting blood pressure", "mm Hg", "0 = not measured", "130"),
    _numeric("Cholesterol", "Serum cholesterol", "mg/dl", "0 = not measured", "223"),
    Field("FastingBS", "Fasting blood sugar > 120 mg/dl", choices=(("0", "0 - no"), ("1", "1 - yes")), example="0"),
    _choice("RestingECG", "Resting ECG", {"LVH": "left ventricular hypertrophy", "Normal": "normal",
                                          "ST": "ST-T wave abnormality"}, "Normal"),
    _numeric("MaxHR", "Maximum heart rate achieved", "bpm", "", "138"),
    _choice("ExerciseAngina", "Exercise-induced angina", {"N": "no", "Y": "yes"}, "N"),
    _numeric("Oldpeak", "ST depression (oldpeak)", "mm", "exercise relative to rest", "0.6"),
    _choice("ST_Slope", "Slope of the peak exercise ST segment", {"Down": "downsloping", "Flat": "flat",
                                                                   "Up": "upsloping"}, "Flat"),
)
assert [f.name for f in FIELDS] == HEART_FEATURES


def _parse(field: Field, raw) -> tuple[object, str | None]:
    text = "" if raw is None else str(raw).strip()
    if text == "":
        return None, f"{field.label} is required"
    if field.choices:
        allowed = [v for v, _ in field.choices]
        if text not in allowed:
            return None, f"{field.label} must be one of {', '.join(allowed)}; got {text[:40]!r}"
        return (int(text) if field.name == "FastingBS" else text), None
    try:
        value = float(text)
    except ValueError:
        kind = "a whole number" if field.integer else "a number"
        return None, f"{field.label} must be {kind}; got {text[:40]!r}"
    if not math.isfinite(value):
        return None, f"{field.label} must be a finite number; got {text[:40]!r}"
    if field.integer and value != int(value):
        return None, f"{field.label} must be a whole number; got {text[:40]!r}"
    if not field.low <= value <= field.high:
        return None, f"{field.label} must be from {field.allowed}; got {text[:40]}"
    return (int(value) if field.integer else value), None


def parse_form(form) -> tuple[dict, dict[str, str]]:
    """``(patient, errors)``: parsed values of the fields that are valid, a message per invalid field."""
    patient, errors = {}, {}
    for f in FIELDS:
        value, err = _parse(f, form.get(f.name))
        if err:
            errors[f.name] = err
        else:
            patient[f.name] = value
    return patient, errors
